"""The consumer helper other services use to read an access token."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from datetime import timedelta

import pytest

from shared import clock
from shared.secrets import SecretStore
from shared.tokens import AccessTokenReader


def access_calls() -> int:
    with urllib.request.urlopen(f"{os.environ['SECRET_MANAGER_EMULATOR_ADMIN']}/stats") as r:
        return int(json.load(r)["calls"].get("AccessSecretVersion", 0))


@pytest.fixture
def secret(stack) -> tuple[SecretStore, str]:
    store = SecretStore()
    secret_id = f"access-{uuid.uuid4().hex[:8]}"
    store.create(secret_id)
    return store, secret_id


def test_cached_until_shortly_before_expiry(secret, monkeypatch) -> None:
    store, secret_id = secret
    now = clock.now()
    store.add_version(secret_id, "token-one-000001")
    store.update_annotations(
        secret_id, {"expires-at": clock.format_time(now + timedelta(minutes=30))}
    )
    reader = AccessTokenReader(secret_id, store=store, skew=timedelta(minutes=2))
    monkeypatch.setattr(clock, "now", lambda: now)

    assert reader.get() == "token-one-000001"
    before = access_calls()
    store.add_version(secret_id, "token-two-000002")
    store.update_annotations(
        secret_id, {"expires-at": clock.format_time(now + timedelta(minutes=90))}
    )
    monkeypatch.setattr(clock, "now", lambda: now + timedelta(minutes=27))
    assert reader.get() == "token-one-000001"  # still inside its validity: no read
    assert access_calls() == before

    monkeypatch.setattr(clock, "now", lambda: now + timedelta(minutes=28, seconds=1))
    assert reader.get() == "token-two-000002"
    assert access_calls() == before + 1


def test_unknown_expiry_is_cached_briefly_and_invalidate_rereads(secret, monkeypatch) -> None:
    store, secret_id = secret
    now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: now)
    store.add_version(secret_id, "token-one-000001")
    reader = AccessTokenReader(secret_id, store=store)
    assert reader.get() == "token-one-000001"
    store.add_version(secret_id, "token-two-000002")
    assert reader.get() == "token-one-000001"
    reader.invalidate()
    assert reader.get() == "token-two-000002"
    store.add_version(secret_id, "token-three-0003")
    monkeypatch.setattr(clock, "now", lambda: now + timedelta(minutes=2))
    assert reader.get() == "token-three-0003"
