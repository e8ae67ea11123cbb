"""LeaseLock's edges, against fake-gcs-server with real contenders: the takeover's and the
release's generation preconditions, corrupt lock records, and any sequence of acquire, takeover
and release by several contenders keeping at most one live holder.

fake-gcs-server ignores ``ifGenerationMatch`` on DELETE, so what a release asks of the server is
read at the HTTP layer: the real storage client's requests, recorded as they are sent.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from google.cloud import storage  # type: ignore[attr-defined]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools import gcp
from shared import clock
from shared.lock import LeaseLock, LeaseLost

LEASE = timedelta(minutes=5)


class Recorder(requests.adapters.HTTPAdapter):
    """Sends every request on as usual and keeps its method and URL."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def send(self, request, *args, **kwargs):
        self.sent.append((str(request.method), str(request.url)))
        return super().send(request, *args, **kwargs)

    def preconditions(self, method: str, part: str) -> list[list[str] | None]:
        """The ifGenerationMatch of each ``method`` request whose URL holds ``part``."""
        queries = [parse_qs(urlsplit(u).query) for m, u in self.sent if m == method and part in u]
        return [q.get("ifGenerationMatch") for q in queries]

    def deletes(self) -> list[list[str] | None]:
        """The ifGenerationMatch of each DELETE sent (None: sent without one)."""
        queries = [parse_qs(urlsplit(url).query) for method, url in self.sent if method == "DELETE"]
        return [q.get("ifGenerationMatch") for q in queries]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def bucket(stack, recorder: Recorder) -> storage.Bucket:
    name = f"state-{uuid.uuid4().hex[:10]}"
    gcp.create_bucket(name)
    client = storage.Client()
    client._http.mount("http://", recorder)
    return client.bucket(name)


class Clock:
    def __init__(self) -> None:
        # A whole second: the stored expiry has no fraction, so "ends exactly now" is exact.
        self.at = clock.now().replace(microsecond=0)

    def __call__(self):
        return self.at


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(clock, "now", moved)
    return moved


def stored(bucket: storage.Bucket, name: str = "cred") -> tuple[int, dict[str, Any]]:
    blob = bucket.get_blob(f"locks/{name}.json")
    assert blob is not None
    assert blob.content_type == "application/json"
    return int(blob.generation), json.loads(blob.download_as_bytes())


def test_two_contenders_first_writes_one_wins(bucket: storage.Bucket) -> None:
    first, second = LeaseLock(bucket, "cred", lease=LEASE), LeaseLock(bucket, "cred", lease=LEASE)
    assert first.try_acquire()
    assert not second.try_acquire()
    generation, record = stored(bucket)
    assert record["owner"] == first.owner
    assert first._generation == generation


