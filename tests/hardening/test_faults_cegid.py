"""Cegid transfer killed for real (SIGKILL to the functions-framework process group) in the
middle of a run: the lock stays held until its lease runs out, the next run then finishes the
job, and nothing half-written is ever used: no source deleted without its verified copy, no
partial object under its final name, staging cleared, every file landed exactly once.

(tests/cegid_transfer covers a fault at each step in-process; there the lock is released as
the exception unwinds, so the lease never has to expire. Here it must.)"""

from __future__ import annotations

import os
import signal
import threading
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
