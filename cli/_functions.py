"""What commands need of the functions: their helper modules, and their deployed settings.

A function folder is deployed on its own (main.py, its helper modules and shared/), so its
helpers are top-level modules there. Their names start with the integration's name
(``cegid_api``, ``hubspot_accounts``) so several folders can share one ``sys.path`` here.

The deployed settings of a function are the environment Terraform gave it, read through the
Cloud Functions API (v2, ``serviceConfig.environmentVariables``). Google APIs without a local
emulator (Cloud Functions, Cloud Scheduler) are read over REST at a base URL that is
configuration (``CLOUD_FUNCTIONS_API_URL``, ``CLOUD_SCHEDULER_API_URL``): Google's by default;
none on the local stack (``PUBSUB_EMULATOR_HOST`` set), where nothing is deployed and the jobs
are ``python -m devtools.scheduler``'s.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from shared.redact import redact

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
DEFAULT_REGION = "europe-west1"  # terraform/variables.tf
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def use_function_folder(name: str) -> None:
    folder = str(FUNCTIONS / name)
    if folder not in sys.path:
        sys.path.append(folder)


def region(flag: str | None) -> str:
    """``--region``, else REGION (as deploy.sh reads it), else Terraform's default."""
    return flag or os.environ.get("REGION") or DEFAULT_REGION


# --------------------------------------------------------------------------- Google APIs


class GoogleApiError(RuntimeError):
    """A Google API could not be read; the message says why (never a credential)."""


def api_url(variable: str, default: str) -> str | None:
    """The base URL of a Google API: ``variable`` when set; None on the local stack (the
    Pub/Sub emulator in use), where the real service knows nothing of it; else ``default``."""
    configured = os.environ.get(variable, "").strip()
    if configured:
        return configured.rstrip("/")
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        return None
    return default


def _session(base_url: str) -> requests.Session:
    # A bearer token never travels in clear text: a plain-http base URL (a local fake) gets
    # an unauthenticated session.
    if base_url.startswith("http://"):
        return requests.Session()
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.auth.transport.requests import AuthorizedSession

    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except DefaultCredentialsError:
        raise GoogleApiError(
            "no Google credentials (gcloud auth application-default login)"
        ) from None
    return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]


def get_json(base_url: str, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET ``base_url + path`` as JSON; a failure is a GoogleApiError with Google's message."""
    try:
        response = _session(base_url).get(f"{base_url}{path}", params=params, timeout=30)
    except requests.RequestException as error:
        raise GoogleApiError(redact(f"{type(error).__name__}: {error}")[:200]) from None
    if response.status_code != 200:
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.reason or ""
        raise GoogleApiError(redact(f"HTTP {response.status_code}: {message}")[:200])
    try:
        body = response.json()
    except ValueError:
        raise GoogleApiError("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise GoogleApiError("the answer is not a JSON object")
    return body


def deployed_environment(project: str, location: str, function: str) -> dict[str, str]:
    """The environment variables of a deployed function (Cloud Functions v2); a GoogleApiError
    when it cannot be read, naming the function."""
    base = api_url("CLOUD_FUNCTIONS_API_URL", "https://cloudfunctions.googleapis.com")
    if base is None:
        raise GoogleApiError("nothing is deployed on the local stack")
    path = (
        f"/v2/projects/{quote(project, safe='')}/locations/{quote(location, safe='')}"
        f"/functions/{quote(function, safe='')}"
    )
    try:
        body = get_json(base, path)
    except GoogleApiError as error:
        raise GoogleApiError(f"function {function} in {location}: {error}") from None
    variables = (body.get("serviceConfig") or {}).get("environmentVariables") or {}
    if not isinstance(variables, dict):
        return {}
    return {str(key): str(value) for key, value in variables.items()}


class Settings:
    """A command's settings: its flag, else the environment, else the deployed function's
    environment (read once, only when something is not given), else the code's default.
    Remembers where each value came from (``--verbose``)."""

    def __init__(
        self, project: str, location: str, function: str, flags: Mapping[str, str | None]
    ) -> None:
        self.project = project
        self.location = location
        self.function = function
        self.flags = flags  # setting name -> the flag's value (None: not given)
        self._deployed: dict[str, str] | None = None
        self.deployed_error: str | None = None
        self.sources: dict[str, str] = {}

    def deployed(self) -> dict[str, str]:
        if self._deployed is None:
            try:
                self._deployed = deployed_environment(self.project, self.location, self.function)
            except GoogleApiError as error:
                self._deployed = {}
                self.deployed_error = str(error)
        return self._deployed

    def get(self, name: str, default: str | None = None) -> str | None:
        flag = self.flags.get(name)
        if flag:
            self.sources[name] = "flag"
            return flag
        environment = os.environ.get(name, "").strip()
        if environment:
            self.sources[name] = "environment"
            return environment
        deployed = self.deployed().get(name, "").strip()
        if deployed:
            self.sources[name] = f"deployed function {self.function}"
            return deployed
        if self.deployed_error:
            self.sources[name] = f"default (deployed function not read: {self.deployed_error})"
        else:
            self.sources[name] = "default"
        return default

    def mapping(self, names: list[str]) -> dict[str, str]:
        """The resolved value of each of ``names`` that has one (for settings.env_str)."""
        found = {name: self.get(name) for name in names}
        return {name: value for name, value in found.items() if value}
