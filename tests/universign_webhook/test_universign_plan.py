"""universign_plan: the checks that refuse a delivery, what an event concerns, and what a sync
still owes (publish, archive, index). Pure: no environment, no emulator, no framework."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from universign_plan import (
    RECHECK_SOURCE,
    Reply,
    archive_object_names,
    archive_owed,
    decode_event,
    finish_document,
    index_of,
    parse_event,
    parse_work_message,
    publish_now,
    refuse_media_type,
    refuse_method,
    refuse_size,
    second_write_needed,
    signature_from,
    token_matches,
    work_message,
)
from universign_state import new_document
from werkzeug.datastructures import Headers

from shared.events import BadMessage

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
TX = "tx_0123456789"


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = new_document(TX, NOW)
    doc.update(changes)
    return doc


# --- the HTTP answer -------------------------------------------------------------------------


def test_reply_body_and_headers() -> None:
    assert json.loads(Reply(200, "synced").body()) == {"result": "synced"}
    assert json.loads(Reply(405, "method_not_allowed", "POST only").body()) == {
        "result": "method_not_allowed",
        "detail": "POST only",
    }
    assert Reply(200, "synced").headers() == {"Content-Type": "application/json"}
    # Universign retries a 503 on its own; the header says when to expect us back.
    assert Reply(503, "retry_later").headers()["Retry-After"] == "60"
    assert "Retry-After" not in Reply(500, "internal_error").headers()


# --- checks before anything is processed -----------------------------------------------------


def test_only_post_is_accepted() -> None:
    assert refuse_method("POST") is None
    for method in ("GET", "PUT", "post"):
        refused = refuse_method(method)
        assert refused is not None and refused.status == 405


def test_token_comparison() -> None:
    assert token_matches("tok_a", "tok_a")
    assert not token_matches("tok_b", "tok_a")
    assert not token_matches("", "tok_a")
    assert token_matches("tök", "tök")  # compared as UTF-8 bytes, not refused


@pytest.mark.parametrize(
    ("length", "refused"), [(None, False), (0, False), (1024, False), (1025, True)]
)
def test_size_limit(length: int | None, refused: bool) -> None:
    reply = refuse_size(length, 1024)
    assert (reply is not None) is refused
    if reply is not None:
        assert (reply.status, reply.result, reply.detail) == (
            413,
            "too_large",
            "body over 1024 bytes",
        )


def test_only_json_is_accepted() -> None:
    assert refuse_media_type("application/json") is None
    refused = refuse_media_type("text/plain")
    assert refused is not None and refused.status == 415


def test_signature_is_taken_from_the_first_configured_header_present() -> None:
    names = ("X-JWS-Signature", "X-Universign-Signature")
    assert signature_from(Headers({"X-Universign-Signature": "b"}), names) == "b"
    both = Headers({"X-JWS-Signature": "a", "X-Universign-Signature": "b"})
    assert signature_from(both, names) == "a"
    empty_first = Headers({"X-JWS-Signature": "", "X-Universign-Signature": "b"})
    assert signature_from(empty_first, names) == "b"
    assert signature_from(Headers({"x-jws-signature": "a"}), names) == "a"  # any case
    assert signature_from(Headers({"X-Other-Signature": "c"}), names) is None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "body is not usable JSON"),
        (b"\xff\xfe", "body is not usable JSON"),
        (b"[1,2]", "body is not a JSON object"),
        (b'"text"', "body is not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not usable JSON"),  # past the recursion limit
        (b'{"n":' + b"9" * 5000 + b"}", "body is not usable JSON"),  # past the int-string limit
        (b'{"type": "\\ud800"}', "body is not usable JSON"),  # a lone surrogate
        (b'{"n": NaN}', "body is not usable JSON"),  # not JSON, though json.loads takes it
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes, detail: str) -> None:
    reply = decode_event(body)
    assert isinstance(reply, Reply)
    assert (reply.status, reply.result) == (400, "bad_json")
    assert reply.detail.startswith(detail)


def test_a_json_object_is_decoded() -> None:
    assert decode_event(b'{"id": "evt_1"}') == {"id": "evt_1"}


# --- what an event concerns --------------------------------------------------------------------


def event(event_type: str, obj: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"object": "event", "id": "evt_1", "type": event_type, "payload": {"object": obj or {}}}


def test_transaction_id_from_a_transaction_object() -> None:
    parsed = parse_event(
        event("transaction.lifecycle.started", {"object": "transaction", "id": TX}), b"{}"
    )
    assert (parsed.event_id, parsed.event_type, parsed.transaction_id) == (
        "evt_1",
        "transaction.lifecycle.started",
        TX,
    )
    assert parsed.refusal is None


@pytest.mark.parametrize(
    "place",
    [
        lambda e: e["payload"]["object"].update(transaction=TX),
        lambda e: e["payload"]["object"].update(transaction={"id": TX}),
        lambda e: e["payload"].update(transaction_id=TX),
        lambda e: e.update(transactionId=TX),
    ],
)
def test_transaction_id_is_looked_for_in_every_known_place(place: Any) -> None:
    raw = event("action.opened", {"object": "action", "id": "act_1"})
    place(raw)
    assert parse_event(raw, b"{}").transaction_id == TX


def test_an_invalid_transaction_id_is_not_used() -> None:
    raw = event("transaction.lifecycle.started", {"object": "transaction", "id": "tx_../x"})
    assert parse_event(raw, b"{}").transaction_id is None


def test_an_id_with_a_trailing_newline_is_not_used() -> None:
    """``$`` also matches before a final newline; an id must match as a whole."""
    raw = event("transaction.lifecycle.started", {"object": "transaction", "id": TX + "\n"})
    raw["id"] = "evt_1\n"
    parsed = parse_event(raw, b"{}")
    assert parsed.transaction_id is None and parsed.event_id.startswith("sha256-")


def test_event_text_is_a_scalar_utf8_can_write() -> None:
    nested: Any = []
    for _ in range(900):  # str() of it from a deeper stack would recurse past the limit
        nested = [nested]
    raw = event("action.stalled", {"transaction": TX, "reason": "signature_refusal"})
    raw["payload"]["object"]["participant"] = nested
    parsed = parse_event(raw, b"{}")
    assert parsed.refusal is not None and parsed.refusal["participant"] == "a participant"
    assert parse_event(event(nested), b"{}").event_type == ""
    surrogate = parse_event(event("apikey.\ud800"), b"{}").event_type
    assert surrogate == "apikey.?" and surrogate.encode("utf-8")


def test_events_about_something_else_need_no_sync() -> None:
    raw = event("apikey.created", {"object": "transaction", "id": TX})
    assert parse_event(raw, b"{}").transaction_id is None


def test_without_a_usable_event_id_the_body_hash_stands_in() -> None:
    raw = event("transaction.lifecycle.started", {"object": "transaction", "id": TX})
    raw["id"] = "evt with spaces"
    first = parse_event(raw, b"body one")
    assert first.event_id.startswith("sha256-") and len(first.event_id) == 47
    assert parse_event(raw, b"body one").event_id == first.event_id
    assert parse_event(raw, b"body two").event_id != first.event_id


def test_the_event_type_is_bounded() -> None:
    raw = event("action." + "x" * 200)
    assert len(parse_event(raw, b"{}").event_type) == 100


def test_a_stall_with_a_refusal_reason_is_a_refusal() -> None:
    obj: dict[str, Any] = {"object": "action", "transaction": TX, "reason": "signature_refusal"}
    obj["participant"] = {"id": "par_1", "email": "client@example.com"}
    parsed = parse_event(event("action.stalled", obj), b"{}")
    assert parsed.refusal == {
        "reason": "signature_refusal",
        "participant": "client@example.com",
        "event": "evt_1",
    }


def test_a_stall_for_another_reason_is_no_refusal() -> None:
    obj = {"object": "action", "transaction": TX, "reason": "waiting_period"}
    assert parse_event(event("action.stalled", obj), b"{}").refusal is None


def test_a_refusal_reason_outside_a_stall_is_ignored() -> None:
    obj = {"object": "action", "transaction": TX, "reason": "signature_refusal"}
    assert parse_event(event("action.opened", obj), b"{}").refusal is None


# --- after a sync ------------------------------------------------------------------------------


def test_only_the_writer_of_a_change_publishes_it_at_once() -> None:
    fresh = {"id": f"{TX}:SIGNE", "created_at": "2026-11-22T02:59:00Z"}
    wait = timedelta(minutes=2)
    assert publish_now(fresh, own=f"{TX}:SIGNE", now=NOW, retry_after=wait)
    assert not publish_now(fresh, own=None, now=NOW, retry_after=wait)
    assert not publish_now(fresh, own=f"{TX}:REFUSE", now=NOW, retry_after=wait)
    # Anyone publishes one that looks abandoned.
    assert publish_now(fresh, own=None, now=NOW + timedelta(minutes=1), retry_after=wait)
    assert publish_now({"id": "x"}, own=None, now=NOW, retry_after=wait)


def test_archive_is_owed_once_signed_while_pending() -> None:
    assert archive_owed(document(status="SIGNE", archive={"status": "pending"}))
    assert not archive_owed(document(status="SIGNE", archive={"status": "done"}))
    assert not archive_owed(document(status="REFUSE", archive={"status": "pending"}))
    assert not archive_owed(document(status="SIGNE", archive=None))


def test_archive_object_names_are_safe_and_unique() -> None:
    names = archive_object_names(
        TX,
        [
            {"id": "d1", "name": "contrat.pdf"},
            {"id": "d2", "name": "annexe/1.pdf"},
            {"id": "d3", "name": "contrat.pdf"},
            {"id": "d4", "name": "..hidden"},
            {"id": "d5", "name": " \n"},
        ],
    )
    assert names == {
        "d1": f"universign/{TX}/contrat.pdf",
        "d2": f"universign/{TX}/annexe_1.pdf",
        "d3": f"universign/{TX}/d3-contrat.pdf",
        "d4": f"universign/{TX}/hidden",
        "d5": f"universign/{TX}/_",
    }


def test_index_follows_the_work_left() -> None:
    assert index_of(document(status="EN_COURS")) == "pending"
    assert index_of(document(status="EXPIRE")) == "recheck"
    assert index_of(document(status="EXPIRE", final_checked=True)) == "none"
    assert index_of(document(status="EXPIRE", outbox=[{"id": "x"}])) == "pending"
    assert index_of(document(status="SIGNE", archive={"status": "pending"})) == "pending"


def test_a_sync_that_changed_nothing_writes_nothing_more() -> None:
    settled = document(status="EN_COURS", index="pending")
    assert not second_write_needed(settled, published=False, archiving=False, source="poll")
    assert second_write_needed(settled, published=True, archiving=False, source="poll")
    assert second_write_needed(settled, published=False, archiving=True, source="poll")
    assert second_write_needed(settled, published=False, archiving=False, source=RECHECK_SOURCE)
    final = document(status="ANNULE", index="pending")
    assert second_write_needed(final, published=False, archiving=False, source="poll")


def test_finish_drops_published_notifications_and_sets_the_index() -> None:
    current = document(status="ANNULE", outbox=[{"id": "a"}, {"id": "b"}])
    written, target = finish_document(current, published=["a"], archive_update=None, source="poll")
    assert written is not None and written["outbox"] == [{"id": "b"}]
    assert target == written["index"] == "pending"  # b is still owed
    written, target = finish_document(written, published=["b"], archive_update=None, source="poll")
    assert written is not None and target == written["index"] == "recheck"


def test_finish_records_the_archive_without_working_marks() -> None:
    update: dict[str, Any] = {
        "status": "done",
        "objects": {"d1": {"name": "n", "generation": 7, "new": True}},
        "last_error": None,
    }
    current = document(status="SIGNE", archive={"status": "pending"})
    written, target = finish_document(current, published=[], archive_update=update, source="poll")
    assert written is not None and target == "recheck"
    assert written["archive"] == {
        "status": "done",
        "objects": {"d1": {"name": "n", "generation": 7}},
        "last_error": None,
    }
    assert update["objects"]["d1"]["new"] is True  # the caller's copy is left alone


def test_finish_keeps_an_archive_another_writer_completed() -> None:
    done = {"status": "done", "objects": {"d1": {"name": "n", "generation": 1}}}
    late = {"status": "pending", "objects": {}, "last_error": "d1: boom"}
    current = document(status="SIGNE", archive=done, index="recheck")
    written, target = finish_document(current, published=[], archive_update=late, source="poll")
    assert (written, target) == (None, "recheck")  # nothing changed: nothing to write


def test_finish_marks_the_final_recheck_done() -> None:
    current = document(status="EXPIRE", index="recheck")
    written, target = finish_document(
        current, published=[], archive_update=None, source=RECHECK_SOURCE
    )
    assert written is not None and written["final_checked"] is True
    assert target == written["index"] == "none"


def test_finish_on_a_vanished_document_writes_nothing() -> None:
    assert finish_document(None, published=["a"], archive_update=None, source="poll") == (
        None,
        None,
    )


# --- the work message ----------------------------------------------------------------------------


def test_a_work_message_carries_the_event_facts_and_reads_back_the_same() -> None:
    body = json.dumps(
        {
            "id": "evt_stall1",
            "type": "action.stalled",
            "payload": {
                "object": {"id": TX, "reason": "signature_refusal", "email": "a@example.com"}
            },
        }
    ).encode()
    event = parse_event(json.loads(body), body)
    received = NOW + timedelta(microseconds=123_456)
    message = work_message(event, received)
    assert message == {
        "event_id": "evt_stall1",
        "event_type": "action.stalled",
        "transaction_id": TX,
        "refusal": {
            "reason": "signature_refusal",
            "participant": "a@example.com",
            "event": "evt_stall1",
        },
        "received_at": "2026-11-22T03:00:00.123+00:00",
    }
    # Through JSON, as Pub/Sub carries it.
    item = parse_work_message(json.loads(json.dumps(message)))
    assert item.event == event
    assert item.received_at == NOW + timedelta(milliseconds=123)


GOOD = {
    "event_id": "evt_1",
    "event_type": "transaction.lifecycle.completed",
    "transaction_id": TX,
    "refusal": None,
    "received_at": "2026-11-22T03:00:00Z",
}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"api_key": "k"}, "unknown fields"),
        ({"event_id": None}, "event_id"),
        ({"event_id": "evt_1\n"}, "event_id"),
        ({"event_id": "../evt"}, "event_id"),
        ({"transaction_id": 12}, "transaction_id"),
        ({"transaction_id": "tx/../x"}, "transaction_id"),
        ({"event_type": ["x"]}, "event_type"),
        ({"event_type": "x" * 101}, "event_type"),
        ({"received_at": "yesterday"}, "received_at"),
        ({"received_at": None}, "received_at"),
        ({"refusal": "refused"}, "refusal"),
        ({"refusal": {"reason": "bored", "participant": "p", "event": "e"}}, "refusal"),
        ({"refusal": {"reason": "signature_refusal", "participant": ""}}, "refusal"),
    ],
)
def test_a_work_message_is_parsed_strictly(change: dict[str, Any], why: str) -> None:
    with pytest.raises(BadMessage, match=why):
        parse_work_message({**GOOD, **change})


def test_a_work_message_missing_a_field_is_refused() -> None:
    for name in GOOD:
        with pytest.raises(BadMessage):
            parse_work_message({k: v for k, v in GOOD.items() if k != name})