def test_two_waiters_cannot_both_take_over_one_expired_lease(
    bucket: storage.Bucket, wall: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = LeaseLock(bucket, "cred", lease=LEASE)
    assert crashed.try_acquire()  # and never releases
    wall.at += LEASE + timedelta(seconds=1)
    # Both waiters read the expired record before either writes: the race the takeover's
    # generation precondition exists for (a refresh token spent twice otherwise).
    both_read = threading.Barrier(2, timeout=5)
    read = LeaseLock._holder

    def read_then_wait(self: LeaseLock):
        seen = read(self)
        both_read.wait()
        return seen

    monkeypatch.setattr(LeaseLock, "_holder", read_then_wait)
    waiters = [LeaseLock(bucket, "cred", lease=LEASE) for _ in range(2)]
    won: dict[int, bool] = {}
    threads = [
        threading.Thread(target=lambda i=i: won.__setitem__(i, waiters[i].try_acquire()))
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(won.values()) == [False, True]
    winner = waiters[0] if won[0] else waiters[1]
    assert stored(bucket)[1]["owner"] == winner.owner


def test_a_live_lease_is_not_taken_over_until_it_ends(bucket: storage.Bucket, wall: Clock) -> None:
    holder, waiter = LeaseLock(bucket, "cred", lease=LEASE), LeaseLock(bucket, "cred", lease=LEASE)
    assert holder.try_acquire()
    wall.at += LEASE - timedelta(seconds=1)
    assert not waiter.try_acquire()
    wall.at += timedelta(seconds=1)  # expires_at == now: the lease has ended
    assert waiter.try_acquire()
    assert stored(bucket)[1]["owner"] == waiter.owner


def test_the_stored_record_names_the_owner_and_the_lease_end(
    bucket: storage.Bucket, wall: Clock
) -> None:
    lock = LeaseLock(bucket, "cred", lease=LEASE)
    assert lock.try_acquire()
    _, record = stored(bucket)
    assert record == {"owner": lock.owner, "expires_at": clock.format_time(wall.at + LEASE)}


def test_release_deletes_only_the_generation_it_wrote(
    bucket: storage.Bucket, recorder: Recorder
) -> None:
    lock = LeaseLock(bucket, "cred", lease=LEASE)
    assert lock.try_acquire()
    generation = lock._generation
    lock.release()
    assert recorder.deletes() == [[str(generation)]]
    assert bucket.get_blob("locks/cred.json") is None
    lock.release()  # a second release asks nothing of the server
    assert len(recorder.deletes()) == 1


def test_a_holder_that_lost_its_lease_cannot_delete_its_successors_lock(
    bucket: storage.Bucket, recorder: Recorder, wall: Clock
) -> None:
    stalled = LeaseLock(bucket, "cred", lease=LEASE)
    assert stalled.try_acquire()
    lost = stalled._generation
    wall.at += LEASE + timedelta(minutes=1)
    successor = LeaseLock(bucket, "cred", lease=LEASE)
    assert successor.try_acquire()
    assert successor._generation != lost
    stalled.release()
    # The server is asked to delete the stalled holder's generation only, never the successor's
    # (fake-gcs-server would delete anyway: it ignores the precondition on DELETE).
    assert recorder.deletes() == [[str(lost)]]


@pytest.mark.parametrize(
    "record",
    [
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"{}",
        b'{"expires_at": 5}',
        b'{"expires_at": ["2999-01-01T00:00:00Z"]}',
        b'{"expires_at": "not a time"}',
        b'{"owner": {"x": 1}, "expires_at": null}',
    ],
    ids=[
        "not json",
        "list",
        "string",
        "no expiry",
        "number",
        "expiry in a list",
        "unparseable",
        "null",
    ],
)
def test_a_corrupt_lock_record_is_taken_over_not_a_crash(
    bucket: storage.Bucket, record: bytes
) -> None:
    # No holder writes such a record, so none can be relied on to end it: waiting would
    # block the credential for good.
    blob = bucket.blob("locks/cred.json")
    blob.upload_from_string(record, content_type="application/json")
    lock = LeaseLock(bucket, "cred", lease=LEASE)
    assert lock.try_acquire()
    generation, stored_record = stored(bucket)
    assert stored_record["owner"] == lock.owner
    assert lock._generation == generation


def test_a_corrupt_record_is_taken_over_by_one_waiter_only(bucket: storage.Bucket) -> None:
    bucket.blob("locks/cred.json").upload_from_string(b"{}", content_type="application/json")
    first, second = LeaseLock(bucket, "cred", lease=LEASE), LeaseLock(bucket, "cred", lease=LEASE)
    assert first.try_acquire()
    assert not second.try_acquire()


# Operations of a run of several contenders: (contender, op) with op "try" or "release", or
# (-1, minutes) moving the wall clock on.
steps = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 2), st.sampled_from(["try", "release"])),
        st.tuples(st.just(-1), st.integers(1, 6)),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=steps)
