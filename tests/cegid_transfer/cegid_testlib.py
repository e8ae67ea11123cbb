"""Helpers and fixtures for the Cegid transfer tests (conftest.py re-exports the fixture): a
Cegid fake in front of Azurite, a fresh bucket, secrets, the function module loaded with that
environment, Pub/Sub events, and a bare import of a sibling module."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import function_loading
import pytest

from devtools import gcp
from devtools.fakes.cegid import CegidFake
from shared.secrets import SecretStore

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "functions" / "cegid_transfer"
# The function's helper modules (cegid_copy, cegid_api) import as top-level modules, as deployed.
if str(FOLDER) not in sys.path:
    sys.path.append(str(FOLDER))


@dataclass
class World:
    fake: CegidFake
    bucket: Any  # google.cloud.storage.Bucket
    state_bucket: Any
    env: dict[str, str]
    store: SecretStore
    suffix: str

    def put(self, name: str, data: bytes, *, content_md5: bool = False) -> None:
        from azure.storage.blob import ContentSettings

        settings = (
            ContentSettings(
                content_md5=bytearray(hashlib.md5(data, usedforsecurity=False).digest())
            )
            if content_md5
            else None
        )
        self.fake.container().upload_blob(name, data, overwrite=True, content_settings=settings)

    def put_in_blocks(self, name: str, data: bytes, *, content_md5: bytes | None = None) -> None:
        """``data`` uploaded as staged blocks and one Put Block List, the way large files and
        most tools upload: Azure computes no Content-MD5 then. ``content_md5`` is then set
        with Set Blob Properties, which Azure stores as given, unvalidated."""
        from azure.storage.blob import BlobBlock, ContentSettings

        client = self.fake.container().get_blob_client(name)
        half = len(data) // 2
        ids = []
        for index, part in enumerate((data[:half], data[half:])):
            block_id = f"block-{index:04d}"
            client.stage_block(block_id, part)
            ids.append(BlobBlock(block_id))
        client.commit_block_list(ids)
        if content_md5 is not None:
            client.set_http_headers(ContentSettings(content_md5=bytearray(content_md5)))

    def source_names(self) -> list[str]:
        return sorted(b.name for b in self.fake.container().list_blobs())

    def landed(self) -> dict[str, bytes]:
        return {b.name: b.download_as_bytes() for b in self.bucket.list_blobs(prefix="cegid/")}

    def all_objects(self) -> list[str]:
        return sorted(b.name for b in self.bucket.list_blobs())


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


@pytest.fixture
def world(stack: Any, azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:10]
    tenant = str(10_000_000 + int(suffix[:6], 16))  # a numeric account number, own container
    fake = CegidFake(azurite_url=os.environ["AZURITE_BLOB_URL"], tenant_id=tenant)
    fake.start()
    bucket = gcp.create_bucket(f"cegid-export-{suffix}")
    state = gcp.create_bucket(f"cegid-state-{suffix}")
    store = SecretStore(os.environ["GOOGLE_CLOUD_PROJECT"])
    names = {
        "CEGID_API_KEY_ID_SECRET": (f"cegid-{suffix}-api-key-id", fake.api_key_id),
        "CEGID_API_KEY_SECRET_SECRET": (f"cegid-api-key-secret-{suffix}", fake.api_key_secret),
        "CEGID_SUBSCRIPTION_KEY_SECRET": (
            f"cegid-subscription-key-{suffix}",
            fake.subscription_key,
        ),
    }
    for secret_id, value in names.values():
        store.create(secret_id)
        store.add_version(secret_id, value)
    env = {
        "STATE_BUCKET": state.name,
        "CEGID_BUCKET": bucket.name,
        "CEGID_MODE": "api",
        "CEGID_API_URL": fake.url,
        "CEGID_TENANT_ID": tenant,
        "CEGID_PROVIDER_ID": fake.provider_id,
        "CEGID_SAS_URL_SECRET": f"cegid-sas-url-{suffix}",
        "CEGID_DOWNLOAD_CHUNK_MIB": "1",
        "CEGID_UPLOAD_CHUNK_MIB": "1",
        **{key: secret_id for key, (secret_id, _) in names.items()},
    }
    fake.container()
    try:
        yield World(fake, bucket, state, env, store, suffix)
    finally:
        fake.stop()


def load_function(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], target: str = "cegid_transfer"
) -> ModuleType:
    """main.py executed afresh under functions_framework serving ``target`` (cegid_transfer or
    cegid_queries, both CloudEvent), with ``env`` set: its settings are read when it executes
    (see tests/function_loading.py ``boot``)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module: ModuleType = function_loading.boot(FOLDER / "main.py", target)
    return module


def run_once(module: ModuleType, deadline_seconds: float = 300) -> Any:
    import time

    return module.run(
        module.SETTINGS, module.clients(), deadline=time.monotonic() + deadline_seconds
    )


def cloud_event(data: object, message_id: str = "1") -> Any:
    """A Pub/Sub push event carrying ``data`` as JSON (no publish time: never too old)."""
    from cloudevents.http import CloudEvent

    payload = base64.b64encode(json.dumps(data).encode()).decode()
    return CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub/test"},
        {"message": {"data": payload, "messageId": message_id}},
    )


def bare_import(module: str, *, absent: tuple[str, ...] = ()) -> str:
    """See tests/function_loading.py: ``module`` of this function folder, imported bare."""
    problems: str = function_loading.bare_import(FOLDER, module, absent=absent)
    return problems
