"""SecretStore against the Secret Manager stand-in and LeaseLock against fake-gcs-server."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from devtools import gcp
from shared import clock, redact
from shared.lock import LeaseLock, LockBusy
from shared.secrets import SecretStore, with_retry


@pytest.fixture
def store(stack) -> SecretStore:
    return SecretStore()


@pytest.fixture
def secret_id(store: SecretStore) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    store.create(name, labels={"integration": "test"})
    return name


@pytest.fixture
def bucket(stack) -> storage.Bucket:
    name = f"state-{uuid.uuid4().hex[:10]}"
    gcp.create_bucket(name)
    return storage.Client().bucket(name)


def test_add_read_latest_and_version(store: SecretStore, secret_id: str) -> None:
    assert store.read_optional(secret_id) is None
    assert store.latest_version(secret_id) is None
    assert store.add_version(secret_id, "first-value") == 1
    assert store.add_version(secret_id, "second-value") == 2
    latest = store.read(secret_id)
    assert (latest.value, latest.version) == ("second-value", 2)
    assert store.read(secret_id, 1).value == "first-value"
    assert store.latest_version(secret_id) == 2


def test_read_values_are_registered_for_redaction(store: SecretStore, secret_id: str) -> None:
    store.add_version(secret_id, "never-in-a-log-line-31337")
    store.read(secret_id)
    assert "never-in-a-log-line-31337" not in redact.redact("x never-in-a-log-line-31337")


def test_prune_keeps_the_newest(store: SecretStore, secret_id: str) -> None:
    for n in range(5):
        store.add_version(secret_id, f"value-{n}")
    assert sorted(store.prune(secret_id, keep=2)) == [1, 2, 3]
    assert store.read(secret_id).value == "value-4"
    assert store.read(secret_id, 4).value == "value-3"
    with pytest.raises(gexc.FailedPrecondition):
        store.read(secret_id, 3)
    assert store.prune(secret_id, keep=2) == []


def test_annotations_merge_and_remove(store: SecretStore, secret_id: str) -> None:
    store.update_annotations(secret_id, {"state": "ok", "expires-at": "2026-11-22T12:00:00Z"})
    info = store.update_annotations(secret_id, {"state": "needs-reauth", "expires-at": None})
    assert info.annotations == {"state": "needs-reauth"}
    assert store.info(secret_id).labels == {"integration": "test"}


def test_stale_etag_is_refused(store: SecretStore, secret_id: str) -> None:
    stale = store.info(secret_id).etag
    store.update_annotations(secret_id, {"a": "1"})
    with pytest.raises((gexc.Aborted, gexc.FailedPrecondition)):
        store.update_annotations(secret_id, {"b": "2"}, etag=stale)
    assert store.info(secret_id).annotations == {"a": "1"}


def test_list_by_label(store: SecretStore, secret_id: str) -> None:
    other = f"test-{uuid.uuid4().hex[:10]}"
    store.create(other, labels={"integration": "other"})
    found = {s.secret_id for s in store.list_secrets("labels.integration=test")}
    assert secret_id in found and other not in found


def test_with_retry_outlasts_an_outage(stack, store: SecretStore, secret_id: str) -> None:
    import json
    import os
    import urllib.request

    admin = os.environ["SECRET_MANAGER_EMULATOR_ADMIN"]
    fault = {"method": "AddSecretVersion", "code": "UNAVAILABLE", "count": 3, "secret": secret_id}
    request = urllib.request.Request(
        f"{admin}/faults",
        data=json.dumps(fault).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()
    import time

    version = with_retry(
        lambda: store.add_version(secret_id, "must-not-be-lost"),
        deadline=time.monotonic() + 30,
        what="test",
        base_delay=0.01,
        sleep=lambda s: None,
    )
    assert store.read(secret_id).value == "must-not-be-lost"
    assert version == store.latest_version(secret_id)


def test_with_retry_gives_up_at_the_deadline(stack, store: SecretStore) -> None:
    import time

    calls = []

    def always_unavailable() -> None:
        calls.append(1)
        raise gexc.ServiceUnavailable("down")

    with pytest.raises(gexc.ServiceUnavailable):
        with_retry(always_unavailable, deadline=time.monotonic() + 0.05, what="t", base_delay=0.02)
    assert 1 <= len(calls) < 10


# --- lock ---------------------------------------------------------------------------------


def test_only_one_holder_at_a_time(bucket: storage.Bucket) -> None:
    first = LeaseLock(bucket, "cred", lease=timedelta(minutes=5))
    second = LeaseLock(bucket, "cred", lease=timedelta(minutes=5))
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_expired_lease_is_taken_over(bucket: storage.Bucket, monkeypatch) -> None:
    crashed = LeaseLock(bucket, "cred", lease=timedelta(minutes=5))
    assert crashed.try_acquire()  # and never releases, as if the process died
    successor = LeaseLock(bucket, "cred", lease=timedelta(minutes=5))
    assert not successor.try_acquire()
    later = clock.now() + timedelta(minutes=6)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert successor.try_acquire()


def test_held_raises_when_busy(bucket: storage.Bucket) -> None:
    holder = LeaseLock(bucket, "cred", lease=timedelta(minutes=5))
    assert holder.try_acquire()
    waiter = LeaseLock(bucket, "cred", lease=timedelta(minutes=5), sleep=lambda s: None)
    with pytest.raises(LockBusy), waiter.held(wait=0.2):
        pass


def test_concurrent_contenders_serialise(bucket: storage.Bucket) -> None:
    inside = 0
    most = 0
    entered = 0
    guard = threading.Lock()

    def contend() -> None:
        nonlocal inside, most, entered
        lock = LeaseLock(bucket, "busy", lease=timedelta(minutes=5))
        with lock.held(wait=30):
            with guard:
                inside += 1
                entered += 1
                most = max(most, inside)
            threading.Event().wait(0.02)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert entered == 8
    assert most == 1
