"""Fixtures for the hardening tests: per-test worlds on the shared stack and function servers
that each log to their own file (two servers of one function must not share a log)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devtools import gcp
from devtools import stack as devstack
from devtools.fakes.bitrix24 import function_env, seed_secrets
from devtools.stack import FunctionServer
from shared.secrets import SecretStore
from tests.hardening.hardening_b24 import B24World, HoldingBitrix24Fake


@pytest.fixture
def b24_world(stack: Any) -> Iterator[B24World]:
    suffix = uuid.uuid4().hex[:8]
    secrets = {
        "client_id": f"hb24-client-id-{suffix}",
        "client_secret": f"hb24-client-secret-{suffix}",
        "refresh_token": f"hb24-refresh-token-{suffix}",
        "access_token": f"hb24-access-token-{suffix}",
    }
    bucket = f"hstate-{suffix}"
    gcp.create_bucket(bucket)
    store = SecretStore()
    fake = HoldingBitrix24Fake()
    with fake:
        refresh_token = seed_secrets(fake, store, secrets)
        env = {
            "GOOGLE_CLOUD_PROJECT": os.environ["GOOGLE_CLOUD_PROJECT"],
            **function_env(fake, secrets, bucket),
            "LOCK_WAIT_SECONDS": "60",
        }
        yield B24World(fake, store, env, secrets, bucket, refresh_token)
        fake.release.set()  # never leave a held request thread behind


ServeFunction = Callable[..., FunctionServer]


@pytest.fixture
def serve_function(tmp_path: Path) -> Iterator[ServeFunction]:
    """Factory like ``function_server``, but every server gets its own log directory."""
    servers: list[FunctionServer] = []

    def start(
        name: str,
        target: str,
        *,
        signature_type: str = "http",
        env: Mapping[str, str] | None = None,
    ) -> FunctionServer:
        server = devstack.start_function(
            name,
            target,
            signature_type=signature_type,
            env=env,
            log_dir=tmp_path / f"function-{len(servers)}",
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        print(f"--- {server.name} ({server.url}) log ---\n{server.log_text()}")


@pytest.fixture
def hubspot_world(stack: Any) -> Iterator[Any]:
    """The hubspot_refresh tests' own set-up (its project, bucket and fake), reused here."""
    from tests.hubspot_refresh.hubspot_testkit import make_setup

    setup, fake = make_setup(stack)
    try:
        yield setup
    finally:
        fake.stop()


@pytest.fixture
def universign_kit(stack: Any) -> Iterator[Any]:
    """The universign_webhook tests' own set-up (buckets, topic, API key, fake), reused."""
    from devtools.fakes.universign import UniversignFake
    from tests.universign_webhook.universign_testkit import make_kit

    fake = UniversignFake()
    fake.start()
    try:
        yield make_kit(stack, fake)
    finally:
        fake.stop()
