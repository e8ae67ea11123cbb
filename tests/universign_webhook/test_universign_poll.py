"""universign_poll in-process, on the emulators against the Universign fake: a 404 recorded, a
refused key stopping the run, failing transactions, batch limit, order and round robin, the one
final re-check, and a marker left by a crash tidied. The runs that end well, fail or need a
person also check what their run_summary line does to monitoring (universign_testkit
.monitored) and how many secret values they read (secret_reads)."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import pytest
from universign_poll import run_poll
from universign_state import pending_name
from universign_sync import sync_transaction

from devtools.fakes.universign import TRANSACTION_ROUTE, UniversignFake
from tests.universign_webhook.universign_testkit import (
    POLL,
    Clock,
    Kit,
    deliver,
    load_main,
    make_kit,
    monitored,
    pipeline_client,
    summaries,
)

# What one poll run's run_summary feeds (keepalive_secret_reads takes its secret_reads as one
# value). A good run feeds the absence alert no_success["60"] (no good run for two 5-minute
# intervals, at least an hour); a failed one feeds failing[0].
RUN = {"keepalive_run_duration_seconds": 1, "keepalive_runs": 1, "keepalive_secret_reads": 1}
RUN_OK = {**RUN, "keepalive_run_ok": 1}
RUN_FAILED = {**RUN, "keepalive_run_failed": 1}


@pytest.fixture
def main(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """main.py served as universign_poll (its SETTINGS and logger named after it)."""
    return load_main(kit.env, monkeypatch, entry_point=POLL)


@pytest.fixture
def client(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Another instance, served as universign_webhook, takes the deliveries (and runs the
    worker on what it queues)."""
    return pipeline_client(load_main(kit.env, monkeypatch), kit)


def reported(out: str) -> list[tuple[str, int]]:
    """(result, secret_reads) of each poll run in ``out``."""
    return [(line["result"], line["secret_reads"]) for line in summaries(out)]


def test_poll_records_404_on_a_tracked_transaction(kit: Kit, client: Any, main: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(client, kit, tx).status_code == 200
    del kit.fake.transactions[tx]
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.not_found == 1
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "EN_COURS" and "404" in doc["last_error"]


def test_poll_stops_on_a_refused_key(kit: Kit, main: Any, capsys) -> None:
    ids = [kit.fake.create_transaction(state="started").id for _ in range(3)]
    for tx in ids:
        sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    kit.fake.api_key = "apikey_revoked_by_someone"
    capsys.readouterr()
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.stopped == "api_key_refused" and summary.failed == 1
    out = capsys.readouterr().out
    # The key this instance read while syncing was refused: read again once (it may have been
    # rotated), refused again, and the run stops there.
    assert reported(out) == [("failed", 1)]
    assert monitored(out, POLL) == (
        {**RUN_FAILED, "keepalive_needs_reauth": 1},
        {"failing[0]", "needs_reauth[0]"},
    )


def test_poll_with_failing_transactions_is_a_failed_run(kit: Kit, main: Any, capsys) -> None:
    ids = [kit.fake.create_transaction(state="started").id for _ in range(2)]
    for tx in ids:
        sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    kit.fake.inject(TRANSACTION_ROUTE, 502, count=4)  # both attempts, both transactions
    capsys.readouterr()
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.failed == 2 and summary.synced == 0 and summary.stopped is None
    out = capsys.readouterr().out
    # No secret read: the key this instance read while syncing is still good.
    assert reported(out) == [("failed", 0)]
    assert monitored(out, POLL) == (RUN_FAILED, {"failing[0]"})


def test_poll_batch_limit_order_and_round_robin(
    stack: Any,
    fake: UniversignFake,
    monkeypatch: pytest.MonkeyPatch,
    moving_clock: Clock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kit = make_kit(stack, fake, UNIVERSIGN_POLL_BATCH="2")
    tracker = load_main(kit.env, monkeypatch)  # another instance (a webhook's) tracks them
    main = load_main(kit.env, monkeypatch, entry_point=POLL)
    ids = []
    for _ in range(3):
        tx = fake.create_transaction(state="started").id
        sync_transaction(tracker.SETTINGS, tracker.clients(), tx, source="test")
        ids.append(tx)
        moving_clock.advance(seconds=1)
    fake.reset_observations()
    capsys.readouterr()
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
    out = capsys.readouterr().out
    # The API key is read once per instance, by its first run; the others use it as kept.
    assert reported(out) == [("ok", 1), ("ok", 0), ("ok", 0), ("ok", 0)]
    assert monitored(out, POLL) == (
        {
            **{name: 4 for name in RUN_OK},
            "keepalive_universign_status_changes": 1,  # ids[1]'s, in the third run
        },
        {'no_success["60"]'},
    )


def test_final_transaction_is_rechecked_once_after_an_hour(
    kit: Kit, main: Any, moving_clock: Clock, capsys
) -> None:
    tx = kit.fake.create_transaction(state="expired").id
    sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    assert kit.must(tx)["index"] == "recheck"
    assert kit.names("universign/index/pending/") == []
    kit.fake.reset_observations()
    moving_clock.advance(minutes=59)
    capsys.readouterr()
    early = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert early.selected == 0 and kit.fake.count(TRANSACTION_ROUTE) == 0
    # Nothing to do is a run that ended well, and reads no secret.
    out = capsys.readouterr().out
    assert reported(out) == [("ok", 0)]
    assert monitored(out, POLL) == (RUN_OK, {'no_success["60"]'})
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
