"""Microsoft Graph as the reconciler uses it: an app-only token and the subscriptions API.

- Token: client credentials against ``{login}/{tenant}/oauth2/v2.0/token`` (form-encoded,
  scope ``https://graph.microsoft.com/.default``). There is no refresh token; the token is
  kept until shortly before ``expires_in`` runs out, then a new one is requested.
- ``GET /v1.0/subscriptions`` lists the app's own subscriptions, page by page through
  ``@odata.nextLink``; ``POST`` creates (Graph validates both URLs first), ``PATCH`` renews,
  ``DELETE`` removes, ``POST /{id}/reauthorize`` reauthorises.
- 429 and 5xx are retried by ``shared.http.HttpClient``, honouring ``Retry-After``; what is
  left is classed by ``shared.http.status_kind`` (see ``graph_error``). A PATCH, DELETE or
  reauthorize answering 404 means Graph already deleted the subscription (observed behaviour,
  not documented), which the caller handles by creating it again.

Importing this module costs the ``requests`` import, so the notify entry point never does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from graph_plan import Subscription

from shared import clock
from shared.errors import ProviderError, TerminalError, TransientError
from shared.http import HttpClient, json_body, status_error
from shared.oauth import oauth_error, parse_expiry, request_token
from shared.redact import redact

SCOPE = "https://graph.microsoft.com/.default"

# A token is replaced this long before Microsoft said it expires.
TOKEN_SKEW = timedelta(minutes=5)
# The lifetime assumed when the answer gives none that counts: an odd answer then costs at
# most an early refresh.
DEFAULT_TOKEN_LIFETIME = timedelta(seconds=3599)
ENTRA_WHERE = "Entra ID token endpoint"

# Graph statuses that are terminal although shared.http.status_kind calls them transient:
# 409 on a subscription is a conflict (one already exists for that resource, or a concurrent
# change) that the same request sent again does not resolve; 501 is Graph's documented "the
# requested feature isn't implemented", e.g. a resource that takes no subscriptions.
GRAPH_TERMINAL_STATUSES = frozenset({409, 501})

# Entra ID codes that no retry fixes: wrong or expired client secret, unknown tenant or app.
TERMINAL_TOKEN_CODES = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_request", "invalid_scope", "invalid_grant"}
)


@dataclass(frozen=True)
class AppCredentials:
    tenant_id: str
    client_id: str
    client_secret: str


class AppToken:
    """An app-only token, fetched on first use and kept until shortly before it expires.

    ``credentials`` is called only when a new token is needed (about once an hour), so a
    rotated client secret is picked up without a restart.
    """

    def __init__(
        self,
        http: HttpClient,
        login_url: str,
        credentials: Callable[[], AppCredentials],
    ) -> None:
        self.http = http
        self.login_url = login_url.rstrip("/")
        self.credentials = credentials
        self._token: str | None = None
        self._valid_until: datetime | None = None
        self._lock = threading.Lock()
        self.fetched = 0

    def get(self, *, deadline: float | None = None) -> str:
        with self._lock:
            now = clock.now()
            if self._token is not None and self._valid_until and now < self._valid_until:
                return self._token
            creds = self.credentials()
            body = request_token(
                self.http,
                f"{self.login_url}/{quote(creds.tenant_id, safe='')}/oauth2/v2.0/token",
                {
                    "grant_type": "client_credentials",
                    "client_id": creds.client_id,
                    "client_secret": creds.client_secret,
                    "scope": SCOPE,
                },
                error=token_error,
                where=ENTRA_WHERE,
                malformed=TransientError,  # client credentials are not spent: try again
                deadline=deadline,
            )
            token: str = body["access_token"]
            self._token = token
            expires = parse_expiry(body, now=now, default=DEFAULT_TOKEN_LIFETIME)
            self._valid_until = expires - TOKEN_SKEW
            self.fetched += 1
            return token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._valid_until = None


def token_error(response: requests.Response) -> ProviderError:
    """A refused token request as TERMINAL (a person must act) or TRANSIENT (wait and retry)."""
    return oauth_error(response, terminal_codes=TERMINAL_TOKEN_CODES, where=ENTRA_WHERE)


def graph_error(response: requests.Response, where: str) -> ProviderError:
    """Graph's ``{"error": {"code", "message"}}`` as a typed error, classed by
    shared.http.status_kind with GRAPH_TERMINAL_STATUSES."""
    error = json_body(response).get("error")
    code, message = f"http_{response.status_code}", ""
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = redact(str(error.get("message") or ""))[:300]
    text = f"{where}: HTTP {response.status_code} {code}" + (f" ({message})" if message else "")
    return status_error(
        text, status=response.status_code, code=code, terminal=GRAPH_TERMINAL_STATUSES
    )


def parse_subscription(body: Any) -> Subscription | None:
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        return None
    return Subscription(
        id=body["id"],
        resource=str(body.get("resource") or ""),
        change_type=str(body.get("changeType") or ""),
        notification_url=str(body.get("notificationUrl") or ""),
        lifecycle_url=body.get("lifecycleNotificationUrl") or None,
        expires_at=clock.parse_time(body.get("expirationDateTime")),
    )


class GraphClient:
    def __init__(self, http: HttpClient, api_url: str, token: AppToken) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.token = token

    def _call(
        self, method: str, url: str, *, deadline: float, json: Any = None
    ) -> requests.Response:
        """One Graph call with the bearer token; a 401 gets one retry with a fresh token."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token.get(deadline=deadline)}"}
            if json is not None:
                headers["Content-Type"] = "application/json"
            response = self.http.request(method, url, headers=headers, json=json, deadline=deadline)
            if response.status_code != 401 or attempt == 2:
                return response
            self.token.invalidate()
        raise AssertionError("unreachable")  # pragma: no cover

    def _url(self, path: str) -> str:
        return f"{self.api_url}/v1.0{path}"

    def list_subscriptions(self, *, deadline: float) -> list[Subscription]:
        """Every subscription of the app, following ``@odata.nextLink`` page by page."""
        found: list[Subscription] = []
        url: str | None = self._url("/subscriptions")
        origin = urlsplit(self.api_url)[:2]
        pages = 0
        while url:
            pages += 1
            if pages > 100:
                raise TransientError("GET /v1.0/subscriptions: more than 100 pages")
            response = self._call("GET", url, deadline=deadline)
            if response.status_code != 200:
                raise graph_error(response, "GET /v1.0/subscriptions")
            body = json_body(response)
            for item in body.get("value") or []:
                sub = parse_subscription(item)
                if sub is not None:
                    found.append(sub)
            link = body.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
            if url and urlsplit(url)[:2] != origin:
                # Never send the bearer token anywhere but the configured Graph host.
                raise TerminalError("GET /v1.0/subscriptions: nextLink points to another host")
        return found

    def create(
        self,
        *,
        resource: str,
        change_type: str,
        notification_url: str,
        client_state: str,
        expires_at: datetime,
        deadline: float,
    ) -> Subscription:
        body = {
            "changeType": change_type,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": clock.format_time(expires_at),
            "clientState": client_state,
        }
        response = self._call("POST", self._url("/subscriptions"), json=body, deadline=deadline)
        if response.status_code not in (200, 201):
            raise graph_error(response, "POST /v1.0/subscriptions")
        sub = parse_subscription(json_body(response))
        if sub is None:
            raise TransientError("POST /v1.0/subscriptions answered without a subscription id")
        return sub

    def renew(self, sub_id: str, expires_at: datetime, *, deadline: float) -> Subscription | None:
        """The renewed subscription, or None when Graph no longer has it (404)."""
        response = self._call(
            "PATCH",
            self._url(f"/subscriptions/{quote(sub_id, safe='')}"),
            json={"expirationDateTime": clock.format_time(expires_at)},
            deadline=deadline,
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise graph_error(response, "PATCH /v1.0/subscriptions/{id}")
        return parse_subscription(json_body(response))

    def delete(self, sub_id: str, *, deadline: float) -> bool:
        """True when deleted, False when it was already gone."""
        response = self._call(
            "DELETE", self._url(f"/subscriptions/{quote(sub_id, safe='')}"), deadline=deadline
        )
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 204):
            raise graph_error(response, "DELETE /v1.0/subscriptions/{id}")
        return True

    def reauthorize(self, sub_id: str, *, deadline: float) -> bool:
        """True when reauthorised, False when the subscription is gone (404)."""
        response = self._call(
            "POST",
            self._url(f"/subscriptions/{quote(sub_id, safe='')}/reauthorize"),
            deadline=deadline,
        )
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 202, 204):
            raise graph_error(response, "POST /v1.0/subscriptions/{id}/reauthorize")
        return True
