"""Universign webhook under faults: Universign API timeouts, 5xx and 429 (with and without
Retry-After) answered 503 and processed on the redelivery; late and out-of-order events; a
process killed mid-event (the claim's lease then expires and the redelivery is processed
once); a holder stalled past its claim's lease while the redelivery took over (it writes
nothing more); 50 concurrent deliveries of one event (one API call, one status change)."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from devtools.fakes.universign import TRANSACTION_ROUTE
from shared import clock
from tests.hardening.hardening_b24 import wait_for
from tests.universign_webhook.universign_testkit import (
    Kit,
    load_main,
    post_event,
    webhook_client,
)

LEASE = 30


def client_for(kit: Kit, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    return webhook_client(load_main({**kit.env, **env}, monkeypatch))


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
    assert answer.status_code == 503 and answer.headers["Retry-After"]
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
    server = serve_function("universign_webhook", "universign_webhook", env=env)
    tx = kit.fake.create_transaction(state="completed").id
    event = kit.fake.event(tx)
    body = kit.fake.encode(event)
    kit.fake.latency = 10.0  # the process dies while Universign is answering

    def send() -> None:
        try:
            kit.fake.deliver(server.url, body, timeout=60)
        except requests.RequestException:
            return

    threading.Thread(target=send, daemon=True).start()
    wait_for(lambda: kit.fake.count(TRANSACTION_ROUTE) >= 1, timeout=60, what="the API call")
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    kit.fake.latency = 0.0

    client = client_for(kit, monkeypatch, UNIVERSIGN_EVENT_LEASE_SECONDS=str(LEASE))
    busy = post_event(client, kit.fake, event)
    assert busy.status_code == 409  # Universign retries later; nothing half-done is used
    assert kit.messages(expect=0, timeout=1) == []

    real_now = clock.now

    def later() -> datetime:
        return real_now() + timedelta(seconds=LEASE + 1)

    monkeypatch.setattr(clock, "now", later)
    client = client_for(kit, monkeypatch, UNIVERSIGN_EVENT_LEASE_SECONDS=str(LEASE))
    answer = post_event(client, kit.fake, event)
    assert answer.status_code == 200 and answer.get_json()["result"] == "synced"
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]
    again = post_event(client, kit.fake, event)
    assert again.status_code == 200 and again.get_json()["result"] == "duplicate"


def test_a_holder_stalled_past_its_claim_lease_writes_nothing_after_the_takeover(
    universign_kit: Kit, monkeypatch
) -> None:
    kit = universign_kit
    stalled_main = load_main({**kit.env, "UNIVERSIGN_EVENT_LEASE_SECONDS": str(LEASE)}, monkeypatch)
    stalled = webhook_client(stalled_main)
    api = stalled_main.clients().api
    lost = [0.0]  # monotonic seconds the stalled holder lost
    monkeypatch.setattr(
        stalled_main.clients().state, "monotonic", lambda: time.monotonic() + lost[0], raising=False
    )
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    inside, resume = threading.Event(), threading.Event()
    read = api.get_transaction

    def stall(*args: Any, **kwargs: Any) -> Any:
        reading = read(*args, **kwargs)  # "started"
        inside.set()
        resume.wait(timeout=30)
        return reading

    monkeypatch.setattr(api, "get_transaction", stall)
    answers: list[Any] = []
    holder = threading.Thread(target=lambda: answers.append(post_event(stalled, kit.fake, event)))
    holder.start()
    assert inside.wait(timeout=30)

    # The lease runs out: by the wall clock for the redelivery, which takes the claim over and
    # syncs, and by the monotonic clock for the stalled holder.
    lost[0] = LEASE + 1.0
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(seconds=LEASE + 1))
    kit.fake.set_state(tx, "completed")
    takeover = post_event(client_for(kit, monkeypatch), kit.fake, event)
    assert takeover.status_code == 200 and takeover.get_json()["result"] == "synced"

    resume.set()
    holder.join(timeout=30)
    (answer,) = answers
    assert answer.status_code == 503
    assert answer.get_json() == {"result": "retry_later", "detail": "LeaseLost"}
    doc = kit.must(tx)
    # Only the redelivery wrote: one sync, and its claim is the one marked done.
    assert doc["status"] == "SIGNE" and doc["sync_attempts"] == 1
    assert [h["source"] for h in doc["history"]] == ["webhook:transaction.lifecycle.started"]
    again = post_event(client_for(kit, monkeypatch), kit.fake, event)
    assert again.get_json()["result"] == "duplicate"
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]


@pytest.mark.e2e
def test_fifty_concurrent_deliveries_of_one_event(universign_kit: Kit, serve_function) -> None:
    kit = universign_kit
    servers = [
        serve_function("universign_webhook", "universign_webhook", env={**kit.env, "THREADS": "32"})
        for _ in range(2)
    ]
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
    assert all(code in (200, 409) for code, _ in answers), answers
    results = [result for _, result in answers]
    assert results.count("synced") == 1
    assert kit.fake.count(TRANSACTION_ROUTE) == 1
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(expect=1)] == ["SIGNE"]
