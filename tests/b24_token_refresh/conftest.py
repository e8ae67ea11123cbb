"""A Bitrix24 set-up per test: unique secrets and state bucket on the stack, a Bitrix24 fake,
and the environment the function needs to use them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from b24_support import B24

from devtools import gcp
from devtools.fakes.bitrix24 import Bitrix24Fake
from shared.secrets import SecretStore


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
