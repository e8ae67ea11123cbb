"""The Cegid Data Access (CDA) API: access token, container SAS, provider discovery, schedulers.

No official documentation of this API is public. Every path below comes from third-party
scripts that used it, so the base URL and each path are settings (``CEGID_*_PATH``), and the
provider discovery in particular is a best guess [U]: verify against a real tenant.

- Token: ``GET {base}{token_path}?api-key-Id=<key id>`` with headers ``api-key-secret``,
  ``x-tenantId`` and ``Ocp-Apim-Subscription-Key``; answers ``{"accessToken", "expireIn"}``.
- SAS: ``GET {base}{sas_path}`` with ``Authorization: Bearer``, ``x-tenantId`` and the
  subscription key; answers ``{blobServiceUri, containerName, sasToken}``. The LRD path gives
  read/list/delete, the LR path read/list only.
- Schedulers: ``GET {base}/query/api/V1/schedulers/tenant/provider/{providerId}`` lists them;
  ``PUT {base}/query/api/V1/schedulers`` takes the whole scheduler object back. Error bodies
  carry ``errorMessage``.

Used by the function (token + SAS, force messages) and by ``python -m cli cegid``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from cegid_plan import BadForceRequest as BadForceRequest  # re-exported: cli/cegid.py
from cegid_plan import force_time as force_time  # re-exported: cli/cegid.py
from cegid_plan import forced, matching, scheduler_name

from shared.errors import ProviderError, TerminalError, TransientError
from shared.http import HttpClient, status_error
from shared.redact import redact, register
from shared.secrets import read_required
from shared.settings import env_str

# Where Cegid's answers are classed apart from shared.http.status_kind, as they were before the
# shared rule (tests/cegid_transfer/test_cegid_api.py pins both):
# 409 stays transient: a conflict on the scheduler update (a PUT of the whole object) is a
# change made meanwhile, which the next run reads afresh.
CEGID_TRANSIENT_STATUSES = frozenset({409})
# 501 stays terminal: every path of this undocumented API is a best guess (see above), and
# "not implemented" says the path or method is wrong, which a person fixes in CEGID_*_PATH.
CEGID_TERMINAL_STATUSES = frozenset({501})


@dataclass(frozen=True)
class ApiSettings:
    base_url: str
    tenant_id: str
    token_path: str
    sas_path: str
    discovery_path: str
    schedulers_path: str
    scheduler_update_path: str
    provider_id: str
    key_id_secret: str
    key_secret_secret: str
    subscription_key_secret: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """From os.environ, or from ``env`` (``python -m cli cegid`` passes the settings it
        resolved from its flags, the environment and the deployed function)."""
        return cls(
            # The 2021 scripts used this host; the current APIM host is unconfirmed [U].
            base_url=env_str("CEGID_API_URL", "https://cda.cegid.cloud", env=env).rstrip("/"),
            tenant_id=env_str("CEGID_TENANT_ID", "", env=env),
            token_path=env_str("CEGID_TOKEN_PATH", "/tokenprovider/Token", env=env),
            sas_path=env_str("CEGID_SAS_PATH", "/storage/api/V1/storages/GetSASTokenLRD", env=env),
            # [U] no documented way to list providers: the datasources endpoint is asked with
            # the tenant id in place of a provider id, and every providerId it returns is kept.
            discovery_path=env_str(
                "CEGID_DISCOVERY_PATH", "/datasource/api/V2/datasources/tenant/{tenantId}", env=env
            ),
            schedulers_path=env_str(
                "CEGID_SCHEDULERS_PATH",
                "/query/api/V1/schedulers/tenant/provider/{providerId}",
                env=env,
            ),
            scheduler_update_path=env_str(
                "CEGID_SCHEDULER_UPDATE_PATH", "/query/api/V1/schedulers", env=env
            ),
            provider_id=env_str("CEGID_PROVIDER_ID", "", env=env),
            key_id_secret=env_str("CEGID_API_KEY_ID_SECRET", "cegid-api-key-id", env=env),
            key_secret_secret=env_str(
                "CEGID_API_KEY_SECRET_SECRET", "cegid-api-key-secret", env=env
            ),
            subscription_key_secret=env_str(
                "CEGID_SUBSCRIPTION_KEY_SECRET", "cegid-subscription-key", env=env
            ),
        )


@dataclass(frozen=True)
class Credentials:
    api_key_id: str
    api_key_secret: str
    subscription_key: str


def read_credentials(store: Any, settings: ApiSettings) -> Credentials:
    """The three API secrets (``store`` is a shared.secrets.SecretStore; reads are redacted).
    A missing one is TERMINAL ``secret_missing`` (shared.secrets.read_required)."""
    return Credentials(
        api_key_id=read_required(store, settings.key_id_secret),
        api_key_secret=read_required(store, settings.key_secret_secret),
        subscription_key=read_required(store, settings.subscription_key_secret),
    )


def _error(response: requests.Response, where: str) -> ProviderError:
    """A failed API answer, classed by shared.http.status_kind with Cegid's two exceptions
    (CEGID_TRANSIENT_STATUSES, CEGID_TERMINAL_STATUSES): 401/403/404 need a person (wrong key,
    tenant or path); 429 and 5xx are worth retrying. ``errorMessage`` is quoted after
    redaction; the code is ``http_<status>``."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = ""
    if isinstance(body, dict):
        detail = str(body.get("errorMessage") or body.get("message") or "")[:200]
    message = f"{where}: HTTP {response.status_code}"
    if detail:
        message += f" ({redact(detail)})"
    return status_error(
        message,
        status=response.status_code,
        transient=CEGID_TRANSIENT_STATUSES,
        terminal=CEGID_TERMINAL_STATUSES,
    )


