"""A Bitrix24 OAuth server, as documented for oauth.bitrix.info.

- ``GET /oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token``.
- Refresh tokens are single use: a second use answers 400 ``invalid_grant``, and the access
  token issued with a refresh token dies when that refresh token is spent.
- ``expires_in`` 3600, plus ``expires`` (Unix time), ``domain`` = ``oauth.bitrix.info``.
- Error modes: ``invalid_client`` (wrong client or app removed) and ``PAYMENT_REQUIRED``.
- ``GET /rest/{method}?auth=TOKEN`` answers 401 ``expired_token`` unless TOKEN is live, so a
  demo can show the stored token really works.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devtools.fakes.base import FakeServer, Request, Response, issued

if TYPE_CHECKING:
    from shared.secrets import SecretStore

TOKEN_ROUTE = "/oauth/token/"


@dataclass
class _Grant:
    used: bool = False
    access_token: str | None = None


class Bitrix24Fake(FakeServer):
    def __init__(
        self,
        *,
        client_id: str = "local.fake000000000000.00000000",
        client_secret: str | None = None,
        expires_in: int = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.client_id = client_id
        self.client_secret = issued(client_secret or secrets.token_urlsafe(24))
        self.expires_in = expires_in
        self.mode: str | None = None  # None | "invalid_client" | "PAYMENT_REQUIRED"
        self.grants: dict[str, _Grant] = {}
        self.live_access_tokens: set[str] = set()
        self.refreshes = 0
        self.reused = 0
        self.route("GET", TOKEN_ROUTE, self._token)
        self.route("GET", "/rest/{method}", self._rest)

    def new_refresh_token(self) -> str:
        """A refresh token as an installation of the app would receive it."""
        token = issued(secrets.token_hex(35))
        with self.lock:
            self.grants[token] = _Grant()
        return token

    def _error(self, code: str, description: str, status: int = 400) -> Response:
        return Response(status, {"error": code, "error_description": description})

    def _token(self, request: Request) -> Response:
        q = request.query
        if q.get("grant_type") != "refresh_token":
            return self._error("invalid_request", "grant_type must be refresh_token")
        if self.mode == "PAYMENT_REQUIRED":
            return self._error("PAYMENT_REQUIRED", "Payment required")
        if self.mode == "invalid_client" or (
            q.get("client_id") != self.client_id or q.get("client_secret") != self.client_secret
        ):
            return self._error("invalid_client", "Invalid client")
        with self.lock:
            grant = self.grants.get(q.get("refresh_token", ""))
            if grant is None:
                return self._error("invalid_grant", "Invalid refresh token")
            if grant.used:
                self.reused += 1
                return self._error("invalid_grant", "Refresh token has already been used")
            grant.used = True
            if grant.access_token:
                # Spending a refresh token also ends the access token issued with it.
                self.live_access_tokens.discard(grant.access_token)
            self.refreshes += 1
            access_token = issued(secrets.token_hex(35))
            refresh_token = issued(secrets.token_hex(35))
            self.grants[refresh_token] = _Grant(access_token=access_token)
            self.live_access_tokens.add(access_token)
        return Response(
            200,
            {
                "access_token": access_token,
                "expires": int(time.time()) + self.expires_in,
                "expires_in": self.expires_in,
                "scope": "app",
                "domain": "oauth.bitrix.info",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "status": "L",
                "client_endpoint": f"{self.url}/rest/",
                "member_id": "a223c6b3710f85df22e9377d6c4f7553",
                "user_id": 1,
                "refresh_token": refresh_token,
            },
        )

    def _rest(self, request: Request) -> Response:
        if request.query.get("auth") not in self.live_access_tokens:
            return Response(
                401,
                {
                    "error": "expired_token",
                    "error_description": "The access token provided has expired",
                },
            )
        return Response(200, {"result": {"ID": "1", "NAME": "Demo"}, "time": {}})


def seed_secrets(fake: Bitrix24Fake, store: SecretStore, secrets: Mapping[str, str]) -> str:
    """The Bitrix24 secrets as deploy.sh leaves them: all four created, the app's client id and
    secret stored, and a first refresh token that this fake issued (returned). ``secrets``
    maps client_id, client_secret, refresh_token and access_token to secret ids."""
    for secret_id in secrets.values():
        store.create(secret_id, labels={"integration": "bitrix24"})
    store.add_version(secrets["client_id"], fake.client_id)
    store.add_version(secrets["client_secret"], fake.client_secret)
    refresh_token = fake.new_refresh_token()
    store.add_version(secrets["refresh_token"], refresh_token)
    return refresh_token


def function_env(fake: Bitrix24Fake, secrets: Mapping[str, str], bucket: str) -> dict[str, str]:
    """The b24_token_refresh environment that points it at this fake and these secrets."""
    return {
        "STATE_BUCKET": bucket,
        "B24_OAUTH_URL": f"{fake.url}{TOKEN_ROUTE}",
        "B24_CLIENT_ID_SECRET": secrets["client_id"],
        "B24_CLIENT_SECRET_SECRET": secrets["client_secret"],
        "B24_REFRESH_TOKEN_SECRET": secrets["refresh_token"],
        "B24_ACCESS_TOKEN_SECRET": secrets["access_token"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Bitrix24 OAuth fake.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = Bitrix24Fake(host=args.host, port=args.port)
    print(f"ready url={fake.url} client_id={fake.client_id}", flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
