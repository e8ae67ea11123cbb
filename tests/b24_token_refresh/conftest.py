"""A Bitrix24 set-up per test: unique secrets and state bucket on the stack, a Bitrix24 fake,
and the environment the function needs to use them.

Importing b24_support puts functions/b24_token_refresh on sys.path before any test module here
is imported, so tests import the function's sibling modules by bare name, as main.py does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devtools import gcp
from devtools.fakes.bitrix24 import Bitrix24Fake, function_env, seed_secrets
from shared.secrets import SecretStore
from tests.b24_token_refresh.b24_support import B24


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
        refresh_token = seed_secrets(fake, store, secrets)
        env = {
            "GOOGLE_CLOUD_PROJECT": os.environ["GOOGLE_CLOUD_PROJECT"],
            **function_env(fake, secrets, bucket),
            "LOCK_WAIT_SECONDS": "60",
        }
        yield B24(fake, store, env, secrets, refresh_token)
