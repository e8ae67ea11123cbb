"""HubSpot's token endpoint: the refresh call, how its answer is read, how a refusal is classed.

Everything travels in the form body (v1 and v3 take the same fields), so the URL is safe to log
and switching to v3 is only a different ``token_url``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests

from shared import clock
from shared.errors import ProviderError, TerminalError, TransientError
from shared.http import HttpClient, form_headers, json_body
from shared.redact import redact, register

# Error codes after which waiting does not help: the refresh token was revoked, the portal
# was deleted, or the client id and secret are not the app that issued the token (HubSpot
# answers BAD_REFRESH_TOKEN for that too). HubSpot puts its own code in "status" and, since
# the v3 error format, an OAuth code in "error"; both are looked at.
TERMINAL_CODES = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "access_denied",
        "BAD_REFRESH_TOKEN",
        "BAD_HUB",
        "BAD_CLIENT_ID",
    }
)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None


def call_hubspot(
    token_url: str,
    http: HttpClient,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    *,
    deadline: float | None = None,
) -> Tokens:
    """POST the refresh form. Everything travels in the body, so the URL is safe to log."""
    response = http.request(
        "POST",
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        headers=form_headers(),
        deadline=deadline,
    )
    if response.status_code != 200:
        raise token_error(response)
    body = json_body(response)
    access_token = body.get("access_token")
    new_refresh_token = body.get("refresh_token")
    if not isinstance(access_token, str) or not access_token:
        # HubSpot refresh tokens are reusable, so the stored one still works: try again later.
        raise TransientError(
            "HubSpot token endpoint answered 200 without an access_token",
            code="malformed_response",
        )
    register(access_token, new_refresh_token if isinstance(new_refresh_token, str) else None)
    return Tokens(
        access_token,
        new_refresh_token if isinstance(new_refresh_token, str) and new_refresh_token else None,
        expires_at_from(body.get("expires_in")),
    )


def expires_at_from(expires_in: Any) -> datetime | None:
    """When the access token expires, from ``expires_in`` seconds; None when unknown (the next
    run refreshes). Only a positive number counts here: a string such as "1800" does not.

    Kept apart so the later shared expiry parser (int-or-string) replaces it in one line.
    """
    return (
        clock.now() + timedelta(seconds=int(expires_in))
        if isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and expires_in > 0
        else None  # unknown: the next run refreshes
    )


def token_error(response: requests.Response) -> ProviderError:
    """A refused refresh as TERMINAL (a person must act) or TRANSIENT (wait and retry).

    Only codes that mean "this refresh token or client is refused" are terminal: a
    misconfigured URL (404) or a proxy's 403 must not lock every account into needs-reauth.
    """
    body = json_body(response)
    candidates = [body.get("status"), body.get("error"), body.get("category")]
    codes = [c for c in candidates if isinstance(c, str) and c and c.lower() != "error"]
    code = next((c for c in codes if c in TERMINAL_CODES), codes[0] if codes else "")
    code = code or f"http_{response.status_code}"
    description = str(body.get("error_description") or body.get("message") or "")[:200]
    message = f"HubSpot token endpoint: HTTP {response.status_code} {code}"
    if description:
        message += f" ({redact(description)})"
    if code in TERMINAL_CODES and 400 <= response.status_code < 500:
        return TerminalError(message, code=code, status=response.status_code)
    return TransientError(message, code=code, status=response.status_code)
