"""Pure logic of hubspot_refresh: message parsing, error classification, account discovery;
and the log-safety check over a run that meets every outcome."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from types import ModuleType
from typing import Any

import functions_framework
import pytest
import requests

from shared import clock, events
from shared.secrets import SecretInfo
from tests.hubspot_refresh.hubspot_testkit import SOURCE, HubSpotSetup, load_main, run_once


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "unit-project")
    monkeypatch.setenv("STATE_BUCKET", "unit-bucket")
    functions_framework.create_app("hubspot_refresh", SOURCE, "cloudevent")
    return sys.modules["main"]


def response(status: int, body: Any) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return answer


# --- messages ---------------------------------------------------------------------------


def test_parse_request_shapes(main: ModuleType) -> None:
    assert main.parse_request({}) == main.RunRequest()
    assert main.parse_request({"force": True}).force is True
    forced = main.parse_request({"force": True, "accounts": ["62515", 62516, "62515"]})
    assert forced.accounts == ("62515", "62516")
    work = main.parse_request(
        {"accounts": ["1"], "shard": "1/2", "force": False, "requested_at": "2026-01-01T00:00:00Z"}
    )
    assert work.shard == "1/2" and work.requested_at is not None


@pytest.mark.parametrize(
    "data",
    [
        {"force": 1},
        {"accounts": ["1"]},
        {"force": True, "accounts": "1"},
        {"force": True, "accounts": [True]},
        {"shard": 3, "accounts": ["1"]},
        {"shard": "1/1"},
        {"shard": "1/1", "accounts": ["1"], "requested_at": "yesterday"},
        {"force": True, "extra": 1},
    ],
)
def test_parse_request_refuses(main: ModuleType, data: dict[str, Any]) -> None:
    with pytest.raises(events.BadMessage):
        main.parse_request(data)


def test_sharding_needs_a_work_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import ConfigError

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "unit-project")
    monkeypatch.setenv("STATE_BUCKET", "unit-bucket")
    monkeypatch.setenv("HUBSPOT_SHARD_SIZE", "100")
    with pytest.raises(ConfigError, match="HUBSPOT_WORK_TOPIC"):
        functions_framework.create_app("hubspot_refresh", SOURCE, "cloudevent")


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "terminal"),
    [
        # v3 standardised body (status and message kept for compatibility)
        (
            400,
            {
                "error": "invalid_grant",
                "error_description": "refresh token is invalid, expired or revoked",
                "status": "BAD_REFRESH_TOKEN",
                "message": "refresh token is invalid",
            },
            "BAD_REFRESH_TOKEN",
            True,
        ),
        # the older body
        (
            400,
            {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown"},
            "BAD_REFRESH_TOKEN",
            True,
        ),
        (400, {"status": "BAD_HUB", "error": "access_denied"}, "BAD_HUB", True),
        (401, {"error": "invalid_client"}, "invalid_client", True),
        # not about this refresh token: wait and try again
        (
            404,
            {"status": "error", "message": "not found", "category": "OBJECT_NOT_FOUND"},
            "OBJECT_NOT_FOUND",
            False,
        ),
        (403, b"<html>blocked</html>", "http_403", False),
        (503, {"status": "error", "message": "unavailable"}, "http_503", False),
    ],
)
def test_token_error_classification(
    main: ModuleType, status: int, body: Any, code: str, terminal: bool
) -> None:
    error = main.token_error(response(status, body))
    assert error.code == code
    assert error.terminal is terminal
    assert error.status == status


# --- discovery ------------------------------------------------------------------------------


def test_accounts_are_grouped_from_one_listing(main: ModuleType) -> None:
    accounts: Any = sys.modules["hubspot_accounts"]  # loaded with main, from its folder

    listed = [
        SecretInfo("hubspot-client-id", {"integration": "hubspot"}),
        SecretInfo(
            "hubspot-2-refresh-token",
            {"integration": "hubspot", "hubspot-account": "2", "enabled": "false"},
        ),
        SecretInfo(
            "hubspot-10-refresh-token",
            {"integration": "hubspot", "hubspot-account": "10"},
            {"client-id-secret": "hubspot-app2-client-id", "client-secret-secret": "x"},
        ),
        SecretInfo(
            "hubspot-10-access-token",
            {"integration": "hubspot", "hubspot-account": "10"},
            {"state": "ok"},
        ),
        SecretInfo("misnamed", {"integration": "hubspot", "hubspot-account": "3"}),
    ]
    found = accounts.accounts_from(listed)
    assert [a.account_id for a in found] == ["2", "10"]
    two, ten = found
    assert two.enabled is False and two.status_annotations is None
    assert ten.enabled is True and ten.status_annotations == {"state": "ok"}
    assert ten.client_id_secret == "hubspot-app2-client-id"
    with pytest.raises(accounts.BadAccountId):
        accounts.check_account_id("Portal 1")


# --- log safety -----------------------------------------------------------------------------


def test_no_secret_value_in_any_log_line(
    hs: HubSpotSetup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = {a: hs.add_account(a) for a in ("1301", "1302", "1303", "1304")}
    hs.fake.revoke(tokens["1302"])
    hs.fake.rotation = "always"
    main = load_main(hs, monkeypatch)
    hs.fake.inject("token", 500, count=1)
    run_once(main)
    later = clock.now() + timedelta(minutes=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    run_once(main, force=True)
    # The HubSpot fake echoing a credential in an error description must not leak it either.
    hs.fake.inject(
        "token",
        400,
        body={
            "status": "BAD_REFRESH_TOKEN",
            "message": f"unknown token {hs.refresh_token('1304')}",
        },
    )
    run_once(main, force=True, accounts=("1304",), requested_at=later + timedelta(seconds=1))

    out = capsys.readouterr()
    text = out.out + out.err
    assert '"run_summary"' in text and '"needs_reauth"' in text
    values = hs.secret_values()
    values += [hs.refresh_token(a) for a in tokens] + [hs.access_token(a) for a in ("1301", "1303")]
    leaked = [v for v in values if v in text]
    assert leaked == []
    # ... and nothing leaked into the status annotations users read either.
    for account in tokens:
        annotations = json.dumps(hs.annotations(account))
        assert all(v not in annotations for v in values)


# --- the fake keeps to the documented contract -----------------------------------------------


def test_fake_hubspot_contract() -> None:
    from devtools.fakes.hubspot import HubSpotFake

    with HubSpotFake() as fake:
        assert isinstance(fake, HubSpotFake)
        token = fake.new_refresh_token(62515)
        form = {
            "grant_type": "refresh_token",
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "refresh_token": token,
        }
        ok = requests.post(f"{fake.url}/oauth/v1/token", data=form, timeout=10)
        assert ok.status_code == 200
        body = ok.json()
        assert body["expires_in"] == 1800 and body["token_type"] == "bearer"
        assert body["hub_id"] == 62515 and body["refresh_token"] == token  # not rotated
        assert fake.is_live(body["access_token"])
        info = requests.get(f"{fake.url}/oauth/v1/access-tokens/{body['access_token']}", timeout=10)
        assert info.json()["hub_id"] == 62515

        as_json = requests.post(f"{fake.url}/oauth/v1/token", json=form, timeout=10)
        assert as_json.status_code == 400
        in_query = requests.post(f"{fake.url}/oauth/v3/token", params=form, timeout=10)
        assert in_query.status_code == 400
        assert requests.post(f"{fake.url}/oauth/v3/token", data=form, timeout=10).ok

        fake.revoke(token)
        refused = requests.post(f"{fake.url}/oauth/v1/token", data=form, timeout=10)
        assert refused.status_code == 400
        assert refused.json()["status"] == "BAD_REFRESH_TOKEN"
        assert refused.json()["error"] == "invalid_grant"
