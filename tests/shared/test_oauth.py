"""shared.oauth: how a token endpoint's refusal is classed, how its answer is read (tokens
required and registered for redaction, GET or POST), and when the token expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from shared.errors import ProviderError, TerminalError, TransientError
from shared.oauth import (
    OAUTH_TERMINAL_CODES,
    form_headers,
    oauth_error,
    parse_expiry,
    request_token,
)
from shared.redact import MASK, redact
from tests.canned_http import CannedHttp, canned

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- oauth_error ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, {"error": "invalid_grant"}, TerminalError, "invalid_grant"),
        (401, {"error": "invalid_client"}, TerminalError, "invalid_client"),
        (400, {"error": "PAYMENT_REQUIRED"}, TerminalError, "PAYMENT_REQUIRED"),
        (403, {}, TerminalError, "http_403"),
        (404, b"<html>no</html>", TerminalError, "http_404"),
        (503, {"error": "temporarily_unavailable"}, TransientError, "temporarily_unavailable"),
        (408, {}, TransientError, "http_408"),
        (425, {}, TransientError, "http_425"),
        # Token endpoints keep 409 transient (TOKEN_TRANSIENT_STATUSES).
        (409, {"error": "conflict"}, TransientError, "conflict"),
        (501, {}, TransientError, "http_501"),
        # A refusal code is terminal whatever the status.
        (500, {"error": "invalid_grant"}, TerminalError, "invalid_grant"),
        # The bare word "error" names no code.
        (400, {"error": "error"}, TerminalError, "http_400"),
    ],
)
def test_oauth_errors_are_classified(
    status: int, body: object, kind: type[ProviderError], code: str
) -> None:
    error = oauth_error(canned(status, body), terminal_codes=OAUTH_TERMINAL_CODES)
    assert type(error) is kind
    assert (error.code, error.status) == (code, status)


def test_provider_specific_terminal_codes_and_description() -> None:
    error = oauth_error(
        canned(400, {"error": "PAYMENT_REQUIRED", "error_description": "Payment required"}),
        terminal_codes=frozenset({"PAYMENT_REQUIRED"}),
        where="Bitrix24 token endpoint",
    )
    assert isinstance(error, TerminalError)
    assert str(error) == "Bitrix24 token endpoint: HTTP 400 PAYMENT_REQUIRED (Payment required)"


@pytest.mark.parametrize(
    ("status", "body", "code", "terminal"),
    [
        # A refusal code in any of the fields, preferred to another code.
        (400, {"status": "BAD_REFRESH_TOKEN", "error": "invalid_grant"}, "BAD_REFRESH_TOKEN", True),
        (400, {"status": "error", "error": "invalid_grant"}, "invalid_grant", True),
        (400, {"status": "OTHER", "error": "invalid_grant"}, "invalid_grant", True),
        # Without one, any 4xx is transient: not about this grant.
        (404, {"status": "error", "category": "OBJECT_NOT_FOUND"}, "OBJECT_NOT_FOUND", False),
        (403, b"<html>blocked</html>", "http_403", False),
        # A refusal code on a status that passes is not trusted.
        (503, {"status": "BAD_REFRESH_TOKEN"}, "BAD_REFRESH_TOKEN", False),
        (429, {"status": "BAD_REFRESH_TOKEN"}, "BAD_REFRESH_TOKEN", False),
    ],
)
def test_refused_by_code_only(status: int, body: object, code: str, terminal: bool) -> None:
    error = oauth_error(
        canned(status, body),
        terminal_codes=frozenset({"BAD_REFRESH_TOKEN", "invalid_grant"}),
        code_fields=("status", "error", "category"),
        refused_by_code_only=True,
    )
    assert (error.code, error.terminal, error.status) == (code, terminal, status)


def test_the_description_is_redacted_and_cut() -> None:
    error = oauth_error(
        canned(400, {"error": "invalid_request", "error_description": "x" * 300}),
    )
    assert str(error) == "token endpoint: HTTP 400 invalid_request (" + "x" * 200 + ")"
    error = oauth_error(
        canned(400, {"error": "invalid_request", "message": "bad refresh_token=abcdef123456"})
    )
    assert "abcdef123456" not in str(error)


# --- request_token ----------------------------------------------------------------------------


def _never(response: requests.Response) -> ProviderError:
    raise AssertionError("a 200 is no error")


def test_post_sends_a_form_and_returns_the_body() -> None:
    http = CannedHttp(canned(200, {"access_token": "at-post-1234567", "expires_in": 60}))
    body = request_token(
        http,  # type: ignore[arg-type]
        "https://idp.test/token",
        {"grant_type": "client_credentials"},
        error=_never,
        where="w",
        deadline=12.0,
    )
    assert body == {"access_token": "at-post-1234567", "expires_in": 60}
    ((method, url, kwargs),) = http.asked
    assert (method, url) == ("POST", "https://idp.test/token")
    assert kwargs == {
        "data": {"grant_type": "client_credentials"},
        "headers": form_headers(),
        "deadline": 12.0,
    }


def test_get_sends_the_grant_in_the_query_string() -> None:
    http = CannedHttp(canned(200, {"access_token": "at-get-1234567"}))
    request_token(
        http,  # type: ignore[arg-type]
        "https://idp.test/token",
        {"grant_type": "refresh_token"},
        error=_never,
        where="w",
        method="GET",
    )
    ((method, _url, kwargs),) = http.asked
    assert method == "GET"
    assert kwargs == {
        "params": {"grant_type": "refresh_token"},
        "headers": {"Accept": "application/json"},
        "deadline": None,
    }


def test_a_refusal_raises_what_the_provider_makes_of_it() -> None:
    refusal = canned(400, {"error": "invalid_grant"})

    def error(response: requests.Response) -> ProviderError:
        assert response is refusal
        return TerminalError("refused", code="invalid_grant")

    with pytest.raises(TerminalError, match="refused"):
        request_token(CannedHttp(refusal), "u", {}, error=error, where="w")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        {"refresh_token": "rt-only-1234567"},
        {"access_token": "", "refresh_token": "rt-1234567"},
        {"access_token": 1, "refresh_token": "rt-1234567"},
        {"access_token": "at-no-rt-1234567"},
        b"not json",
        [1, 2],
    ],
)
@pytest.mark.parametrize("malformed", [TerminalError, TransientError])
def test_a_200_without_the_required_tokens_is_malformed(
    body: object, malformed: type[ProviderError]
) -> None:
    with pytest.raises(malformed) as raised:
        request_token(
            CannedHttp(canned(200, body)),  # type: ignore[arg-type]
            "u",
            {},
            error=_never,
            where="Bitrix24 token endpoint",
            required=("access_token", "refresh_token"),
            malformed=malformed,
        )
    assert raised.value.code == "malformed_response"
    assert str(raised.value) == (
        "Bitrix24 token endpoint answered 200 without access_token and refresh_token"
    )


def test_tokens_are_registered_for_redaction_before_they_are_returned() -> None:
    answer = {"access_token": "at-never-logged-42", "refresh_token": "rt-never-logged-42"}
    request_token(CannedHttp(canned(200, answer)), "u", {}, error=_never, where="w")  # type: ignore[arg-type]
    assert redact("at-never-logged-42 rt-never-logged-42") == f"{MASK} {MASK}"


# --- parse_expiry -----------------------------------------------------------------------------

HOUR_FROM_NOW = int((NOW + timedelta(hours=1)).timestamp())

# (token answer, when it expires; None: unknown)
EXPIRY_CONFORMANCE: list[tuple[dict[str, Any], datetime | None]] = [
    # expires_in: a number of seconds
    ({"expires_in": 1800}, NOW + timedelta(seconds=1800)),
    ({"expires_in": 90.7}, NOW + timedelta(seconds=90)),
    # ... or numeric text, as google-auth's _parse_expiry accepts it
    ({"expires_in": "1800"}, NOW + timedelta(seconds=1800)),
    ({"expires_in": " 1800 "}, NOW + timedelta(seconds=1800)),
    # garbage is as good as absent
    ({"expires_in": True}, None),
    ({"expires_in": False}, None),
    ({"expires_in": 0}, None),
    ({"expires_in": -5}, None),
    ({"expires_in": "-5"}, None),
    ({"expires_in": "0"}, None),
    ({"expires_in": "soon"}, None),
    ({"expires_in": "90.7"}, None),
    ({"expires_in": "1_800"}, None),
    ({"expires_in": "+1800"}, None),
    ({"expires_in": "\u0661\u0668\u0660\u0660"}, None),  # Arabic-Indic digits
    ({"expires_in": ""}, None),
    ({"expires_in": None}, None),
    ({"expires_in": [60]}, None),
    ({"expires_in": {"s": 60}}, None),
    ({"expires_in": float("nan")}, None),
    ({"expires_in": float("inf")}, None),
    ({"expires_in": 10**20}, None),  # past the end of the calendar
    ({}, None),
    # expires: an absolute Unix time (Bitrix24), used when expires_in does not count
    ({"expires": HOUR_FROM_NOW}, NOW + timedelta(hours=1)),
    ({"expires": str(HOUR_FROM_NOW)}, NOW + timedelta(hours=1)),
    ({"expires_in": 0, "expires": HOUR_FROM_NOW}, NOW + timedelta(hours=1)),
    ({"expires_in": "soon", "expires": HOUR_FROM_NOW}, NOW + timedelta(hours=1)),
    ({"expires_in": 3600, "expires": 1}, NOW + timedelta(seconds=3600)),
    ({"expires_in": -5, "expires": 0}, None),
    ({"expires": True}, None),
    ({"expires": 10**20}, None),
]


@pytest.mark.parametrize(("body", "expected"), EXPIRY_CONFORMANCE)
def test_parse_expiry_conformance(body: dict[str, Any], expected: datetime | None) -> None:
    assert parse_expiry(body, now=NOW) == expected


@pytest.mark.parametrize(("body", "expected"), EXPIRY_CONFORMANCE)
def test_a_default_lifetime_stands_in_for_unknown(
    body: dict[str, Any], expected: datetime | None
) -> None:
    default = timedelta(seconds=3599)
    assert parse_expiry(body, now=NOW, default=default) == (expected or NOW + default)