def test_any_sequence_keeps_at_most_one_live_holder(
    stack, ops: list[tuple[int, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"state-{uuid.uuid4().hex[:10]}"
    gcp.create_bucket(name)
    bucket = storage.Client().bucket(name)
    wall = Clock()
    monkeypatch.setattr(clock, "now", wall)
    locks = [LeaseLock(bucket, "cred", lease=LEASE) for _ in range(3)]
    ends: dict[int, object] = {}  # contender -> the wall time its lease ends
    for who, op in ops:
        if who == -1:
            assert isinstance(op, int)
            wall.at += timedelta(minutes=op)
            continue
        if op == "release":
            if who in ends and ends[who] <= wall.at:  # type: ignore[operator]
                # A release after the lease ended: fake-gcs-server would delete the successor's
                # lock (it ignores the DELETE precondition); the recorded-request test covers it.
                continue
            locks[who].release()
            ends.pop(who, None)
            continue
        live = [i for i, end in ends.items() if end > wall.at and i != who]  # type: ignore[operator]
        got = locks[who].try_acquire()
        if live:
            assert not got, f"contender {who} took a lock contender {live} holds"
        if got:
            ends[who] = wall.at + LEASE
            assert stored(bucket)[1]["owner"] == locks[who].owner
        live_after = [i for i, end in ends.items() if end > wall.at]  # type: ignore[operator]
        assert len(live_after) <= 1


def test_acquire_polls_with_doubling_delays_up_to_two_seconds(
    bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert LeaseLock(bucket, "cred", lease=LEASE).try_acquire()
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    # The lock module's clock and jitter only: the storage client keeps the real ones.
    monkeypatch.setattr("shared.lock.time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr("shared.lock.random", SimpleNamespace(uniform=lambda a, b: (a + b) / 2))
    waiter = LeaseLock(bucket, "cred", lease=LEASE, sleep=sleep)
    assert waiter.acquire(wait=9.0) is False
    # 0.1 doubling to the 2 s cap, while the next delay still fits in the wait.
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert waiter.acquire(wait=0.0) is False
    assert len(slept) == 7


def test_held_releases_on_the_way_out(bucket: storage.Bucket) -> None:
    lock = LeaseLock(bucket, "cred", lease=LEASE)
    with lock.held(wait=1) as held:
        assert held is lock and lock.remaining() > 0
    assert bucket.get_blob("locks/cred.json") is None
    assert lock.remaining() == 0.0


def test_the_owner_names_the_host_and_a_random_id(bucket: storage.Bucket) -> None:
    lock = LeaseLock(bucket, "cred", lease=LEASE)
    host, _, run = lock.owner.rpartition("/")
    assert host == socket.gethostname()
    assert re.fullmatch(r"[0-9a-f]{12}", run)
    assert LeaseLock(bucket, "cred", lease=LEASE).owner != lock.owner


def test_the_first_write_asks_for_a_new_object_only(
    bucket: storage.Bucket, recorder: Recorder
) -> None:
    assert LeaseLock(bucket, "cred", lease=LEASE).try_acquire()
    assert recorder.preconditions("POST", "/upload/") == [["0"]]


def test_the_holder_is_read_at_the_generation_it_was_listed_with(
    bucket: storage.Bucket, recorder: Recorder
) -> None:
    holder = LeaseLock(bucket, "cred", lease=LEASE)
    assert holder.try_acquire()
    recorder.sent.clear()
    assert not LeaseLock(bucket, "cred", lease=LEASE).try_acquire()
    assert recorder.preconditions("GET", "alt=media") == [[str(holder._generation)]]


def test_a_lock_released_while_a_waiter_looks_is_taken(bucket: storage.Bucket) -> None:
    holder = LeaseLock(bucket, "cred", lease=LEASE)
    assert holder.try_acquire()
    own = storage.Client().bucket(bucket.name)
    look = own.get_blob

    def released_meanwhile(name: str) -> Any:
        holder.release()  # between the waiter's failed create and its read
        return look(name)

    own.get_blob = released_meanwhile
    waiter = LeaseLock(own, "cred", lease=LEASE)
    assert waiter.try_acquire()
    assert stored(bucket)[1]["owner"] == waiter.owner


def test_fence_without_the_lock_says_which_lock_and_step(bucket: storage.Bucket) -> None:
    lock = LeaseLock(bucket, "cred", lease=LEASE)
    with pytest.raises(LeaseLost, match=r"^lock cred not held before writing$") as raised:
        lock.fence("writing")
    assert raised.value.code == "lease_lost"


def test_acquire_does_not_sleep_past_its_wait(
    bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert LeaseLock(bucket, "cred", lease=LEASE).try_acquire()
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr("shared.lock.time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr("shared.lock.random", SimpleNamespace(uniform=lambda a, b: b))
    waiter = LeaseLock(bucket, "cred", lease=LEASE, sleep=sleep)
    # A first delay that ends exactly at the deadline is still slept; jitter stretches it.
    assert waiter.acquire(wait=0.1) is False
    assert slept == [pytest.approx(0.15)]


def test_release_before_acquiring_asks_nothing_of_the_server(
    bucket: storage.Bucket, recorder: Recorder
) -> None:
    LeaseLock(bucket, "cred", lease=LEASE).release()
    assert recorder.deletes() == []


def test_a_short_lease_names_the_lock_when_it_stops_a_step(bucket: storage.Bucket) -> None:
    ticks = [100.0]
    lock = LeaseLock(bucket, "cred", lease=timedelta(seconds=10), monotonic=lambda: ticks[0])
    assert lock.try_acquire()
    ticks[0] += 6
    with pytest.raises(LeaseLost, match=r"^lease on lock cred ran short before writing$"):
        lock.fence("writing")
