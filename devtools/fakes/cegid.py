"""A Cegid Data Access API, built from the endpoints third-party scripts use (no official
documentation is public; see functions/cegid_transfer/cegid_api.py).

- ``GET /tokenprovider/Token?api-key-Id=ID`` with headers ``api-key-secret``, ``x-tenantId``,
  ``Ocp-Apim-Subscription-Key`` -> ``{"accessToken", "expireIn": "3600", "tenantId"}``.
- ``GET /storage/api/V1/storages/GetSASTokenLRD`` (read/list/delete) and ``.../GetSASTokenLR``
  (read/list), bearer token + tenant + subscription key -> ``{blobServiceUri, containerName,
  sasToken, blobName}``. The SAS is a real one for a container on Azurite named after the
  tenant, signed with Azurite's well-known development key (``generate_container_sas``).
- ``GET /datasource/api/V2/datasources/tenant/{id}`` -> ``{continuationRequest, data: [...]}``:
  the sources of provider ``id``, or every source when ``id`` is the tenant id (discovery).
- ``GET /query/api/V1/schedulers/tenant/provider/{providerId}`` -> ``[{id, enable, cron,
  nextExecution, lastExecution, query: {name, content}}]``; ``PUT /query/api/V1/schedulers``
  replaces one scheduler with the object sent.
- Errors carry ``errorMessage``. Modes (``fake.mode``, or ``POST /_admin/mode``):
  ``expired_sas`` (SAS already expired), ``read_only_sas`` (the LRD endpoint hands out
  ``sp=rl``), ``invalid_key`` (401 on token).
"""

from __future__ import annotations

import argparse
import copy
import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from devtools.fakes.base import FakeServer, Request, Response, issued
from devtools.stack import AZURITE_ACCOUNT, AZURITE_KEY

TOKEN_ROUTE = "/tokenprovider/Token"
SAS_LRD_ROUTE = "/storage/api/V1/storages/GetSASTokenLRD"
SAS_LR_ROUTE = "/storage/api/V1/storages/GetSASTokenLR"
DATASOURCES_ROUTE = "/datasource/api/V2/datasources/tenant/{id}"
SCHEDULERS_ROUTE = "/query/api/V1/schedulers/tenant/provider/{providerId}"
SCHEDULER_PUT_ROUTE = "/query/api/V1/schedulers"


