"""What seed 004's users still missed (issue 14, items 5 to 10): tracking a transaction from the
app before any webhook, with its reference carried in every status-change event and the app's
external status code; the links and view times Universign reports; the complete sync log; and
webhook events that are acknowledged without a sync never vanishing (seed 004's flat shape is
synced). End to end through the Pub/Sub emulator where the feature is a message."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from universign_plan import Track, parse_poll_trigger
from universign_poll import run_poll
from universign_sync import sync_transaction

from devtools import gcp
from devtools.fakes.universign import TRANSACTION_ROUTE, Transaction, UniversignFake
from shared import events
from tests.universign_webhook.universign_testkit import (
    POLL,
    WEBHOOK,
    Kit,
    load_main,
    logged,
    make_kit,
    monitored,
    pipeline_client,
    post_event,
    summaries,
)

EXTERNAL = {"EN_COURS": "1", "SIGNE": "2", "REFUSE": "3"}


class LinkedTransaction(Transaction):
    """A transaction whose answers carry what seed 004 read: each signer's signing ``url`` and
    ``viewed_at``, each document's ``url`` (field names as seed 004 read them)."""

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        for index, person in enumerate(body["participants"]):
            person["url"] = f"https://app.universign.example/sign/{self.id}/{index}"
            person["viewed_at"] = "2026-01-02T03:04:05Z" if index == 0 else None
        for document in body["documents"]:
            document["url"] = f"https://app.universign.example/doc/{document['id']}"
        return body


def linked(fake: UniversignFake, state: str = "started", signers: int = 2) -> str:
    plain = fake.create_transaction(
        state=state, signers=[f"s{i}@example.com" for i in range(signers)]
    )
    with fake.lock:
        fake.transactions[plain.id] = LinkedTransaction(
            plain.id, plain.state, plain.participants, plain.documents
        )
    return plain.id


def publish(project: str, topic: str, message: dict[str, Any]) -> None:
    publisher = gcp.publisher()
    try:
        data = json.dumps(message).encode()
        publisher.publish(gcp.topic_path(project, topic), data).result(timeout=30)
    finally:
        publisher.transport.close()


def wait_for(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def trigger(data: dict[str, Any]) -> CloudEvent:
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/universign-poll-trigger",
        "time": datetime.now(UTC).isoformat(),
    }
    raw = base64.b64encode(json.dumps(data).encode()).decode()
    return CloudEvent(attributes, {"message": {"data": raw, "messageId": "m-track"}})


# --- item 5: track, end to end ------------------------------------------------------------


@pytest.mark.e2e
def test_track_message_through_pubsub_carries_the_reference_and_external_code(
    stack: Any, fake: UniversignFake, function_server: Any
) -> None:
    """An app publishes {"track": [...]} on the poll's trigger topic before any webhook: the
    transaction is tracked with its reference, synced at once, and each status change it goes
    through carries the reference and the app's code for the status."""
    kit = make_kit(stack, fake, UNIVERSIGN_EXTERNAL_STATUS_MAP=json.dumps(EXTERNAL))
    tx = linked(fake)
    poll = function_server(
        "universign_webhook", "universign_poll", signature_type="cloudevent", env=kit.env
    )
    topic = f"universign-poll-trigger-{tx[-8:]}"
    gcp.create_push_subscription(kit.project, topic, f"push-{tx[-8:]}", poll.url)
    publish(kit.project, topic, {"track": [{"transaction_id": tx, "reference": "DEV-0042"}]})
    doc = wait_for(lambda: kit.doc(tx))
    assert doc["reference"] == "DEV-0042" and doc["status"] == "EN_COURS"
    assert kit.names("universign/index/pending/") != []  # the poll keeps it from here on
    fake.set_state(tx, "completed")  # no webhook: the scheduled poll notices
    publish(kit.project, topic, {})
    wait_for(lambda: (kit.doc(tx) or {}).get("status") == "SIGNE")
    messages = kit.messages(2)
    assert [(m["status"], m["reference"], m["external_status"]) for m in messages] == [
        ("EN_COURS", "DEV-0042", "1"),
        ("SIGNE", "DEV-0042", "2"),
    ]
    runs = wait_for(lambda: len(summaries(poll.log_text())) >= 2 and summaries(poll.log_text()))
    assert [(r["trigger"], r["result"]) for r in runs] == [("track", "ok"), ("schedule", "ok")]
    assert runs[0]["tracked"] == 1 and runs[0]["status_changes"] == 1
    # The signing URL never reaches a log line.
    assert "app.universign.example/sign" not in poll.log_text()


