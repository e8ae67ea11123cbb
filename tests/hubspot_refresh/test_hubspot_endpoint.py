"""The token endpoint: the default is the one HubSpot's migration guide points to (in the code,
in Terraform and served by the fake), v1 stays selectable, and a configured retiring endpoint
is told about, decided from the URL and the date alone."""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlsplit

import pytest
import requests
from hubspot_endpoint import (
    ENDPOINT_ANNOTATION,
    EndpointNotice,
    endpoint_notice,
    last_used_endpoint,
    shown,
)

from devtools.fakes.hubspot import CURRENT_TOKEN_ROUTE, V1_TOKEN_ROUTE, HubSpotFake
from tests.hubspot_refresh.hubspot_testkit import REPO, boot
from tools.function_scan import scan_folder

V1 = "https://api.hubapi.com/oauth/v1/token"
CURRENT = "https://api.hubapi.com/oauth/2026-03/token"
RETIRES = date(2027, 2, 16)


@pytest.mark.parametrize(
    ("url", "today", "expected"),
    [
        # The endpoints HubSpot keeps: nothing to say, whatever the date.
        (CURRENT, date(2026, 12, 3), None),
        ("https://api.hubapi.com/oauth/v3/token", date(2027, 6, 1), None),
        ("https://api.hubapi.com/oauth/2026-09/token", date(2027, 6, 1), None),
        ("http://127.0.0.1:8080/oauth/v9/token", date(2026, 12, 3), None),
        ("http://[::1/oauth/v1/token", date(2026, 12, 3), None),  # not a URL: never raises
        # v1: deprecated months ahead, needs attention in the last 30 days, expired on the day.
        (V1, date(2026, 12, 3), ("deprecated", 75)),
        (V1, date(2027, 1, 16), ("deprecated", 31)),
        (V1, date(2027, 1, 17), ("expiring", 30)),
        (V1, date(2027, 2, 15), ("expiring", 1)),
        (V1, date(2027, 2, 16), ("expired", 0)),
        (V1, date(2028, 1, 1), ("expired", -319)),
        # Matched by the end of the path on any host: a trailing slash, capitals, a proxy, the fake.
        ("https://api.hubapi.com/oauth/v1/token/", date(2026, 12, 3), ("deprecated", 75)),
        ("https://API.hubapi.com/OAuth/V1/Token", date(2026, 12, 3), ("deprecated", 75)),
        ("https://proxy.example/hubspot/oauth/v1/token", date(2026, 12, 3), ("deprecated", 75)),
        ("http://127.0.0.1:8080/oauth/v1/token", date(2026, 12, 3), ("deprecated", 75)),
    ],
)
def test_endpoint_notice_table(url: str, today: date, expected: tuple[str, int] | None) -> None:
    notice = endpoint_notice(url, today)
    if expected is None:
        assert notice is None
        return
    assert notice is not None
    assert (notice.state, notice.days_left) == expected
    assert notice.retires_on == RETIRES
    assert notice.retired == (notice.days_left <= 0)


def test_notice_names_the_setting_and_the_same_host_replacement() -> None:
    notice = endpoint_notice("https://proxy.example/hubspot/oauth/v1/token", date(2026, 12, 3))
    assert notice == EndpointNotice(
        endpoint="https://proxy.example/hubspot/oauth/v1/token",
        replacement="https://proxy.example/hubspot/oauth/2026-03/token",
        retires_on=RETIRES,
        days_left=75,
    )
    assert "HUBSPOT_TOKEN_URL" in notice.message and "hubspot_token_url" in notice.message
    assert "retires" in notice.message and "2027-02-16" in notice.message
    retired = endpoint_notice(V1, RETIRES)
    assert retired is not None and retired.message.startswith("HubSpot retired")
    assert retired.replacement == CURRENT


def test_only_scheme_host_and_path_are_ever_shown() -> None:
    url = "https://user:pa55word@api.hubapi.com:443/oauth/v1/token?hapikey=k3y#frag"
    assert shown(url) == "https://api.hubapi.com:443/oauth/v1/token"
    notice = endpoint_notice(url, date(2026, 12, 3))
    assert notice is not None
    for leaked in ("pa55word", "user", "k3y", "hapikey"):
        assert leaked not in notice.message + notice.replacement


def test_the_latest_attempt_of_any_account_tells_the_endpoint() -> None:
    """A disabled or needs-reauth account is not attempted any more: its record is older."""
    stale = {ENDPOINT_ANNOTATION: V1, "refreshed-at": "2026-11-01T00:00:00.000Z"}
    failing = {ENDPOINT_ANNOTATION: V1, "last-error-at": "2026-12-02T00:00:00Z"}
    fresh = {ENDPOINT_ANNOTATION: CURRENT, "refreshed-at": "2026-12-03T10:00:00.000Z"}
    assert last_used_endpoint([stale, fresh, failing]) == CURRENT
    assert last_used_endpoint([stale, failing]) == V1
    assert last_used_endpoint([{"refreshed-at": "2026-12-03T10:00:00.000Z"}, {}]) is None
    assert last_used_endpoint([]) is None


# --- the default, everywhere ----------------------------------------------------------------


def test_default_is_the_date_versioned_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "unit-project")
    monkeypatch.setenv("STATE_BUCKET", "unit-bucket")
    monkeypatch.delenv("HUBSPOT_TOKEN_URL", raising=False)
    assert boot().SETTINGS.token_url == CURRENT
    assert endpoint_notice(CURRENT, date(2026, 12, 3)) is None


def test_terraform_and_the_fake_agree_with_the_code_default() -> None:
    (read,) = scan_folder(REPO / "functions" / "hubspot_refresh").variables()["HUBSPOT_TOKEN_URL"]
    assert read.default == CURRENT
    variables = (REPO / "terraform" / "variables_hubspot.tf").read_text()
    block = re.search(r'variable "hubspot_token_url" \{(.*?)\n\}', variables, re.S)
    assert block is not None
    (tf_default,) = re.findall(r'^\s*default\s*=\s*"([^"]*)"', block.group(1), re.M)
    assert tf_default == read.default
    assert urlsplit(read.default).path == CURRENT_TOKEN_ROUTE


def test_fake_serves_the_current_endpoint_with_the_form_in_the_body_only() -> None:
    with HubSpotFake() as fake:
        assert isinstance(fake, HubSpotFake)
        token = fake.new_refresh_token(62515)
        form = {
            "grant_type": "refresh_token",
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "refresh_token": token,
        }
        url = f"{fake.url}{CURRENT_TOKEN_ROUTE}"
        in_query = requests.post(url, params=form, timeout=10)
        assert in_query.status_code == 400
        assert in_query.json()["error"] == "invalid_request"
        assert requests.post(url, json=form, timeout=10).status_code == 400
        ok = requests.post(url, data=form, timeout=10)
        assert ok.status_code == 200 and ok.json()["hub_id"] == 62515
        assert requests.post(f"{fake.url}{V1_TOKEN_ROUTE}", data=form, timeout=10).ok
        assert fake.token_paths == {CURRENT_TOKEN_ROUTE: 3, V1_TOKEN_ROUTE: 1}