def _json(response: requests.Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise TransientError(f"{where}: answer is not JSON", code="malformed_response") from None


class CegidApi:
    def __init__(self, settings: ApiSettings, credentials: Credentials, http: HttpClient) -> None:
        if not settings.tenant_id:
            raise TerminalError(
                "CEGID_TENANT_ID (the Cegid customer account number) is not set",
                code="missing_tenant",
            )
        self.settings = settings
        self.credentials = credentials
        self.http = http
        self._token: str | None = None

    def _url(self, path: str, **values: str) -> str:
        for key, value in values.items():
            path = path.replace("{" + key + "}", quote(value, safe=""))
        return self.settings.base_url + path

    def _headers(self, *, bearer: bool = True) -> dict[str, str]:
        headers = {
            "x-tenantId": self.settings.tenant_id,
            "Ocp-Apim-Subscription-Key": self.credentials.subscription_key,
            "Accept": "application/json",
        }
        if bearer:
            headers["Authorization"] = f"Bearer {self.access_token()}"
        return headers

    def access_token(self) -> str:
        """One token per instance of this class; it lives an hour, a run lasts minutes."""
        if self._token is None:
            where = "Cegid token provider"
            headers = self._headers(bearer=False)
            headers["api-key-secret"] = self.credentials.api_key_secret
            response = self.http.request(
                "GET",
                self._url(self.settings.token_path),
                params={"api-key-Id": self.credentials.api_key_id},
                headers=headers,
            )
            if response.status_code != 200:
                raise _error(response, where)
            body = _json(response, where)
            token = body.get("accessToken") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise TerminalError(f"{where}: answer has no accessToken", code="malformed")
            register(token)
            self._token = token
        return self._token

    def container_sas_url(self) -> str:
        """The container URL with its SAS: ``blobServiceUri`` + ``containerName`` + ``sasToken``.
        Registered for redaction before it is returned; never log it."""
        where = "Cegid SAS endpoint"
        response = self.http.request(
            "GET", self._url(self.settings.sas_path), headers=self._headers()
        )
        if response.status_code != 200:
            raise _error(response, where)
        body = _json(response, where)
        if not isinstance(body, dict):
            raise TerminalError(f"{where}: answer is not an object", code="malformed")
        service = body.get("blobServiceUri")
        container = body.get("containerName")
        sas = body.get("sasToken")
        if not all(isinstance(v, str) and v for v in (service, container, sas)):
            raise TerminalError(
                f"{where}: answer lacks blobServiceUri, containerName or sasToken",
                code="malformed",
            )
        assert isinstance(service, str) and isinstance(container, str) and isinstance(sas, str)
        register(sas, sas.lstrip("?"))
        url = service.rstrip("/") + "/" + container.strip("/") + "?" + sas.lstrip("?")
        register(url)
        return url

    # -- scheduled queries -------------------------------------------------------------------

    def discover_providers(self) -> list[dict[str, str]]:
        """Distinct ``providerId`` values seen in the tenant's data sources, with a label."""
        where = "Cegid data sources"
        url = self._url(self.settings.discovery_path, tenantId=self.settings.tenant_id)
        response = self.http.request("GET", url, headers=self._headers())
        if response.status_code != 200:
            raise _error(response, where)
        body = _json(response, where)
        items = body.get("data") if isinstance(body, dict) else body
        found: dict[str, dict[str, str]] = {}
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("providerId"), str):
                pid = item["providerId"]
                label = str(item.get("providerName") or item.get("displayPath") or "")
                entry = found.setdefault(pid, {"providerId": pid, "label": label, "sources": "0"})
                entry["sources"] = str(int(entry["sources"]) + 1)
        return list(found.values())

    def _provider(self) -> str:
        if not self.settings.provider_id:
            raise TerminalError(
                "CEGID_PROVIDER_ID is not set; run `python -m cli cegid discover` to find it",
                code="missing_provider",
            )
        return self.settings.provider_id

    def schedulers(self) -> list[dict[str, Any]]:
        where = "Cegid schedulers"
        url = self._url(self.settings.schedulers_path, providerId=self._provider())
        response = self.http.request("GET", url, headers=self._headers())
        if response.status_code != 200:
            raise _error(response, where)
        body = _json(response, where)
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            body = body["data"]
        if not isinstance(body, list):
            raise TerminalError(f"{where}: answer is not a list", code="malformed")
        return [s for s in body if isinstance(s, dict)]

    def update_scheduler(self, scheduler: dict[str, Any]) -> None:
        where = "Cegid scheduler update"
        response = self.http.request(
            "PUT",
            self._url(self.settings.scheduler_update_path),
            json=scheduler,
            headers=self._headers(),
        )
        if response.status_code not in (200, 201, 204):
            raise _error(response, where)


# -- forcing a scheduled query -------------------------------------------------------------


def force(
    api: CegidApi, name_part: str | None, when: datetime
) -> tuple[list[str], list[tuple[str, ProviderError]]]:
    """Move ``nextExecution`` of every matching scheduler to ``when``; returns the names done
    and the (name, error) pairs that failed. One failure does not stop the others."""
    done: list[str] = []
    failed: list[tuple[str, ProviderError]] = []
    for scheduler in matching(api.schedulers(), name_part):
        name = scheduler_name(scheduler)
        try:
            api.update_scheduler(forced(scheduler, when))
        except ProviderError as error:
            failed.append((name, error))
        else:
            done.append(name)
    return done, failed