class CegidFake(FakeServer):
    def __init__(
        self,
        *,
        azurite_url: str,
        tenant_id: str = "98537347",
        provider_id: str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        api_key_id: str = "cda-key-0001",
        api_key_secret: str | None = None,
        subscription_key: str | None = None,
        sas_lifetime: timedelta = timedelta(hours=1),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.azurite_url = azurite_url.rstrip("/")
        self.tenant_id = tenant_id
        self.provider_id = provider_id
        self.api_key_id = api_key_id
        self.api_key_secret = issued(api_key_secret or secrets.token_urlsafe(24))
        self.subscription_key = issued(subscription_key or secrets.token_hex(16))
        self.sas_lifetime = sas_lifetime
        self.mode: str | None = None  # None | expired_sas | read_only_sas | invalid_key
        self.tokens: set[str] = set()
        self.datasources: list[dict[str, Any]] = [
            {
                "id": "ds-1",
                "name": "Ecritures comptables",
                "tenantId": tenant_id,
                "displayPath": "Cegid XRP / HR Sprint On Demand / Comptabilite",
                "providerId": provider_id,
                "queryLanguage": "SQL",
            }
        ]
        now = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
        self.schedulers: list[dict[str, Any]] = [
            _scheduler("ECRITURES", "0 2 * * *", now),
            _scheduler("TIERS", "30 2 * * *", now),
            _scheduler("BALANCE_ANALYTIQUE", "0 3 * * 1", now),
        ]
        self.route("GET", TOKEN_ROUTE, self._token)
        self.route("GET", SAS_LRD_ROUTE, lambda r: self._sas(r, "rdl"))
        self.route("GET", SAS_LR_ROUTE, lambda r: self._sas(r, "rl"))
        self.route("GET", DATASOURCES_ROUTE, self._datasources)
        self.route("GET", SCHEDULERS_ROUTE, self._list_schedulers)
        self.route("PUT", SCHEDULER_PUT_ROUTE, self._put_scheduler)

    # -- helpers for tests -------------------------------------------------------------------

    @property
    def container_name(self) -> str:
        return self.tenant_id.lower()

    def container(self) -> Any:
        """The tenant's container on Azurite (created if missing), with the account key."""
        service = BlobServiceClient(self.azurite_url, credential=_key_credential())
        container = service.get_container_client(self.container_name)
        if not container.exists():
            container.create_container()
        return container

    def container_sas_url(self, permission: str = "rdl", expiry: datetime | None = None) -> str:
        """What a person would paste from the portal (mode ``sas_url``)."""
        return f"{self.azurite_url}/{self.container_name}?{self._sign(permission, expiry)}"

    def _sign(self, permission: str, expiry: datetime | None = None) -> str:
        sas = generate_container_sas(
            account_name=AZURITE_ACCOUNT,
            container_name=self.container_name,
            account_key=AZURITE_KEY,
            permission=ContainerSasPermissions.from_string(permission),
            expiry=expiry or datetime.now(UTC) + self.sas_lifetime,
            start=datetime.now(UTC) - timedelta(minutes=5),
        )
        issued(sas)
        issued(sas.split("sig=", 1)[1].split("&", 1)[0])
        return str(sas)

    def admin(self, request: Request) -> Response:
        """``POST /_admin/mode {"mode": "expired_sas" | "read_only_sas" | "invalid_key" | null}``
        and ``GET /_admin/schedulers`` for a demo in another process."""
        if request.path == "/_admin/mode" and request.method == "POST":
            mode = request.json().get("mode")
            if mode not in (None, "expired_sas", "read_only_sas", "invalid_key"):
                return self._fail(400, f"unknown mode {mode!r}")
            self.mode = mode
            return Response(status=204)
        if request.path == "/_admin/schedulers":
            with self.lock:
                return Response(200, copy.deepcopy(self.schedulers))
        return super().admin(request)

    # -- routes ------------------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> Response:
        return Response(status, {"errorMessage": message})

    def _client_ok(self, request: Request) -> Response | None:
        if request.headers.get("x-tenantid") != self.tenant_id:
            return self._fail(401, "Unknown tenant")
        if request.headers.get("ocp-apim-subscription-key") != self.subscription_key:
            return self._fail(401, "Access denied due to invalid subscription key.")
        return None

    def _authorised(self, request: Request) -> Response | None:
        refused = self._client_ok(request)
        if refused is not None:
            return refused
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or bearer[7:] not in self.tokens:
            return self._fail(401, "Invalid or expired access token")
        return None

    def _token(self, request: Request) -> Response:
        refused = self._client_ok(request)
        if refused is not None:
            return refused
        if (
            self.mode == "invalid_key"
            or request.query.get("api-key-Id") != self.api_key_id
            or request.headers.get("api-key-secret") != self.api_key_secret
        ):
            return self._fail(401, "Invalid API key")
        token = issued(secrets.token_urlsafe(32))
        with self.lock:
            self.tokens.add(token)
        return Response(200, {"accessToken": token, "expireIn": "3600", "tenantId": self.tenant_id})

    def _sas(self, request: Request, permission: str) -> Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        expiry = None
        if self.mode == "expired_sas":
            expiry = datetime.now(UTC) - timedelta(minutes=10)
        if self.mode == "read_only_sas":
            permission = "rl"
        return Response(
            200,
            {
                "blobServiceUri": f"{self.azurite_url}/",
                "containerName": self.container_name,
                "sasToken": "?" + self._sign(permission, expiry),
                "blobName": "",
            },
        )

    def _datasources(self, request: Request) -> Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        wanted = request.match["id"]
        if wanted == self.tenant_id:
            data = self.datasources
        else:
            data = [d for d in self.datasources if d["providerId"] == wanted]
            if not data:
                return self._fail(404, "Provider not found")
        return Response(200, {"continuationRequest": None, "data": data})

    def _list_schedulers(self, request: Request) -> Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        if request.match["providerId"] != self.provider_id:
            return self._fail(404, "Provider not found")
        with self.lock:
            return Response(200, copy.deepcopy(self.schedulers))

    def _put_scheduler(self, request: Request) -> Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        body = request.json()
        if not isinstance(body, dict) or "id" not in body:
            return self._fail(400, "A scheduler object with an id is required")
        with self.lock:
            for index, current in enumerate(self.schedulers):
                if current["id"] == body["id"]:
                    self.schedulers[index] = body
                    return Response(200, body)
        return self._fail(404, "Scheduler not found")


def _scheduler(name: str, cron: str, last: datetime) -> dict[str, Any]:
    return {
        "id": secrets.token_hex(8),
        "enable": True,
        "cron": cron,
        "nextExecution": (last + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "lastExecution": last.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "query": {"name": name, "content": f"select {name}"},
    }


def _key_credential() -> dict[str, str]:
    return {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Cegid Data Access fake.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--azurite-url",
        default=os.environ.get("AZURITE_BLOB_URL", f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"),
        help="Azurite blob endpoint with the account, default $AZURITE_BLOB_URL",
    )
    parser.add_argument("--tenant", default="98537347")
    parser.add_argument("--api-key-secret", default="fake-api-key-secret")
    parser.add_argument("--subscription-key", default="fake-subscription-key")
    args = parser.parse_args()
    fake = CegidFake(
        azurite_url=args.azurite_url,
        tenant_id=args.tenant,
        api_key_secret=args.api_key_secret,
        subscription_key=args.subscription_key,
        host=args.host,
        port=args.port,
    )
    print(
        f"ready url={fake.url} tenant={fake.tenant_id} api_key_id={fake.api_key_id} "
        f"provider={fake.provider_id}",
        flush=True,
    )
    fake.serve_forever()


if __name__ == "__main__":
    main()
