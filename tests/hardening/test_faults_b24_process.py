"""Bitrix24 refresh with real function processes: killed mid-refresh (SIGKILL to the
functions-framework process group) at three points, then the lease runs out and the next run
proceeds; paused (SIGSTOP) past its lease while another run takes over, then resumed; and 50
concurrent deliveries for one credential, which must call Bitrix24 once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import functions_framework
import pytest
import requests

from devtools import gcp
from devtools.fakes.bitrix24 import TOKEN_ROUTE, function_env, seed_secrets
from devtools.stack import FunctionServer
from shared import clock
from tests.hardening.hardening_b24 import (
    SOURCE,
    TARGET,
    B24World,
    HeldRead,
    HoldingBitrix24Fake,
    check_consistent,
    json_lines,
    post_event,
    private_secret_manager,
    pubsub_event,
    sm_drain_add_faults,
    sm_fault,
    store_at,
    structured,
    summaries,
    wait_for,
)

pytestmark = pytest.mark.e2e

LEASE = 30  # the smallest LOCK_LEASE_SECONDS the function accepts


def start(world: B24World, serve_function: Callable[..., FunctionServer], **env: str) -> Any:
    return serve_function(
        "b24_token_refresh",
        TARGET,
        signature_type="cloudevent",
        env={**world.env, "LOCK_LEASE_SECONDS": str(LEASE), **env},
    )


def post_in_background(server: FunctionServer, data: dict[str, Any]) -> threading.Thread:
    headers, body = structured(pubsub_event(data))

    def send() -> None:
        # The process is killed while we wait: no answer is the point.
        with contextlib.suppress(requests.RequestException):
            requests.post(server.url, headers=headers, data=body, timeout=120)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def kill(server: FunctionServer) -> None:
    """SIGKILL the functions-framework process group (gunicorn arbiter and its worker)."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def lock_exists(world: B24World) -> bool:
    bucket = gcp.storage_client().bucket(world.bucket)
    return bucket.get_blob(f"locks/b24-{world.refresh_secret}.json") is not None


def in_process(
    world: B24World, monkeypatch: pytest.MonkeyPatch, *, later: float = 0.0, **env: str
) -> Any:
    """The function in this process; ``later`` moves its clock forward (lease expiry)."""
    for key, value in {**world.env, "LOCK_LEASE_SECONDS": str(LEASE), **env}.items():
        monkeypatch.setenv(key, value)
    if later:
        real_now = clock.now

        def shifted() -> datetime:
            return real_now() + timedelta(seconds=later)

        monkeypatch.setattr(clock, "now", shifted)
    return functions_framework.create_app(TARGET, SOURCE).test_client()


def test_killed_while_bitrix24_holds_the_request(
    b24_world: B24World, serve_function, monkeypatch
) -> None:
    """Killed before the provider processed the call: nothing spent, nothing written. The
    lease keeps other runs out until it expires (real time), then the next run refreshes."""
    w = b24_world
    first = start(w, serve_function)
    w.fake.hold("drop")
    post_in_background(first, {"force": True})
    assert w.fake.arrived.wait(60)
    kill(first)
    w.fake.release.set()
    assert lock_exists(w)
    assert check_consistent(w) == "repair-due"  # the seeded state: never refreshed yet

    busy = in_process(w, monkeypatch, LOCK_WAIT_SECONDS="0")
    assert post_event(busy, pubsub_event({})) >= 500  # lock busy: Pub/Sub delivers again
    assert w.fake.count(TOKEN_ROUTE) == 1

    second = start(w, serve_function, LOCK_WAIT_SECONDS=str(LEASE + 20))
    headers, body = structured(pubsub_event({}))
    answer = requests.post(second.url, headers=headers, data=body, timeout=120)
    assert answer.status_code == 200
    assert "ran out, taking over" in second.log_text()
    assert w.fake.refreshes == 1 and w.fake.reused == 0
    assert check_consistent(w) == "whole"
    assert not lock_exists(w)


