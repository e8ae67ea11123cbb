"""HubSpot's token endpoint: the refresh call, how its answer is read, how a refusal is classed.

Everything travels in the form body (v1, v3 and the date-versioned endpoints take the same
fields, the newer ones in the body only), so the URL is safe to log and switching endpoints is
only a different ``token_url``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import requests

from shared import clock
from shared.errors import ProviderError, TransientError
from shared.http import HttpClient
from shared.oauth import oauth_error, parse_expiry, request_token

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
WHERE = "HubSpot token endpoint"


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
    body = request_token(
        http,
        token_url,
        {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        error=token_error,
        where=WHERE,
        # HubSpot refresh tokens are reusable, so the stored one still works: try again later.
        malformed=TransientError,
        deadline=deadline,
    )
    new_refresh_token = body.get("refresh_token")
    return Tokens(
        body["access_token"],
        new_refresh_token if isinstance(new_refresh_token, str) and new_refresh_token else None,
        parse_expiry(body, now=clock.now()),  # None (unknown): the next run refreshes
    )


def token_error(response: requests.Response) -> ProviderError:
    """A refused refresh as TERMINAL (a person must act) or TRANSIENT (wait and retry).

    Only codes that mean "this refresh token or client is refused" are terminal: a
    misconfigured URL (404) or a proxy's 403 must not lock every account into needs-reauth.
    """
    return oauth_error(
        response,
        terminal_codes=TERMINAL_CODES,
        code_fields=("status", "error", "category"),
        where=WHERE,
        refused_by_code_only=True,
    )
