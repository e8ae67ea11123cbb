"""Helpers for the Bitrix24 tests: the per-test set-up object, the one loader of main.py
(``boot``), CloudEvent delivery, and a bare-import check for the pure sibling modules.

Importing this module puts functions/b24_token_refresh on sys.path: tests import the
function's sibling modules by bare name (``import b24_plan``), as main.py does.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import function_loading
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from cli._functions import FUNCTIONS, use_function_folder
from devtools.fakes.bitrix24 import Bitrix24Fake
from shared.secrets import SecretStore
from shared.status import CredentialStatus

use_function_folder("b24_token_refresh")

SOURCE = "functions/b24_token_refresh/main.py"
FUNCTION_DIR = FUNCTIONS / "b24_token_refresh"
REPO = FUNCTIONS.parent


@dataclass
class B24:
    fake: Bitrix24Fake
    store: SecretStore
    env: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    # Kept out of repr: a failing assert that shows the set-up must not show a token.
    initial_refresh_token: str = field(default="", repr=False)

    @property
    def access_secret(self) -> str:
        return self.secrets["access_token"]

    @property
    def refresh_secret(self) -> str:
        return self.secrets["refresh_token"]

    def status(self) -> CredentialStatus:
        return CredentialStatus.from_annotations(self.store.info(self.access_secret).annotations)

    def live_versions(self, secret: str) -> list[int]:
        from google.cloud import secretmanager

        versions = self.store.client.list_secret_versions(
            request={"parent": self.store.path(secret)}
        )
        live = secretmanager.SecretVersion.State.ENABLED
        return sorted(int(v.name.rsplit("/", 1)[-1]) for v in versions if v.state == live)

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)


def pubsub_cloud_event(
    data: dict[str, Any] | str | None, *, time: datetime | None = None
) -> CloudEvent:
    """A CloudEvent as Eventarc delivers a Pub/Sub message to the function."""
    raw = data if isinstance(data, str) else json.dumps(data) if data is not None else ""
    published = (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/local-project/topics/b24-token-refresh-trigger",
            "id": uuid.uuid4().hex,
            "time": published,
        },
        {
            "message": {
                "data": base64.b64encode(raw.encode()).decode(),
                "messageId": uuid.uuid4().hex,
                "publishTime": published,
            }
        },
    )


def post_event(client: Any, event: CloudEvent) -> Any:
    headers, body = to_structured(event)
    return client.post("/", headers=headers, data=body)


def boot() -> ModuleType:
    """main.py executed afresh under functions_framework (see tests/function_loading.py)."""
    module: ModuleType = function_loading.boot(SOURCE, "b24_token_refresh")
    return module


def bare_import(module: str, *, absent: tuple[str, ...] = ()) -> str:
    """See tests/bare_import.py: ``module`` of this function folder, imported bare."""
    problems: str = function_loading.bare_import(FUNCTION_DIR, module, absent=absent)
    return problems