def test_killed_after_bitrix24_answered_before_the_store(
    b24_world: B24World, serve_function, monkeypatch, capsys
) -> None:
    """Bitrix24 spent the token and answered a dead process: the new pair is lost with it.
    The next run (after the lease) must say so loudly, never store or claim a made-up state."""
    w = b24_world
    first = start(w, serve_function)
    w.fake.hold("answer")
    post_in_background(first, {"force": True})
    assert w.fake.arrived.wait(60)
    kill(first)
    w.fake.release.set()
    wait_for(lambda: w.fake.refreshes == 1, what="the held refresh to be processed")

    client = in_process(w, monkeypatch, later=LEASE + 1)
    assert post_event(client, pubsub_event({})) == 200
    out = capsys.readouterr().out
    assert any(
        line.get("severity") == "ERROR" and line.get("event") == "needs_reauth"
        for line in json_lines(out)
    )
    assert check_consistent(w) == "needs-reauth"
    assert "invalid_grant" in (w.status().last_error or "")
    nothing_stored = w.access_token() is None
    assert nothing_stored, "an access token was stored"


def test_killed_between_storing_the_refresh_and_the_access_token(
    b24_world: B24World, serve_function, monkeypatch
) -> None:
    """The rotated refresh token is stored, the process dies before the access token. The old
    access token (dead at Bitrix24) still looks fresh by expiry; the status must give it away
    and the next scheduled run must refresh with the stored token, once."""
    w = b24_world
    assert post_event(in_process(w, monkeypatch), pubsub_event({})) == 200
    assert check_consistent(w) == "whole"
    before = w.store.latest_version(w.refresh_secret)
    assert before is not None

    # Access-token writes fail for longer than the kill takes: the run is stuck between writes.
    sm_fault("AddSecretVersion", 300, w.access_secret)
    first = start(w, serve_function)
    post_in_background(first, {"force": True})
    wait_for(
        lambda: (w.store.latest_version(w.refresh_secret) or 0) > before,
        what="the rotated refresh token to be stored",
    )
    kill(first)
    sm_drain_add_faults(w.store, w.access_secret)
    assert w.fake.refreshes == 2
    dead = w.access_token() not in w.fake.live_access_tokens
    assert dead, "the old access token should have died with its refresh token"
    assert check_consistent(w) == "repair-due"

    client = in_process(w, monkeypatch, later=LEASE + 1)
    assert post_event(client, pubsub_event({})) == 200
    assert w.fake.refreshes == 3 and w.fake.reused == 0
    assert check_consistent(w) == "whole"


def test_fifty_concurrent_deliveries_call_bitrix24_once(
    b24_world: B24World, serve_function
) -> None:
    w = b24_world
    w.fake.latency = 0.3  # widen the window in which runs overlap
    servers = [start(w, serve_function, THREADS="32") for _ in range(2)]
    gate = threading.Barrier(50)

    def deliver(index: int) -> int:
        headers, body = structured(pubsub_event({}))
        gate.wait(timeout=30)
        url = servers[index % 2].url
        return requests.post(url, headers=headers, data=body, timeout=180).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(deliver, range(50)))
    assert statuses == [200] * 50
    assert w.fake.count(TOKEN_ROUTE) == 1
    assert w.fake.refreshes == 1 and w.fake.reused == 0
    results = [s["result"] for server in servers for s in summaries(server.log_text())]
    assert len(results) == 50 and results.count("refreshed") == 1
    assert check_consistent(w) == "whole"


def test_fifty_deliveries_through_pubsub_call_bitrix24_once(
    b24_world: B24World, serve_function
) -> None:
    """25 messages, each pushed by two subscriptions to two function processes."""
    w = b24_world
    w.fake.latency = 0.3
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    topic = f"hb24-trigger-{uuid.uuid4().hex[:6]}"
    servers = [start(w, serve_function, THREADS="32") for _ in range(2)]
    for server in servers:
        gcp.create_push_subscription(project, topic, f"hpush-{uuid.uuid4().hex[:8]}", server.url)
    publisher = gcp.publisher()
    path = gcp.topic_path(project, topic)
    futures = [publisher.publish(path, json.dumps({}).encode()) for _ in range(25)]
    for future in futures:
        future.result(timeout=30)

    def runs() -> int:
        return sum(len(summaries(server.log_text())) for server in servers)

    wait_for(lambda: runs() >= 50, timeout=180, what="fifty runs")
    assert w.fake.count(TOKEN_ROUTE) == 1
    assert w.fake.reused == 0
    assert check_consistent(w) == "whole"


