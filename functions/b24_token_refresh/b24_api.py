"""Bitrix24's token endpoint: the refresh call, how its answer is read, how a refusal is classed.

The client secret travels in the query string of a GET, so neither the URL nor the request
ever reaches a log line or an exception (see shared.http).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests

from shared import clock
from shared.errors import ProviderError, TerminalError
from shared.http import HttpClient, json_body, oauth_error
from shared.redact import register

# Bitrix24-specific codes that need a person: the trial or paid period ended, or the app
# was removed from the portal.
TERMINAL_CODES = frozenset({"invalid_grant", "invalid_client", "PAYMENT_REQUIRED"})
# Of the run's deadline, what provider retries may not use: storing a rotated token needs it.
PERSIST_RESERVE_SECONDS = 60


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
    """GET the token endpoint. The client secret travels in the query string, so neither the
    URL nor the request ever reaches a log line or an exception (see shared.http)."""
    response = http.request(
        "GET",
        oauth_url,
        params={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        headers={"Accept": "application/json"},
        # Waits asked for by Retry-After must leave time to store what comes back.
        deadline=deadline - PERSIST_RESERVE_SECONDS,
    )
    if response.status_code != 200:
        raise token_error(response)
    body = json_body(response)
    access_token, new_refresh_token = body.get("access_token"), body.get("refresh_token")
    if not isinstance(access_token, str) or not isinstance(new_refresh_token, str):
        # The old refresh token may already be spent: only a person can recover from here.
        raise TerminalError(
            "Bitrix24 token endpoint answered 200 without access_token and refresh_token",
            code="malformed_response",
        )
    register(access_token, new_refresh_token)
    return Tokens(access_token, new_refresh_token, expires_at_from(body))


def token_error(response: requests.Response) -> ProviderError:
    """A refused refresh as TERMINAL (a person must act) or TRANSIENT (wait and retry).

    Only shared.http.oauth_error with Bitrix24's terminal codes: kept as this one call so a
    later consolidation of the status classifiers has one place to change.
    """
    return oauth_error(response, terminal_codes=TERMINAL_CODES, where="Bitrix24 token endpoint")


def expires_at_from(body: dict[str, Any]) -> datetime | None:
    """When the access token expires: ``expires_in`` seconds from now, else the ``expires``
    Unix time; None when unknown (the next run refreshes). Only positive numbers count.

    Kept apart so a later shared expiry parser replaces it in one place.
    """
    expires_in, expires = body.get("expires_in"), body.get("expires")
    if isinstance(expires_in, int | float) and expires_in > 0:
        return clock.now() + timedelta(seconds=int(expires_in))
    if isinstance(expires, int | float) and expires > 0:
        return datetime.fromtimestamp(int(expires), clock.now().tzinfo)
    return None  # unknown: the next run refreshes
