"""universign_poll in-process, on the emulators against the Universign fake: a 404 recorded, a
refused key stopping the run, batch limit, order and round robin, the one final re-check, and a
marker left by a crash tidied."""

from __future__ import annotations

import time
from typing import Any

import pytest
from universign_poll import run_poll
from universign_state import pending_name
from universign_sync import sync_transaction

from devtools.fakes.universign import TRANSACTION_ROUTE, UniversignFake
from tests.universign_webhook.universign_testkit import Clock, Kit, deliver, load_main, make_kit


def test_poll_records_404_on_a_tracked_transaction(kit: Kit, client: Any, main: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(client, kit, tx).status_code == 200
    del kit.fake.transactions[tx]
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.not_found == 1
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "EN_COURS" and "404" in doc["last_error"]


def test_poll_stops_on_a_refused_key(kit: Kit, main: Any) -> None:
    ids = [kit.fake.create_transaction(state="started").id for _ in range(3)]
    for tx in ids:
        sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    kit.fake.api_key = "apikey_revoked_by_someone"
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.stopped == "api_key_refused" and summary.failed == 1


def test_poll_batch_limit_order_and_round_robin(
    stack: Any, fake: UniversignFake, monkeypatch: pytest.MonkeyPatch, moving_clock: Clock
) -> None:
    kit = make_kit(stack, fake, UNIVERSIGN_POLL_BATCH="2")
    main = load_main(kit.env, monkeypatch)
    ids = []
    for _ in range(3):
        tx = fake.create_transaction(state="started").id
        sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
        ids.append(tx)
        moving_clock.advance(seconds=1)
    fake.reset_observations()
    first = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert first.order == ids[:2] and first.synced == 2
    assert fake.count(TRANSACTION_ROUTE) == 2
    second = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert second.order == [ids[2], ids[0]]
    fake.set_state(ids[1], "completed")
    third = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert third.order == [ids[1], ids[2]] and third.status_changes == 1
    # ids[1] is final now: only the other two are polled from here on.
    fourth = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert sorted(fourth.order) == sorted([ids[0], ids[2]])


def test_final_transaction_is_rechecked_once_after_an_hour(
    kit: Kit, main: Any, moving_clock: Clock
) -> None:
    tx = kit.fake.create_transaction(state="expired").id
    sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    assert kit.must(tx)["index"] == "recheck"
    assert kit.names("universign/index/pending/") == []
    kit.fake.reset_observations()
    moving_clock.advance(minutes=59)
    early = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert early.selected == 0 and kit.fake.count(TRANSACTION_ROUTE) == 0
    moving_clock.advance(minutes=2)
    due = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert due.rechecked == 1 and kit.fake.count(TRANSACTION_ROUTE) == 1
    doc = kit.doc(tx)
    assert doc is not None and doc["final_checked"] is True and doc["index"] == "none"
    assert kit.names("universign/index/") == []
    moving_clock.advance(hours=5)
    later = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert later.selected == 0 and kit.fake.count(TRANSACTION_ROUTE) == 1


def test_poll_tidies_a_marker_left_by_a_crash(kit: Kit, main: Any) -> None:
    tx = kit.fake.create_transaction(state="cancelled").id
    sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    doc = kit.doc(tx)
    assert doc is not None
    name = f"universign/index/pending/{pending_name(doc).rsplit('/', 1)[-1]}"
    kit.state.blob(name).upload_from_string(b"")  # as if the run died before removing it
    kit.fake.reset_observations()
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.repaired == 1 and kit.fake.count(TRANSACTION_ROUTE) == 0
    assert kit.names("universign/index/pending/") == []
