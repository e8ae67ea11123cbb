"""OAuth 2.0 token endpoints: the token request, how a refusal is classed, when a token expires.

Every refresh function asks its provider for a token the same way (``request_token``): the
grant's fields in a form body (or, for Bitrix24, in the query string), a refusal classed by
``oauth_error`` with the provider's own codes, and a 200 answer checked for its tokens, which
are registered for redaction before anyone sees them. ``parse_expiry`` reads when the token
runs out. The provider's quirks (which codes mean "a person must act", where the code is, GET
or POST) are arguments; the provider modules say why they pass them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import requests

from shared.errors import ErrorKind, ProviderError, TerminalError, TransientError
from shared.http import HttpClient, json_body, status_kind
from shared.redact import redact, register

# RFC 6749 section 5.2 codes that no amount of waiting fixes.
OAUTH_TERMINAL_CODES = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_request",
        "access_denied",
    }
)

# Token endpoints keep 409 transient (as they always did here): a conflict at a token endpoint
# is another request on the same grant or client at that moment, which passes, and a person
# asked to re-authorise for it would be sent for nothing.
TOKEN_TRANSIENT_STATUSES = frozenset({409})

# Fields of a token answer that hold a credential: registered for redaction on sight.
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")

_DIGITS = re.compile(r"[0-9]+")


def form_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    headers.update(extra or {})
    return headers


def oauth_error(
    response: requests.Response,
    *,
    terminal_codes: frozenset[str] = OAUTH_TERMINAL_CODES,
    code_fields: tuple[str, ...] = ("error",),
    where: str = "token endpoint",
    refused_by_code_only: bool = False,
) -> ProviderError:
    """Turn a failed token-endpoint response into a TERMINAL or TRANSIENT error.

    The code is the first of ``code_fields`` that holds one (one of ``terminal_codes`` first;
    the bare word "error" names nothing), else ``http_<status>``. A terminal code makes the
    error TERMINAL; otherwise the status decides (shared.http.status_kind, with 409
    transient). With ``refused_by_code_only`` only a terminal code on a status status_kind
    calls terminal does: for a provider that answers many accounts from one URL, where a
    wrong URL (404) or a proxy's 403 must not send every account to a person.
    """
    status = response.status_code
    body = json_body(response)
    codes = [
        value
        for field in code_fields
        if isinstance(value := body.get(field), str) and value and value.lower() != "error"
    ]
    code = next((c for c in codes if c in terminal_codes), codes[0] if codes else "")
    code = code or f"http_{status}"
    description = str(body.get("error_description") or body.get("message") or "")[:200]
    message = f"{where}: HTTP {status} {code}"
    if description:
        message += f" ({redact(description)})"
    by_status = status_kind(status, transient=TOKEN_TRANSIENT_STATUSES)
    if refused_by_code_only:
        terminal = code in terminal_codes and by_status is ErrorKind.TERMINAL
    else:
        terminal = code in terminal_codes or by_status is ErrorKind.TERMINAL
    error = TerminalError if terminal else TransientError
    return error(message, code=code, status=status)


def request_token(
    http: HttpClient,
    url: str,
    fields: Mapping[str, str],
    *,
    error: Callable[[requests.Response], ProviderError],
    where: str,
    method: str = "POST",
    required: tuple[str, ...] = ("access_token",),
    malformed: type[ProviderError] = TransientError,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Ask a token endpoint for a grant; return the JSON object of its 200 answer.

    POST sends ``fields`` as a form body (RFC 6749); GET sends them in the query string
    (Bitrix24), which shared.http keeps out of every log line and exception. Any answer but
    200 raises ``error(response)`` (the provider's ``oauth_error``). A 200 whose ``required``
    fields are not all non-empty strings raises ``malformed`` (code ``malformed_response``):
    transient where the grant used is still good, terminal where it is spent. Tokens in the
    answer are registered for redaction before it is returned.
    """
    sent: dict[str, Any]
    if method == "GET":
        sent = {"params": dict(fields), "headers": {"Accept": "application/json"}}
    else:
        sent = {"data": dict(fields), "headers": form_headers()}
    response = http.request(method, url, deadline=deadline, **sent)
    if response.status_code != 200:
        raise error(response)
    body = json_body(response)
    register(*(v for k in TOKEN_FIELDS if isinstance(v := body.get(k), str)))
    if not all(isinstance(body.get(name), str) and body.get(name) for name in required):
        raise malformed(
            f"{where} answered 200 without {' and '.join(required)}", code="malformed_response"
        )
    return body


@overload
def parse_expiry(body: Mapping[str, Any], *, now: datetime, default: timedelta) -> datetime: ...


@overload
def parse_expiry(
    body: Mapping[str, Any], *, now: datetime, default: None = None
) -> datetime | None: ...


def parse_expiry(
    body: Mapping[str, Any], *, now: datetime, default: timedelta | None = None
) -> datetime | None:
    """When the token of a token answer expires.

    ``expires_in`` seconds after ``now`` (RFC 6749; a number, or text such as ``"1800"`` as
    google-auth accepts it), else ``expires``, an absolute Unix time (Bitrix24 sends both),
    else ``now + default``, else None: unknown, so the next run refreshes. Only positive finite
    numbers and digit strings count; a bool, zero, a negative number or other text is as good as
    absent. Fractions of a second are dropped.
    """
    seconds = _positive(body.get("expires_in"))
    if seconds is not None:
        try:
            return now + timedelta(seconds=seconds)
        except OverflowError:
            pass  # centuries away: nonsense, as good as absent
    at = _positive(body.get("expires"))
    if at is not None:
        try:
            return datetime.fromtimestamp(at, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return None if default is None else now + default


def _positive(value: Any) -> int | None:
    """A positive whole number from a JSON number or a digit string; None otherwise."""
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or int(value) <= 0:
        return None
    return int(value)
