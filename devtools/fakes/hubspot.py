"""A HubSpot OAuth server, built from HubSpot's documented token contract.

- ``POST /oauth/2026-03/token`` (the date-versioned endpoint HubSpot's migration guide points
  to), ``POST /oauth/v3/token`` (the same contract, undated) and ``POST /oauth/v1/token``
  (legacy, retired 2027-02-16) take the same ``application/x-www-form-urlencoded`` body:
  ``grant_type=refresh_token``, ``client_id``, ``client_secret``, ``refresh_token``. The two
  newer ones take parameters in the body only: anything in the query string is refused (400).
- 200: ``{"token_type": "bearer", "refresh_token", "access_token", "expires_in": 1800,
  "hub_id", "scopes"}`` (snake_case on the wire).
- Refresh tokens are long-lived and reusable. Whether a refresh returns a *new* refresh token
  is not documented: ``rotation`` chooses ``never`` (what a live test observed), ``always`` or
  ``alternate`` (every second refresh), and ``old_token_survives_rotation`` whether the
  previous one keeps working.
- Errors, 400: an unknown, revoked or expired refresh token answers ``{"error":
  "invalid_grant", "status": "BAD_REFRESH_TOKEN", ...}``; so does a client id and secret
  that are not the app that issued the token (what integrators report); a deleted portal
  answers ``{"status": "BAD_HUB", "error": "access_denied"}``. ``error_format="legacy"``
  drops ``error``/``error_description`` (the older body).
- ``GET /oauth/v1/access-tokens/{token}`` describes a live access token (404 otherwise), so a
  demo can show that the stored token really works.

Latency, injected faults and the highest number of requests in flight come from
:class:`devtools.fakes.base.FakeServer`.

``nodelay`` (default on) sends each answer without Nagle's delay: the base server writes the
headers and the body as two small segments, and on a kept-alive connection the body then waits
for the client's delayed ACK, about 40 ms per token call that HubSpot itself does not cost.
``nodelay=False`` keeps that stall (benchmarks measure the earlier figures with it).
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from devtools.fakes.base import FakeServer, Request, Response, issued

V1_TOKEN_ROUTE = "/oauth/v1/token"
V3_TOKEN_ROUTE = "/oauth/v3/token"
# The path of hubspot_refresh's default HUBSPOT_TOKEN_URL.
CURRENT_TOKEN_ROUTE = "/oauth/2026-03/token"
ROTATIONS = ("never", "always", "alternate")
LISTEN_BACKLOG = 1024


@dataclass
class _Grant:
    hub_id: int
    client_id: str
    revoked: bool = False
    refreshes: int = 0


@dataclass
class _AccessToken:
    hub_id: int
    client_id: str
    expires_at: float


class HubSpotFake(FakeServer):
    def __init__(
        self,
        *,
        client_id: str = "00000000-0000-0000-0000-000000000001",
        client_secret: str | None = None,
        expires_in: int = 1800,
        rotation: str = "never",
        old_token_survives_rotation: bool = True,
        error_format: str = "standard",
        nodelay: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.nodelay = nodelay  # read by _handler_class, which the base __init__ calls
        super().__init__(host, port)
        # The base server listens with a backlog of 5: several function processes opening
        # their pools at once (64 connections) overflow it and see resets HubSpot never sends.
        self._server.socket.listen(LISTEN_BACKLOG)
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}")
        self.client_id = client_id
        self.client_secret = issued(client_secret or secrets.token_urlsafe(24))
        self.apps: dict[str, str] = {self.client_id: self.client_secret}
        self.expires_in = expires_in
        self.rotation = rotation
        self.old_token_survives_rotation = old_token_survives_rotation
        self.error_format = error_format
        self.grants: dict[str, _Grant] = {}
        self.access_tokens: dict[str, _AccessToken] = {}
        self.deleted_hubs: set[int] = set()
        self.refreshes: Counter[int] = Counter()  # successful refreshes per hub id
        self.refused: Counter[int] = Counter()  # refused refreshes per hub id (0: unknown)
        self.token_paths: Counter[str] = Counter()  # token requests per path (which endpoint)
        self._issued = 0
        self.route("POST", V1_TOKEN_ROUTE, self._token_v1, name="token")
        self.route("POST", V3_TOKEN_ROUTE, self._token_v3, name="token")
        self.route("POST", CURRENT_TOKEN_ROUTE, self._token_v3, name="token")
        self.route("GET", "/oauth/v1/access-tokens/{token}", self._access_token_info)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        handler = super()._handler_class()
        return type("_HubSpotHandler", (handler,), {"disable_nagle_algorithm": self.nodelay})

    # --- set-up (tests and admin) -------------------------------------------------------

    def add_app(
        self, client_id: str | None = None, client_secret: str | None = None
    ) -> tuple[str, str]:
        """Another public app: its own client id and secret."""
        pair = (
            client_id or secrets.token_hex(18),
            issued(client_secret or secrets.token_urlsafe(24)),
        )
        with self.lock:
            self.apps[pair[0]] = pair[1]
        return pair

    def new_refresh_token(self, hub_id: int, client_id: str | None = None) -> str:
        """A refresh token as installing the app on portal ``hub_id`` would return it."""
        token = issued(f"na1-{secrets.token_hex(4)}-{secrets.token_hex(16)}")
        with self.lock:
            self.grants[token] = _Grant(hub_id, client_id or self.client_id)
        return token

    def revoke(self, refresh_token: str) -> None:
        with self.lock:
            self.grants[refresh_token].revoked = True

    def delete_hub(self, hub_id: int) -> None:
        with self.lock:
            self.deleted_hubs.add(hub_id)

    def is_live(self, access_token: str) -> bool:
        with self.lock:
            found = self.access_tokens.get(access_token)
            return found is not None and found.expires_at > time.time()

    def reset_observations(self) -> None:
        super().reset_observations()
        with self.lock:
            self.refreshes.clear()
            self.refused.clear()
            self.token_paths.clear()

    # --- the contract -------------------------------------------------------------------

    def _error(self, status_code: str, error: str, description: str, status: int = 400) -> Response:
        body: dict[str, object] = {
            "status": status_code,
            "message": description,
            "correlationId": secrets.token_hex(8),
        }
        if self.error_format == "standard":
            body.update(error=error, error_description=description)
        return Response(status, body)

    def _token_v1(self, request: Request) -> Response:
        with self.lock:
            self.token_paths[request.path] += 1
        return self._token(request)

    def _token_v3(self, request: Request) -> Response:
        """v3 and the date-versioned endpoints: v1's form, in the body only."""
        with self.lock:
            self.token_paths[request.path] += 1
        if request.query:
            return self._error(
                "BAD_REQUEST", "invalid_request", "parameters must be sent in the request body"
            )
        return self._token(request)

    def _token(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return self._error(
                "BAD_REQUEST", "invalid_request", "expected application/x-www-form-urlencoded"
            )
        form = request.form()
        if form.get("grant_type") != "refresh_token":
            return self._error("BAD_GRANT_TYPE", "unsupported_grant_type", "unknown grant_type")
        client_id = form.get("client_id", "")
        with self.lock:
            grant = self.grants.get(form.get("refresh_token", ""))
            hub = grant.hub_id if grant else 0
            if grant is None or grant.revoked:
                self.refused[hub] += 1
                return self._error(
                    "BAD_REFRESH_TOKEN",
                    "invalid_grant",
                    "refresh token is invalid, expired or revoked",
                )
            if (
                self.apps.get(client_id) != form.get("client_secret")
                or grant.client_id != client_id
            ):
                # HubSpot does not say "wrong client": it refuses the refresh token.
                self.refused[hub] += 1
                return self._error(
                    "BAD_REFRESH_TOKEN", "invalid_grant", "missing or unknown refresh token"
                )
            if grant.hub_id in self.deleted_hubs:
                self.refused[hub] += 1
                return self._error("BAD_HUB", "access_denied", "hub not found")
            grant.refreshes += 1
            self._issued += 1
            rotate = self.rotation == "always" or (
                self.rotation == "alternate" and self._issued % 2 == 0
            )
            refresh_token = form["refresh_token"]
            if rotate:
                new_token = issued(f"na1-{secrets.token_hex(4)}-{secrets.token_hex(16)}")
                self.grants[new_token] = _Grant(grant.hub_id, grant.client_id)
                if not self.old_token_survives_rotation:
                    grant.revoked = True
                refresh_token = new_token
            access_token = issued(f"CJ{secrets.token_urlsafe(48)}")
            self.access_tokens[access_token] = _AccessToken(
                grant.hub_id, grant.client_id, time.time() + self.expires_in
            )
            self.refreshes[grant.hub_id] += 1
        return Response(
            200,
            {
                "token_type": "bearer",
                "refresh_token": refresh_token,
                "access_token": access_token,
                "expires_in": self.expires_in,
                "hub_id": grant.hub_id,
                "scopes": ["oauth", "crm.objects.contacts.read"],
            },
        )

    def _access_token_info(self, request: Request) -> Response:
        with self.lock:
            found = self.access_tokens.get(request.match["token"])
        if found is None or found.expires_at <= time.time():
            return Response(
                404, {"status": "error", "message": "access token not found or expired"}
            )
        return Response(
            200,
            {
                "token": "[elided]",
                "hub_id": found.hub_id,
                "app_id": 1,
                "expires_in": int(found.expires_at - time.time()),
                "token_type": "access",
                "scopes": ["oauth", "crm.objects.contacts.read"],
            },
        )

    def admin(self, request: Request) -> Response:
        if request.path == "/_admin/refresh-tokens" and request.method == "POST":
            spec = request.json() or {}
            token = self.new_refresh_token(int(spec["hub_id"]), spec.get("client_id"))
            return Response(200, {"refresh_token": token})
        if request.path == "/_admin/refreshes":
            with self.lock:
                return Response(200, {"refreshes": {str(k): v for k, v in self.refreshes.items()}})
        return super().admin(request)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the HubSpot OAuth fake.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rotation", choices=ROTATIONS, default="never")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--client-id", default="00000000-0000-0000-0000-000000000001")
    parser.add_argument(
        "--client-secret-file",
        type=Path,
        help="file holding the app's client secret (default: a random one, never printed)",
    )
    args = parser.parse_args()
    secret = args.client_secret_file.read_text().strip() if args.client_secret_file else None
    fake = HubSpotFake(
        host=args.host,
        port=args.port,
        rotation=args.rotation,
        client_id=args.client_id,
        client_secret=secret,
    )
    fake.latency = args.latency
    print(f"ready url={fake.url} client_id={fake.client_id}", flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
