"""b24_api: the GET to Bitrix24's token endpoint (against the Bitrix24 fake, no emulator), how
its answer and expiry are read and how a refusal is classed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from b24_api import (
    PERSIST_RESERVE_SECONDS,
    TERMINAL_CODES,
    Tokens,
    call_bitrix24,
    token_error,
)

from devtools.fakes.bitrix24 import TOKEN_ROUTE, Bitrix24Fake
from shared import clock
from shared.errors import TerminalError, TransientError
from shared.http import HttpClient, RetryPolicy
from tests.b24_token_refresh.b24_support import bare_import
from tests.canned_http import CannedHttp, canned

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_imports_without_environment_framework_or_secret_manager() -> None:
    assert bare_import("b24_api", absent=("main", "google.cloud.secretmanager")) == ""


@pytest.fixture
def fake() -> Iterator[Bitrix24Fake]:
    with Bitrix24Fake() as server:
        assert isinstance(server, Bitrix24Fake)
        yield server


def _call(fake: Bitrix24Fake, refresh_token: str, *, client_secret: str | None = None) -> Tokens:
    http = HttpClient(timeout=5, retry=RetryPolicy(attempts=2, base_delay=0.01))
    return call_bitrix24(
        f"{fake.url}{TOKEN_ROUTE}",
        http,
        fake.client_id,
        client_secret or fake.client_secret,
        refresh_token,
        time.monotonic() + 120,
    )


def test_refresh_returns_the_new_pair_and_spends_the_old_token(fake: Bitrix24Fake) -> None:
    old = fake.new_refresh_token()
    tokens = _call(fake, old)
    assert fake.grants[old].used and fake.refreshes == 1
    assert tokens.access_token in fake.live_access_tokens
    assert tokens.refresh_token in fake.grants and not fake.grants[tokens.refresh_token].used
    assert tokens.expires_at is not None
    assert timedelta(minutes=59) < tokens.expires_at - clock.now() <= timedelta(minutes=60)


@pytest.mark.parametrize("mode", ["invalid_client", "PAYMENT_REQUIRED"])
def test_refusals_are_terminal(fake: Bitrix24Fake, mode: str) -> None:
    fake.mode = mode
    with pytest.raises(TerminalError) as raised:
        _call(fake, fake.new_refresh_token())
    assert raised.value.code == mode and raised.value.status == 400


def test_spent_token_is_invalid_grant(fake: Bitrix24Fake) -> None:
    old = fake.new_refresh_token()
    _call(fake, old)
    with pytest.raises(TerminalError) as raised:
        _call(fake, old)
    assert raised.value.code == "invalid_grant" and fake.reused == 1


def test_outage_is_transient(fake: Bitrix24Fake) -> None:
    fake.inject(TOKEN_ROUTE, 503, count=2)
    with pytest.raises(TransientError) as raised:
        _call(fake, fake.new_refresh_token())
    assert raised.value.code == "http_503"


def test_request_is_a_get_with_the_query_and_leaves_time_to_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    http = CannedHttp(canned(200, {"access_token": "a", "refresh_token": "r", "expires_in": 60}))
    tokens = call_bitrix24("https://b24.test/oauth/token/", http, "id", "secret", "rt", 1000.0)
    assert tokens == Tokens("a", "r", NOW + timedelta(seconds=60))
    ((method, url, kwargs),) = http.asked
    assert (method, url) == ("GET", "https://b24.test/oauth/token/")
    assert kwargs["params"] == {
        "grant_type": "refresh_token",
        "client_id": "id",
        "client_secret": "secret",
        "refresh_token": "rt",
    }
    assert kwargs["headers"] == {"Accept": "application/json"}
    assert kwargs["deadline"] == 1000.0 - PERSIST_RESERVE_SECONDS


@pytest.mark.parametrize(
    "body",
    [{"access_token": "a"}, {"refresh_token": "r"}, {"access_token": 1, "refresh_token": "r"}, "x"],
)
def test_200_without_both_tokens_is_terminal(body: Any) -> None:
    http = CannedHttp(canned(200, body))
    with pytest.raises(TerminalError) as raised:
        call_bitrix24("https://b24.test/", http, "id", "s", "rt", time.monotonic() + 120)
    assert raised.value.code == "malformed_response"


@pytest.mark.parametrize(
    ("status", "body", "terminal", "code"),
    [
        (400, {"error": "invalid_grant"}, True, "invalid_grant"),
        (401, {"error": "invalid_client"}, True, "invalid_client"),
        (402, {"error": "PAYMENT_REQUIRED"}, True, "PAYMENT_REQUIRED"),
        (400, {"error": "invalid_request"}, True, "invalid_request"),
        (404, "not found", True, "http_404"),
        (503, {"error": "temporarily_unavailable"}, False, "temporarily_unavailable"),
        (429, {}, False, "http_429"),
        (500, {}, False, "http_500"),
    ],
)
def test_refusal_classes(status: int, body: Any, terminal: bool, code: str) -> None:
    error = token_error(canned(status, body))
    assert error.terminal is terminal and error.code == code and error.status == status
    assert str(error).startswith(f"Bitrix24 token endpoint: HTTP {status} {code}")


def test_terminal_codes_are_bitrix24s() -> None:
    assert frozenset({"invalid_grant", "invalid_client", "PAYMENT_REQUIRED"}) == TERMINAL_CODES


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [
        ({"expires_in": 3600, "expires": 1}, NOW + timedelta(seconds=3600)),
        ({"expires_in": 90.7}, NOW + timedelta(seconds=90)),
        (
            {"expires_in": 0, "expires": int((NOW + timedelta(hours=2)).timestamp())},
            NOW + timedelta(hours=2),
        ),
        ({"expires": int((NOW + timedelta(hours=1)).timestamp())}, NOW + timedelta(hours=1)),
        # Numeric text counts since the shared parser (shared.oauth.parse_expiry).
        ({"expires_in": "3600"}, NOW + timedelta(seconds=3600)),
        ({"expires_in": -5, "expires": 0}, None),
        ({}, None),
    ],
)
def test_expiry_from_expires_in_else_expires(
    monkeypatch: pytest.MonkeyPatch, expiry: dict[str, Any], expected: datetime | None
) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    body = {"access_token": "a", "refresh_token": "r", **expiry}
    tokens = call_bitrix24("https://b24.test/", CannedHttp(canned(200, body)), "i", "s", "rt", 1e9)
    assert tokens.expires_at == expected