def test_a_track_message_is_validated() -> None:
    assert parse_poll_trigger({}) is None
    assert parse_poll_trigger({"track": [{"transaction_id": "tx_1", "reference": "R 1"}]}) == [
        Track("tx_1", "R 1")
    ]
    assert parse_poll_trigger({"track": [{"transaction_id": "tx_2"}]}) == [Track("tx_2")]
    bad_messages: list[dict[str, Any]] = [
        {"force": True},
        {"track": []},
        {"track": "tx_1"},
        {"track": [{"transaction_id": "../etc"}]},
        {"track": [{"transaction_id": "tx_1", "reference": "a\nb"}]},
        {"track": [{"transaction_id": "tx_1", "reference": "x" * 201}]},
        {"track": [{"transaction_id": "tx_1", "ref": "R"}]},
        {"track": [{"transaction_id": f"tx_{i}"} for i in range(101)]},
    ]
    for bad in bad_messages:
        with pytest.raises(events.BadMessage):
            parse_poll_trigger(bad)


def test_a_bad_track_message_is_logged_and_acknowledged(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main = load_main(kit.env, monkeypatch, entry_point=POLL)
    main.universign_poll(trigger({"track": [{"transaction_id": "tx 1"}]}))  # never raises
    out = capsys.readouterr().out
    assert "ignoring message m-track" in out and summaries(out) == []
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


def test_a_track_request_survives_universign_being_down(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trigger is acknowledged whatever happens, so a track that cannot reach Universign
    is tracked anyway (document, reference, pending marker) and the next poll syncs it; after
    three failures in a row the rest are tracked without a call."""
    main = load_main(kit.env, monkeypatch, entry_point=POLL)
    ids = [kit.fake.create_transaction(state="started").id for _ in range(5)]
    kit.fake.inject(TRANSACTION_ROUTE, 502, count=6)  # three transactions, two attempts each
    main.universign_poll(
        trigger({"track": [{"transaction_id": tx, "reference": f"R-{tx}"} for tx in ids]})
    )
    assert kit.fake.count(TRANSACTION_ROUTE) == 6
    for tx in ids:
        doc = kit.must(tx)
        assert doc["reference"] == f"R-{tx}" and doc["status"] is None
    assert len(kit.names("universign/index/pending/")) == 5
    (run,) = summaries(capsys.readouterr().out)
    assert run["trigger"] == "track" and run["result"] == "failed"
    assert run["tracked"] == 5 and run["stopped"] == "api_unavailable"
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.synced == 5
    assert {kit.must(tx)["status"] for tx in ids} == {"EN_COURS"}
    published = kit.messages(5)
    assert sorted(m["reference"] for m in published) == sorted(f"R-{tx}" for tx in ids)


def test_track_of_a_transaction_universign_does_not_know_tracks_nothing(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    main = load_main(kit.env, monkeypatch, entry_point=POLL)
    main.universign_poll(trigger({"track": [{"transaction_id": "tx_unknown0001"}]}))
    assert kit.doc("tx_unknown0001") is None
    assert kit.names("universign/index/") == []


# --- items 7 and 8: links, view times, the sync log -------------------------------------------


def test_links_view_times_and_the_complete_sync_log(
    stack: Any, fake: UniversignFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = make_kit(stack, fake, UNIVERSIGN_HISTORY_SIZE="2")
    main = load_main(kit.env, monkeypatch, entry_point=POLL)
    tx = linked(fake)
    for _ in range(2):
        sync_transaction(main.SETTINGS, main.clients(), tx, source="poll")
    fake.set_state(tx, "completed")
    sync_transaction(main.SETTINGS, main.clients(), tx, source="webhook:x")
    doc = kit.must(tx)
    assert doc["signer_url"] == f"https://app.universign.example/sign/{tx}/0"
    assert doc["document_url"] == (
        f"https://app.universign.example/doc/{fake.transactions[tx].documents[0].id}"
    )
    assert [s["viewed_at"] for s in doc["signers"]] == ["2026-01-02T03:04:05Z", None]
    # The document keeps the last 2; the log keeps all 3, one object each, oldest first.
    assert len(doc["history"]) == 2
    names = kit.names(f"universign/sync-log/{tx}/")
    assert len(names) == 3
    log = [json.loads(kit.state.blob(n).download_as_bytes()) for n in names]
    assert [(e["source"], e["ok"], e.get("previous"), e["status"]) for e in log] == [
        ("poll", True, None, "EN_COURS"),
        ("poll", True, None, "EN_COURS"),
        ("webhook:x", True, "EN_COURS", "SIGNE"),
    ]
    assert "previous" not in log[1]  # no move: only entries that moved say where from
    assert log[0]["changes"][:2] == ["status", "universign_state"]
    assert log[1]["changes"] == []
    assert set(log[2]["changes"]) == {"status", "universign_state", "signers"}
    assert all(isinstance(e["response_ms"], int) and e["response_ms"] >= 0 for e in log)
    assert doc["history"] == [
        {k: v for k, v in e.items() if k != "transaction_id"} for e in log[1:]
    ]


def test_a_failed_sync_is_in_the_log_with_its_error(kit: Kit, main: ModuleType) -> None:
    tx = kit.fake.create_transaction(state="started").id
    sync_transaction(main.SETTINGS, main.clients(), tx, source="poll")
    kit.fake.inject(TRANSACTION_ROUTE, 502, count=2)
    with pytest.raises(Exception, match="502"):
        sync_transaction(main.SETTINGS, main.clients(), tx, source="poll")
    log = main.clients().state.read_log(tx)
    assert [e["ok"] for e in log] == [True, False]
    assert "502" in log[1]["error"] and log[1]["response_ms"] >= 0


# --- item 9: no map, no field -------------------------------------------------------------------


def test_without_a_map_events_carry_no_external_status(kit: Kit, main: ModuleType) -> None:
    tx = kit.fake.create_transaction(state="started").id
    sync_transaction(main.SETTINGS, main.clients(), tx, source="poll")
    (message,) = kit.messages(1)
    assert "external_status" not in message and message["reference"] is None


@pytest.mark.parametrize(
    "value", ['{"SIGNED": "2"}', '["SIGNE"]', '{"SIGNE": {"code": 2}}', "{oops"]
)
def test_a_bad_external_status_map_stops_the_function_naming_it(
    kit: Kit, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(Exception, match="UNIVERSIGN_EXTERNAL_STATUS_MAP"):
        load_main({**kit.env, "UNIVERSIGN_EXTERNAL_STATUS_MAP": value}, monkeypatch)


# --- item 10: acknowledged but not understood ---------------------------------------------------


def test_the_flat_shape_of_seed_004_is_synced(
    kit: Kit, pipeline: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tx = kit.fake.create_transaction(state="started").id
    answer = post_event(pipeline, kit.fake, {"event": "signer.signed", "transaction_id": tx})
    assert answer.status_code == 200 and answer.get_json()["result"] == "synced"
    assert kit.must(tx)["status"] == "EN_COURS"
    assert kit.must(tx)["history"][-1]["source"] == "webhook:signer.signed"
    assert logged(capsys.readouterr().out, "event_ignored") == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"object": "event", "id": "evt_k1", "type": "apikey.created", "payload": {}}, "type"),
        (
            {"object": "event", "id": "evt_k2", "type": "transaction.lifecycle.started"},
            "no_transaction_id",
        ),
        ({"event": "signer.signed", "transaction_id": "not a tx id"}, "no_transaction_id"),
    ],
)
def test_an_event_acknowledged_without_a_sync_is_a_counted_warning(
    kit: Kit,
    client: Any,
    capsys: pytest.CaptureFixture[str],
    event: dict[str, Any],
    reason: str,
) -> None:
    answer = post_event(client, kit.fake, event)
    assert answer.status_code == 200 and answer.get_json()["result"] == "ignored"
    out = capsys.readouterr().out
    (line,) = logged(out, "event_ignored")
    assert line["severity"] == "WARNING"
    assert line["event_type"] == str(event.get("type") or event.get("event"))
    assert line["reason"] == ("type_not_handled" if reason == "type" else reason)
    metrics, alerts = monitored(out, WEBHOOK)
    assert metrics["keepalive_universign_events_ignored"] == 1 and alerts == set()
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


def test_the_webhook_instance_serves_the_flat_shape_too(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flat shape's event id is the body's hash: the same delivery twice syncs once."""
    client = pipeline_client(load_main(kit.env, monkeypatch), kit)
    tx = kit.fake.create_transaction(state="started").id
    body = kit.fake.encode({"event": "transaction.completed", "transaction_id": tx})
    assert post_event(client, kit.fake, body).get_json()["result"] == "synced"
    assert post_event(client, kit.fake, body).get_json()["result"] == "duplicate"
    assert kit.fake.count(TRANSACTION_ROUTE) == 1
