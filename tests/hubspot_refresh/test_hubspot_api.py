"""hubspot_api: the refresh call against the HubSpot fake, how its answer is read, and how a
refusal is classed; and the fake itself keeps to HubSpot's documented contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from hubspot_api import call_hubspot, token_error

from devtools.fakes.hubspot import V1_TOKEN_ROUTE, HubSpotFake
from shared import clock
from shared.errors import TerminalError, TransientError
from shared.http import HttpClient, RetryPolicy
from shared.redact import MASK, redact
from tests.canned_http import CannedHttp

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def response(status: int, body: Any) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return answer


@pytest.fixture
def fake() -> Iterator[HubSpotFake]:
    with HubSpotFake() as running:
        assert isinstance(running, HubSpotFake)
        yield running


def refresh(fake: HubSpotFake, refresh_token: str) -> Any:
    return call_hubspot(
        f"{fake.url}{V1_TOKEN_ROUTE}",
        HttpClient(timeout=10, retry=RetryPolicy(attempts=1)),
        fake.client_id,
        fake.client_secret,
        refresh_token,
    )


# --- the call -------------------------------------------------------------------------------


def test_a_refresh_returns_the_tokens_and_hides_them_from_logs(
    fake: HubSpotFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    fake.rotation = "always"
    token = fake.new_refresh_token(62515)

    tokens = refresh(fake, token)

    assert fake.is_live(tokens.access_token)
    assert tokens.refresh_token in fake.grants and tokens.refresh_token != token
    assert tokens.expires_at == NOW + timedelta(seconds=1800)
    # Registered for redaction as soon as they are known.
    assert MASK in redact(f"got {tokens.access_token}")
    assert MASK in redact(f"got {tokens.refresh_token}")


def test_an_answer_without_an_access_token_is_transient(fake: HubSpotFake) -> None:
    fake.inject("token", 200, body={"token_type": "bearer"})
    with pytest.raises(TransientError) as raised:
        refresh(fake, fake.new_refresh_token(62516))
    assert raised.value.code == "malformed_response"


def test_a_revoked_refresh_token_is_terminal(fake: HubSpotFake) -> None:
    token = fake.new_refresh_token(62517)
    fake.revoke(token)
    with pytest.raises(TerminalError) as raised:
        refresh(fake, token)
    assert (raised.value.code, raised.value.status) == ("BAD_REFRESH_TOKEN", 400)


@pytest.mark.parametrize(
    ("expires_in", "known"),
    [
        (1800, True),
        (1800.0, True),
        ("1800", True),  # numeric text counts since the shared parser (shared.oauth)
        (0, False),
        (-5, False),
        (True, False),  # a bool is not a number of seconds
        (None, False),
        ("soon", False),
    ],
)
def test_expiry_is_known_only_from_a_positive_number(
    monkeypatch: pytest.MonkeyPatch, expires_in: Any, known: bool
) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    http: Any = CannedHttp(
        response(200, {"access_token": "at-expiry-1234", "expires_in": expires_in})
    )
    tokens = call_hubspot("https://hubspot.test/oauth/v1/token", http, "id", "secret", "rt")
    assert tokens.expires_at == (NOW + timedelta(seconds=1800) if known else None)


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
def test_token_error_classification(status: int, body: Any, code: str, terminal: bool) -> None:
    error = token_error(response(status, body))
    assert error.code == code
    assert error.terminal is terminal
    assert error.status == status


# --- the fake keeps to the documented contract -----------------------------------------------


def test_fake_hubspot_contract() -> None:
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
