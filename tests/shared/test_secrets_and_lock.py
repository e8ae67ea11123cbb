"""SecretStore against the Secret Manager stand-in and LeaseLock against fake-gcs-server."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from devtools import gcp
from shared import clock, redact
from shared.errors import TransientError
from shared.lock import LeaseLock, LeaseLost, LockBusy
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


# --- fencing --------------------------------------------------------------------------------


class Monotonic:
    """The lock's monotonic clock, moved by the test: a holder that stalls is one whose clock
    runs on while it does nothing."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


def test_fence_passes_while_more_than_the_margin_is_left(bucket: storage.Bucket) -> None:
    ticks = Monotonic()
    lock = LeaseLock(bucket, "cred", lease=timedelta(minutes=5), monotonic=ticks)
    assert lock.try_acquire()
    assert lock.remaining() == 300
    lock.fence("calling the provider")
    ticks.advance(239)
    assert lock.remaining() == 61
    lock.fence("calling the provider")


@pytest.mark.parametrize("elapsed", [240, 241, 300, 900])
def test_fence_raises_from_lease_minus_margin_on(bucket: storage.Bucket, elapsed: int) -> None:
    ticks = Monotonic()
    lock = LeaseLock(bucket, "cred", lease=timedelta(minutes=5), monotonic=ticks)
    assert lock.try_acquire()
    ticks.advance(elapsed)
    with pytest.raises(LeaseLost) as lost:
        lock.fence("calling the provider")
    assert lost.value.code == "lease_lost" and not lost.value.terminal  # Pub/Sub delivers again
    assert isinstance(lost.value, TransientError)
    assert "calling the provider" in str(lost.value)


def test_fence_raises_after_release_and_before_acquiring(bucket: storage.Bucket) -> None:
    lock = LeaseLock(bucket, "cred", lease=timedelta(minutes=5), monotonic=Monotonic())
    with pytest.raises(LeaseLost):
        lock.fence("writing before the lock is taken")
    with lock.held(wait=0):
        lock.fence("writing under the lock")
    assert lock.remaining() == 0
    with pytest.raises(LeaseLost):
        lock.fence("writing after the lock was released")


def test_the_margin_is_capped_at_half_a_short_lease(bucket: storage.Bucket) -> None:
    ticks = Monotonic()
    short = LeaseLock(bucket, "short", lease=timedelta(seconds=30), monotonic=ticks)
    assert short.margin == timedelta(seconds=15)  # not the default 60 s: nothing would be left
    assert short.try_acquire()
    ticks.advance(14)
    short.fence("step")
    ticks.advance(1)
    with pytest.raises(LeaseLost):
        short.fence("step")
    explicit = LeaseLock(
        bucket, "explicit", lease=timedelta(minutes=5), margin=timedelta(seconds=10)
    )
    assert explicit.margin == timedelta(seconds=10)


def test_the_lease_counts_from_before_the_lock_write(
    bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow lock write eats into the lease: the stored expiry was computed before it."""
    ticks = Monotonic()
    lock = LeaseLock(bucket, "cred", lease=timedelta(minutes=5), monotonic=ticks)
    upload = storage.Blob.upload_from_string

    def slow_upload(blob: storage.Blob, *args: Any, **kwargs: Any) -> None:
        ticks.advance(100)  # the write took 100 s
        upload(blob, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "upload_from_string", slow_upload)
    assert lock.try_acquire()
    assert lock.remaining() == 200


def test_fence_stops_a_holder_whose_lease_another_run_took_over(
    bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What fencing is for: the first holder stalls past its lease, a second run takes the
    lock over; the stalled one, resuming, must not take its next step."""
    stalled_ticks = Monotonic()
    stalled = LeaseLock(bucket, "cred", lease=timedelta(minutes=5), monotonic=stalled_ticks)
    successor = LeaseLock(bucket, "cred", lease=timedelta(minutes=5), monotonic=Monotonic())
    assert stalled.try_acquire()
    stalled.fence("calling the provider")
    assert not successor.try_acquire()  # while the lease runs, nobody else gets in

    # Paused for six minutes: the lease ran out in wall-clock time and on the monotonic clock.
    later = clock.now() + timedelta(minutes=6)
    monkeypatch.setattr(clock, "now", lambda: later)
    stalled_ticks.advance(360)
    assert successor.try_acquire()
    successor.fence("calling the provider")

    holder = bucket.get_blob("locks/cred.json")
    assert holder is not None
    assert json.loads(holder.download_as_bytes())["owner"] == successor.owner
    with pytest.raises(LeaseLost):
        stalled.fence("calling the provider")
    successor.fence("storing the new token")
