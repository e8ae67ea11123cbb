"""A Bitrix24 set-up per test: unique secrets and state bucket on the stack, a Bitrix24 fake,
and the environment the function needs to use them."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from devtools import gcp
from devtools.fakes.bitrix24 import Bitrix24Fake
from shared.secrets import SecretStore
from shared.status import CredentialStatus

SOURCE = "functions/b24_token_refresh/main.py"


@dataclass
class B24:
    fake: Bitrix24Fake
    store: SecretStore
    env: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    initial_refresh_token: str = ""

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


@pytest.fixture
def b24(stack: Any) -> Iterator[B24]:
    suffix = uuid.uuid4().hex[:8]
    secrets = {
        "client_id": f"b24-client-id-{suffix}",
        "client_secret": f"b24-client-secret-{suffix}",
        "refresh_token": f"b24-refresh-token-{suffix}",
        "access_token": f"b24-access-token-{suffix}",
    }
    bucket = f"state-{suffix}"
    gcp.create_bucket(bucket)
    store = SecretStore()
    with Bitrix24Fake() as fake:
        assert isinstance(fake, Bitrix24Fake)
        for secret in secrets.values():
            store.create(secret, labels={"integration": "bitrix24"})
        store.add_version(secrets["client_id"], fake.client_id)
        store.add_version(secrets["client_secret"], fake.client_secret)
        refresh_token = fake.new_refresh_token()
        store.add_version(secrets["refresh_token"], refresh_token)
        env = {
            "GOOGLE_CLOUD_PROJECT": os.environ["GOOGLE_CLOUD_PROJECT"],
            "STATE_BUCKET": bucket,
            "B24_OAUTH_URL": f"{fake.url}/oauth/token/",
            "B24_CLIENT_ID_SECRET": secrets["client_id"],
            "B24_CLIENT_SECRET_SECRET": secrets["client_secret"],
            "B24_REFRESH_TOKEN_SECRET": secrets["refresh_token"],
            "B24_ACCESS_TOKEN_SECRET": secrets["access_token"],
            "LOCK_WAIT_SECONDS": "60",
        }
        yield B24(fake, store, env, secrets, refresh_token)


def pubsub_cloud_event(data: dict[str, Any] | str | None, *, time: datetime | None = None) -> CloudEvent:
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
