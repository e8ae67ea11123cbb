"""Bitrix24's token endpoint: the refresh call, how its answer is read, how a refusal is classed.

The client secret travels in the query string of a GET, so neither the URL nor the request
ever reaches a log line or an exception (see shared.http).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import requests

from shared import clock
from shared.errors import ProviderError, TerminalError
from shared.http import HttpClient
from shared.oauth import oauth_error, parse_expiry, request_token

# Bitrix24-specific codes that need a person: the trial or paid period ended, or the app
# was removed from the portal.
TERMINAL_CODES = frozenset({"invalid_grant", "invalid_client", "PAYMENT_REQUIRED"})
# Of the run's deadline, what provider retries may not use: storing a rotated token needs it.
PERSIST_RESERVE_SECONDS = 60
WHERE = "Bitrix24 token endpoint"


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: datetime | None


def call_bitrix24(
    oauth_url: str,
    http: HttpClient,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    deadline: float,
) -> Tokens:
    """GET the token endpoint (Bitrix24 takes the grant in the query string, not a form)."""
    body = request_token(
        http,
        oauth_url,
        {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        method="GET",
        error=token_error,
        where=WHERE,
        required=("access_token", "refresh_token"),
        # The old refresh token may already be spent: only a person can recover from here.
        malformed=TerminalError,
        # Waits asked for by Retry-After must leave time to store what comes back.
        deadline=deadline - PERSIST_RESERVE_SECONDS,
    )
    # Unknown expiry (None): the next run refreshes.
    expires_at = parse_expiry(body, now=clock.now())
    return Tokens(body["access_token"], body["refresh_token"], expires_at)


def token_error(response: requests.Response) -> ProviderError:
    """A refused refresh as TERMINAL (a person must act) or TRANSIENT (wait and retry)."""
    return oauth_error(response, terminal_codes=TERMINAL_CODES, where=WHERE)
