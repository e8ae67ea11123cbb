"""Universign webhook and its worker (universign_sync) under faults: Universign API timeouts,
5xx and 429 (with and without Retry-After) handed back to Pub/Sub and processed on the
redelivery; late and out-of-order events; a worker killed mid-event (the claim's lease then
expires and the redelivery is processed once); a holder stalled past its claim's lease while
the redelivery took over (it writes nothing more); 50 concurrent deliveries of one event (one
API call, one status change).

In-process scenarios go through ``pipeline_client``: the webhook, then the worker on what it
queued; it answers 503 when the worker handed the message back for redelivery."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

from devtools import gcp
from devtools.fakes.universign import TRANSACTION_ROUTE
from shared import clock
from tests.hardening.hardening_b24 import json_lines, wait_for
from tests.universign_webhook.universign_testkit import (
    Kit,
    load_main,
    pipeline_client,
    post_event,
    run_work,
    unique,
    webhook_client,
)

LEASE = 30


def client_for(kit: Kit, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    return pipeline_client(load_main({**kit.env, **env}, monkeypatch), kit)


def serve_worker(kit: Kit, serve_function: Any, env: dict[str, str]) -> Any:
    """universign_sync served, pushed every message of the kit's work topic (the kit's own pull
    subscription keeps a copy for the test)."""
    worker = serve_function(
        "universign_webhook", "universign_sync", signature_type="cloudevent", env=env
    )
    push = gcp.push_endpoint(worker.url, kit.project, kit.sync_topic)
    gcp.create_subscription(kit.project, kit.sync_topic, unique("push-sync"), push_url=push)
    return worker


@pytest.mark.parametrize(
    ("status", "headers"),
    [(500, None), (502, None), (503, None), (504, None), (429, {"Retry-After": "1"}), (429, None)],
)
def test_api_errors_answer_503_and_the_redelivery_is_processed(
    universign_kit: Kit, monkeypatch, status: int, headers: dict[str, str] | None
) -> None:
    kit = universign_kit
    client = client_for(kit, monkeypatch)
    tx = kit.fake.create_transaction(state="completed").id
    event = kit.fake.event(tx)
    kit.fake.inject(TRANSACTION_ROUTE, status, count=2, headers=headers)  # both attempts
    answer = post_event(client, kit.fake, event)
    assert answer.status_code == 503 and answer.get_json()["result"] == "retry_later"
    assert kit.messages(expect=0, timeout=1) == []
    retry = post_event(client, kit.fake, event)
    assert retry.status_code == 200 and retry.get_json()["result"] == "synced"
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]


def test_api_timeout_answers_503_then_the_redelivery_is_processed(
    universign_kit: Kit, monkeypatch
) -> None:
    kit = universign_kit
    client = client_for(kit, monkeypatch, HTTP_TIMEOUT_SECONDS="1")
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    kit.fake.inject(TRANSACTION_ROUTE, 200, count=2, delay=2.5)
    assert post_event(client, kit.fake, event).status_code == 503
    assert post_event(client, kit.fake, event).status_code == 200
    assert kit.must(tx)["status"] == "EN_COURS"


def test_late_and_out_of_order_events_never_move_a_status_back(
    universign_kit: Kit, monkeypatch
) -> None:
    kit = universign_kit
    client = client_for(kit, monkeypatch)
    tx = kit.fake.create_transaction(state="started").id
    started = kit.fake.event(tx)
    kit.fake.set_state(tx, "completed")
    completed = kit.fake.event(tx)
    assert post_event(client, kit.fake, completed).status_code == 200
    assert kit.must(tx)["status"] == "SIGNE"
    # The older event arrives last (Universign retried it for hours): nothing regresses.
    assert post_event(client, kit.fake, started).status_code == 200
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]


def test_killed_mid_event_then_the_claim_lease_expires(
    universign_kit: Kit, serve_function, monkeypatch
) -> None:
    kit = universign_kit
    env = {**kit.env, "UNIVERSIGN_EVENT_LEASE_SECONDS": str(LEASE)}
    worker = serve_worker(kit, serve_function, env)
    main = load_main(env, monkeypatch)
    tx = kit.fake.create_transaction(state="completed").id
    event = kit.fake.event(tx)
    kit.fake.latency = 10.0  # the worker dies while Universign is answering
    assert post_event(webhook_client(main), kit.fake, event).status_code == 202
    (message,) = kit.queued(1)  # the copy Pub/Sub would redeliver
    wait_for(lambda: kit.fake.count(TRANSACTION_ROUTE) >= 1, timeout=60, what="the API call")
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    kit.fake.latency = 0.0

    # Redelivered while the dead holder's claim still runs: handed back, nothing half-done used.
    assert run_work(main, [message]) == ["redeliver"]
    assert kit.messages(expect=0, timeout=1) == []

    real_now = clock.now

    def later() -> datetime:
        return real_now() + timedelta(seconds=LEASE + 1)

    monkeypatch.setattr(clock, "now", later)
    assert run_work(main, [message]) == ["acked"]
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]
    calls = kit.fake.count(TRANSACTION_ROUTE)
    assert run_work(main, [message]) == ["acked"]  # a duplicate now
    assert kit.fake.count(TRANSACTION_ROUTE) == calls


def test_a_holder_stalled_past_its_claim_lease_writes_nothing_after_the_takeover(
    universign_kit: Kit, monkeypatch
) -> None:
    kit = universign_kit
    stalled_main = load_main({**kit.env, "UNIVERSIGN_EVENT_LEASE_SECONDS": str(LEASE)}, monkeypatch)
    api = stalled_main.clients().api
    lost = [0.0]  # monotonic seconds the stalled holder lost
    monkeypatch.setattr(
        stalled_main.clients().state, "monotonic", lambda: time.monotonic() + lost[0], raising=False
    )
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    assert post_event(webhook_client(stalled_main), kit.fake, event).status_code == 202
    (message,) = kit.queued(1)
    inside, resume = threading.Event(), threading.Event()
    read = api.get_transaction

    def stall(*args: Any, **kwargs: Any) -> Any:
        reading = read(*args, **kwargs)  # "started"
        inside.set()
        resume.wait(timeout=30)
        return reading

    monkeypatch.setattr(api, "get_transaction", stall)
    answers: list[str] = []
    holder = threading.Thread(target=lambda: answers.extend(run_work(stalled_main, [message])))
    holder.start()
    assert inside.wait(timeout=30)

    # The lease runs out: by the wall clock for the redelivery, which takes the claim over and
    # syncs, and by the monotonic clock for the stalled holder.
    lost[0] = LEASE + 1.0
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(seconds=LEASE + 1))
    kit.fake.set_state(tx, "completed")
    redelivery = load_main(kit.env, monkeypatch)
    assert run_work(redelivery, [message]) == ["acked"]

    resume.set()
    holder.join(timeout=30)
    assert answers == ["redeliver"]  # LeaseLost: it wrote nothing after the takeover
    doc = kit.must(tx)
    # Only the redelivery wrote: one sync, and its claim is the one marked done.
    assert doc["status"] == "SIGNE" and doc["sync_attempts"] == 1
    assert [h["source"] for h in doc["history"]] == ["webhook:transaction.lifecycle.started"]
    calls = kit.fake.count(TRANSACTION_ROUTE)
    assert run_work(redelivery, [message]) == ["acked"]  # a duplicate now
    assert kit.fake.count(TRANSACTION_ROUTE) == calls
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]


@pytest.mark.e2e
def test_fifty_concurrent_deliveries_of_one_event(universign_kit: Kit, serve_function) -> None:
    kit = universign_kit
    servers = [
        serve_function("universign_webhook", "universign_webhook", env={**kit.env, "THREADS": "32"})
        for _ in range(2)
    ]
    worker = serve_worker(kit, serve_function, {**kit.env, "THREADS": "32"})
    tx = kit.fake.create_transaction(state="completed").id
    body = kit.fake.encode(kit.fake.event(tx))
    signature = kit.fake.key.sign(body)
    kit.fake.latency = 0.3
    gate = threading.Barrier(50)

    def one(index: int) -> tuple[int, str]:
        gate.wait(timeout=30)
        answer = kit.fake.deliver(servers[index % 2].url, body, signature=signature, timeout=120)
        return answer.status_code, answer.json().get("result", "")

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(50)))
    assert all(answer == (202, "queued") for answer in answers), answers

    def handled() -> list[str]:
        lines = json_lines(worker.log_text())
        return [
            x["result"] for x in lines if x.get("event") == "sync_message" and not x.get("retry")
        ]

    # Every copy is acknowledged in the end (those that met the claim held are redelivered).
    wait_for(lambda: len(handled()) >= 50, timeout=180, what="50 acknowledged work messages")
    results = handled()
    assert results.count("synced") == 1 and results.count("duplicate") == 49
    assert kit.fake.count(TRANSACTION_ROUTE) == 1
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]
