"""Cegid transfer killed for real (SIGKILL to the functions-framework process group) in the
middle of a run: the lock stays held until its lease runs out, the next run then finishes the
job, and nothing half-written is ever used: no source deleted without its verified copy, no
partial object under its final name, staging cleared, every file landed exactly once.

(tests/cegid_transfer covers a fault at each step in-process; there the lock is released as
the exception unwinds, so the lease never has to expire. Here it must.)

A run stalled for real (SIGSTOP, then SIGCONT) past its lease's safety margin deletes no
further source: the monotonic clock kept counting while it was stopped, the fence before each
delete sees the lease run short, and the run fails so Pub/Sub delivers it again."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_structured

from shared import clock
from tests.cegid_transfer.cegid_testlib import World, load_function, run_once, world
from tests.hardening.hardening_b24 import pubsub_event, wait_for

__all__ = ["world"]  # the fixture, imported so pytest finds it here

pytestmark = pytest.mark.e2e

LEASE = 30
FILES = {
    "exports/a-first.csv": os.urandom(600_000),
    "exports/b-large.csv": os.urandom(24_000_000),
    "exports/c-last.csv": os.urandom(700_000),
}


def assert_nothing_half_written(w: World) -> None:
    gone = set(FILES) - set(w.source_names())
    landed = w.landed()
    for name in gone:
        assert landed.get(f"cegid/{name}") == FILES[name], f"{name} deleted without its copy"
    for obj_name, data in landed.items():
        assert data == FILES[obj_name.removeprefix("cegid/")], f"{obj_name} is not whole"


def test_killed_mid_transfer_then_the_lease_expires(
    world: World, serve_function, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    for name, data in FILES.items():
        w.put(name, data)
    env = {**w.env, "LOCK_LEASE_SECONDS": str(LEASE)}
    server = serve_function(
        "cegid_transfer", "cegid_transfer", signature_type="cloudevent", env=env
    )
    headers, body = to_structured(pubsub_event({}))

    def send() -> None:
        try:
            requests.post(server.url, headers=dict(headers), data=body, timeout=300)
        except requests.RequestException:
            return

    threading.Thread(target=send, daemon=True).start()
    wait_for(lambda: "cegid/exports/a-first.csv" in w.landed(), timeout=120, what="the first file")
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)

    assert_nothing_half_written(w)
    assert "exports/b-large.csv" in w.source_names(), "the kill came too late to test anything"
    assert w.state_bucket.get_blob("locks/cegid-transfer.json") is not None

    # Before the lease runs out, another run must not touch anything.
    busy = load_function(monkeypatch, {**env, "LOCK_WAIT_SECONDS": "0"})
    before = (w.source_names(), w.all_objects())
    assert run_once(busy).result == "busy"  # acknowledged: the next hourly run takes over
    assert (w.source_names(), w.all_objects()) == before

    real_now = clock.now

    def later() -> datetime:
        return real_now() + timedelta(seconds=LEASE + 1)

    monkeypatch.setattr(clock, "now", later)
    module = load_function(monkeypatch, env)
    summary: Any = run_once(module)
    assert summary.failed == 0
    assert w.source_names() == []
    assert w.landed() == {f"cegid/{name}": data for name, data in FILES.items()}
    assert w.all_objects() == sorted(f"cegid/{n}" for n in FILES)  # staging cleared


STALL_FILES = {
    "stall/a-first.csv": os.urandom(600_000),
    "stall/b-large.csv": os.urandom(24_000_000),
    "stall/c-next.csv": os.urandom(500_000),
    "stall/d-last.csv": os.urandom(400_000),
}


def test_a_run_stalled_past_its_lease_margin_deletes_nothing_more(
    world: World, serve_function, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    for name, data in STALL_FILES.items():
        w.put(name, data)
    # A 30 s lease keeps a 15 s margin (half of itself): stalled 16 s, less than that is left.
    env = {**w.env, "LOCK_LEASE_SECONDS": str(LEASE)}
    server = serve_function(
        "cegid_transfer", "cegid_transfer", signature_type="cloudevent", env=env
    )
    headers, body = to_structured(pubsub_event({}))
    answers: list[int] = []

    def send() -> None:
        answers.append(
            requests.post(server.url, headers=dict(headers), data=body, timeout=300).status_code
        )

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    wait_for(lambda: "cegid/stall/a-first.csv" in w.landed(), timeout=120, what="the first file")
    os.killpg(server.process.pid, signal.SIGSTOP)
    try:
        at_stall = w.source_names()
        # With two sources left, whichever is in flight either reaches the fence or fails
        # and lets the next one reach it.
        assert len(at_stall) >= 2, "the stall came too late to test anything"
        time.sleep(LEASE / 2 + 1)
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)
    sender.join(timeout=240)

    assert answers == [500]  # LeaseLost is transient: Pub/Sub delivers the message again
    assert w.source_names() == at_stall  # not one source deleted after the lease ran short
    landed = w.landed()
    for obj_name, data in landed.items():
        assert data == STALL_FILES[obj_name.removeprefix("cegid/")], f"{obj_name} is not whole"
    assert "of lease left before deleting stall/" in server.log_text()

    # The stalled run released its lock as it stopped; the next run finishes the job.
    module = load_function(monkeypatch, env)
    summary: Any = run_once(module)
    assert summary.failed == 0 and w.source_names() == []
    assert w.landed() == {f"cegid/{name}": data for name, data in STALL_FILES.items()}
    assert w.all_objects() == sorted(f"cegid/{n}" for n in STALL_FILES)  # once each