@pytest.fixture
def held_read_world(stack: Any) -> Iterator[tuple[B24World, HeldRead]]:
    """A Bitrix24 world whose Secret Manager (its own stand-in) can hold one read's answer."""
    suffix = uuid.uuid4().hex[:8]
    secrets = {
        "client_id": f"fb24-client-id-{suffix}",
        "client_secret": f"fb24-client-secret-{suffix}",
        "refresh_token": f"fb24-refresh-token-{suffix}",
        "access_token": f"fb24-access-token-{suffix}",
    }
    bucket = f"fstate-{suffix}"
    gcp.create_bucket(bucket)
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    held = HeldRead()
    with private_secret_manager(held) as address, HoldingBitrix24Fake() as fake:
        assert isinstance(fake, HoldingBitrix24Fake)
        store = store_at(address, project)
        refresh_token = seed_secrets(fake, store, secrets)
        env = {
            "GOOGLE_CLOUD_PROJECT": project,
            "SECRET_MANAGER_EMULATOR_HOST": address,
            **function_env(fake, secrets, bucket),
        }
        try:
            yield B24World(fake, store, env, secrets, bucket, refresh_token), held
        finally:
            held.release.set()  # never leave a held read behind


def post_for_status(server: FunctionServer, data: dict[str, Any]) -> Future[int]:
    """Deliver ``data`` in the background; the future holds the HTTP status of the answer."""
    headers, body = structured(pubsub_event(data))
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(
        lambda: requests.post(server.url, headers=headers, data=body, timeout=150).status_code
    )
    pool.shutdown(wait=False)
    return future


def written(world: B24World) -> tuple[int | None, int | None, dict[str, str]]:
    """What a run can write: the newest version of each token secret, the status."""
    annotations = dict(world.store.info(world.access_secret).annotations)
    return (
        world.store.latest_version(world.refresh_secret),
        world.store.latest_version(world.access_secret),
        annotations,
    )


def test_a_holder_paused_past_its_lease_spends_nothing_and_writes_nothing(
    held_read_world: tuple[B24World, HeldRead], serve_function
) -> None:
    """Run 1 takes the lock and reads the refresh token; it is paused (SIGSTOP, the whole
    process) before its Bitrix24 call and stays paused past its lease. Run 2 takes the lock
    over and refreshes, spending that token. Resumed (SIGCONT), run 1 holds a spent token and
    a lock that is no longer its own: its fence stops it before the call. Exactly one Bitrix24
    call; no Secret Manager write from run 1, which reports failed with lease_lost and answers
    with an error so Pub/Sub delivers again."""
    w, held = held_read_world
    held.hold(w.refresh_secret)
    first = start(w, serve_function)
    answer = post_for_status(first, {})
    assert held.arrived.wait(60), "run 1 never read the refresh token"
    assert lock_exists(w)  # run 1 holds the lock, the token's value is on its way to it
    os.killpg(first.process.pid, signal.SIGSTOP)
    try:
        held.release.set()  # the answer waits in run 1's socket while it is stopped
        second = start(w, serve_function, LOCK_WAIT_SECONDS=str(LEASE + 30))
        headers, body = structured(pubsub_event({}))
        assert requests.post(second.url, headers=headers, data=body, timeout=150).ok
        assert "ran out, taking over" in second.log_text()
        assert w.fake.refreshes == 1
        after_second = written(w)
        assert after_second[0] == 2  # run 2 stored the rotated refresh token
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)

    assert answer.result(timeout=120) >= 500  # transient: Pub/Sub delivers it again
    assert w.fake.count(TOKEN_ROUTE) == 1 and w.fake.reused == 0
    assert written(w) == after_second
    (summary,) = summaries(first.log_text())
    assert (summary["result"], summary["reason"]) == ("failed", "lease_lost")
    assert "before calling Bitrix24" in first.log_text()
    assert check_consistent(w) == "whole"
