"""universign_state's edges found unpinned by mutation testing: webhook de-duplication
(``StateStore.claim_event``) with real contenders on fake-gcs-server, ``needs_polling``,
``find_refusal`` and the document's first-timestamp and final re-check rules."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import universign_state as us
from google.cloud import storage  # type: ignore[attr-defined]

from devtools import gcp
from shared import clock
from shared.lock import LeaseLost

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


# --- claim_event on the emulator ----------------------------------------------------------------


class Recorder(requests.adapters.HTTPAdapter):
    """Sends every request on and keeps its method and URL (fake-gcs-server ignores
    ifGenerationMatch on DELETE, so what a release asks for is read here)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def send(self, request, *args, **kwargs):
        self.sent.append((str(request.method), str(request.url)))
        return super().send(request, *args, **kwargs)

    def deletes(self) -> list[list[str] | None]:
        queries = [parse_qs(urlsplit(u).query) for m, u in self.sent if m == "DELETE"]
        return [q.get("ifGenerationMatch") for q in queries]


@pytest.fixture
def bucket_name(stack) -> str:
    name = f"state-{uuid.uuid4().hex[:10]}"
    gcp.create_bucket(name)
    return name


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def store(bucket_name: str, recorder: Recorder) -> us.StateStore:
    client = storage.Client()
    client._http.mount("http://", recorder)
    return us.StateStore(client.bucket(bucket_name))


def marker(store: us.StateStore, event_id: str = "evt_1") -> tuple[int, Any]:
    blob = store.bucket.get_blob(f"{us.EVENTS}{event_id}")
    assert blob is not None
    return int(blob.generation), json.loads(blob.download_as_bytes())


def test_the_first_delivery_claims_with_a_live_lease(store: us.StateStore) -> None:
    claim = store.claim_event("evt_1", lease=LEASE, now=NOW)
    assert claim.state == "claimed" and claim.event_id == "evt_1"
    blob = store.bucket.get_blob(f"{us.EVENTS}evt_1")
    assert blob is not None and blob.content_type == "application/json"
    generation, record = marker(store)
    assert claim.generation == generation
    assert record == {"state": "processing", "expires_at": "2026-11-22T03:05:00.000000Z"}
    assert claim.lease is not None and claim.lease.length == 300.0
    assert claim.remaining() == pytest.approx(300.0, abs=5)


def test_a_second_delivery_while_the_first_is_live_is_busy(store: us.StateStore) -> None:
    assert store.claim_event("evt_1", lease=LEASE, now=NOW).state == "claimed"
    almost = NOW + LEASE - timedelta(microseconds=1)
    again = store.claim_event("evt_1", lease=LEASE, now=almost)
    assert (again.state, again.generation, again.lease) == ("busy", 0, None)


def test_a_claim_is_taken_over_from_the_instant_its_lease_ends(store: us.StateStore) -> None:
    first = store.claim_event("evt_1", lease=LEASE, now=NOW)
    later = store.claim_event("evt_1", lease=LEASE, now=NOW + LEASE)
    assert later.state == "claimed"
    generation, record = marker(store)
    assert later.generation == generation != first.generation
    assert record["expires_at"] == "2026-11-22T03:10:00.000000Z"


def test_a_finished_event_is_done_not_claimed_again(store: us.StateStore) -> None:
    claim = store.claim_event("evt_1", lease=LEASE, now=NOW)
    store.finish_event("evt_1", claim.generation, {"outcome": "applied"})
    assert marker(store)[1] == {"state": "done", "outcome": "applied"}
    for when in (NOW, NOW + LEASE * 10):
        again = store.claim_event("evt_1", lease=LEASE, now=when)
        assert (again.state, again.lease) == ("done", None)


def test_finishing_with_a_lost_claim_leaves_the_new_holders_marker(
    store: us.StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    stale = store.claim_event("evt_1", lease=LEASE, now=NOW)
    fresh = store.claim_event("evt_1", lease=LEASE, now=NOW + LEASE)
    store.finish_event("evt_1", stale.generation, {"outcome": "applied"})
    assert marker(store) == (
        fresh.generation,
        {"state": "processing", "expires_at": "2026-11-22T03:10:00.000000Z"},
    )
    assert "event marker evt_1 changed hands before it was marked done" in caplog.text


@pytest.mark.parametrize(
    ("record", "state"),
    [
        (b"not json", "claimed"),
        (b'["state", "done"]', "claimed"),
        (b'"done"', "claimed"),
        (b"\xff\xfe", "claimed"),
        (b'{"state": "processing"}', "claimed"),
        (b'{"state": "processing", "expires_at": "garbage"}', "claimed"),
        (b'{"state": "processing", "expires_at": 7}', "claimed"),
        (b'{"state": "done"}', "done"),
    ],
    ids=[
        "not json",
        "a list",
        "a string",
        "not utf-8",
        "no expiry",
        "unparseable expiry",
        "number expiry",
        "done",
    ],
)
def test_odd_markers(store: us.StateStore, record: bytes, state: str) -> None:
    store.bucket.blob(f"{us.EVENTS}evt_1").upload_from_string(record)
    assert store.claim_event("evt_1", lease=LEASE, now=NOW).state == state


def test_two_deliveries_cannot_both_take_over_one_expired_claim(bucket_name: str) -> None:
    assert (
        us.StateStore(storage.Client().bucket(bucket_name))
        .claim_event("evt_1", lease=LEASE, now=NOW)
        .state
        == "claimed"
    )
    # Both read the expired marker before either writes: only the generation precondition on
    # the takeover keeps the event from being processed twice.
    both_read = threading.Barrier(2, timeout=5)
    stores = []
    for _ in range(2):
        bucket = storage.Client().bucket(bucket_name)
        read = bucket.get_blob

        def read_then_wait(name: str, read: Any = read) -> Any:
            seen = read(name)
            if seen is not None:
                download = seen.download_as_bytes

                def download_then_wait(*args: Any, **kwargs: Any) -> bytes:
                    # Both have the marker's content in hand before either writes.
                    data: bytes = download(*args, **kwargs)
                    both_read.wait()
                    return data

                seen.download_as_bytes = download_then_wait
            return seen

        bucket.get_blob = read_then_wait
        stores.append(us.StateStore(bucket))
    got: dict[int, str] = {}
    threads = [
        threading.Thread(
            target=lambda i=i: got.__setitem__(
                i, stores[i].claim_event("evt_1", lease=LEASE, now=NOW + LEASE * 2).state
            )
        )
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got.values()) == ["busy", "claimed"]


def test_concurrent_first_deliveries_make_one_claim(bucket_name: str) -> None:
    stores = [us.StateStore(storage.Client().bucket(bucket_name)) for _ in range(4)]
    got: list[str] = []
    threads = [
        threading.Thread(
            target=lambda s=s: got.append(s.claim_event("evt_2", lease=LEASE, now=NOW).state)
        )
        for s in stores
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == ["busy", "busy", "busy", "claimed"]


def test_release_deletes_only_the_claims_generation(
    store: us.StateStore, recorder: Recorder
) -> None:
    claim = store.claim_event("evt_1", lease=LEASE, now=NOW)
    store.release_event("evt_1", claim.generation)
    assert recorder.deletes() == [[str(claim.generation)]]
    assert store.bucket.get_blob(f"{us.EVENTS}evt_1") is None
    store.release_event("evt_1", claim.generation)  # already gone: no error


# --- needs_polling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "needed"),
    [
        ({}, True),
        ({"status": us.EN_COURS}, True),
        ({"status": us.EN_ATTENTE, "outbox": []}, True),
        ({"status": us.SIGNE}, False),
        ({"status": us.SIGNE, "archive": None, "outbox": []}, False),
        ({"status": us.SIGNE, "archive": {"status": "done"}, "outbox": None}, False),
        ({"status": us.SIGNE, "archive": {"status": "pending"}}, True),
        ({"status": us.SIGNE, "archive": {"status": "done"}, "outbox": [{"id": "x"}]}, True),
        ({"status": us.REFUSE, "outbox": [{"id": "x"}]}, True),
        ({"status": us.EXPIRE, "archive": {"status": "failed"}}, False),
        ({"status": us.ANNULE, "archive": {}}, False),
    ],
)
def test_needs_polling(doc: dict[str, Any], needed: bool) -> None:
    assert us.needs_polling(doc) is needed


# --- find_refusal ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transaction", "found"),
    [
        (
            {"signers": [{"email": "a@x", "state": "refused"}]},
            {"reason": "refused", "participant": "a@x"},
        ),
        (
            {"participants": "not a list", "signers": [{"id": "p2", "status": "DECLINED"}]},
            {"reason": "declined", "participant": "p2"},
        ),
        (
            {
                "participants": [
                    "junk",
                    3,
                    None,
                    {"state": "stalled", "reason": "signature_refusal"},
                ]
            },
            {"reason": "signature_refusal", "participant": "a participant"},
        ),
        (
            {
                "participants": [
                    {"email": "ok@x", "state": "signed"},
                    {"email": "b@x", "refusal_reason": "review_refusal"},
                ]
            },
            {"reason": "review_refusal", "participant": "b@x"},
        ),
        (
            {
                "participants": [
                    {"id": "p3", "actions": ["junk", {"state": "open"}, {"status": "refused"}]}
                ]
            },
            {"reason": "refused", "participant": "p3"},
        ),
        (
            {
                "participants": [{"id": "p4", "actions": "junk", "state": "signed"}],
                "signers": [{"id": "p5", "reason": "consultation_refusal"}],
            },
            {"reason": "consultation_refusal", "participant": "p5"},
        ),
        ({"participants": [{"state": "signed", "reason": "late"}]}, None),
        ({"participants": [{"state": "open", "actions": [{"reason": "other"}]}]}, None),
        ({}, None),
    ],
)
def test_find_refusal(transaction: dict[str, Any], found: dict[str, str] | None) -> None:
    assert us.find_refusal(transaction) == found


def test_find_refusal_with_configured_states() -> None:
    transaction = {"participants": [{"email": "a@x", "state": "Rejected"}]}
    assert us.find_refusal(transaction) is None
    assert us.find_refusal(transaction, {"REJECTED"}) == {
        "reason": "rejected",
        "participant": "a@x",
    }


# --- the document ---------------------------------------------------------------------------------


def observe(doc: dict[str, Any], state: str, at: datetime, **kwargs: Any) -> us.Change | None:
    transaction = kwargs.pop("transaction", {"state": state})
    return us.apply_observation(
        doc,
        transaction,
        observed_at=at,
        now=at,
        source=kwargs.pop("source", "poll"),
        refusal_hint=kwargs.pop("refusal_hint", None),
        refusal_states=us.DEFAULT_REFUSAL_STATES,
        history_size=kwargs.pop("history_size", 20),
        **kwargs,
    )


def test_the_first_timestamp_of_a_status_is_kept() -> None:
    doc = us.new_document("tx_a", NOW)
    observe(doc, "started", NOW)
    assert doc["sent_at"] == "2026-11-22T03:00:00Z"
    doc["status"] = None  # as if a reading were replayed: the timestamp it had stays
    observe(doc, "started", NOW + timedelta(hours=1))
    assert doc["sent_at"] == "2026-11-22T03:00:00Z"


def test_a_final_status_sets_final_at_once_and_asks_for_the_recheck() -> None:
    doc = us.new_document("tx_a", NOW)
    observe(doc, "started", NOW)
    assert (doc["final_at"], doc["final_checked"]) == (None, False)
    doc["final_checked"] = True
    change = observe(doc, "completed", NOW + timedelta(minutes=1))
    assert change is not None and change.status == us.SIGNE
    assert doc["final_at"] == "2026-11-22T03:01:00Z"
    assert doc["final_checked"] is False
    assert doc["signed_at"] == "2026-11-22T03:01:00Z"
    assert doc["archive"] == {"status": "pending", "objects": {}, "last_error": None}


def test_a_status_change_goes_to_the_outbox_once() -> None:
    doc = us.new_document("tx_a", NOW, reference="ref-1")
    change = observe(doc, "started", NOW, source="webhook:evt_1")
    assert change == us.Change(
        "tx_a", None, us.EN_COURS, "started", "2026-11-22T03:00:00Z", reference="ref-1"
    )
    assert doc["outbox"] == [
        {
            "id": "tx_a:EN_COURS",
            "created_at": "2026-11-22T03:00:00.000000Z",
            "message": change.message(),
        }
    ]
    assert doc["webhook_received"] is True
    assert observe(doc, "started", NOW + timedelta(seconds=1)) is None
    assert len(doc["outbox"]) == 1
    assert (doc["sync_attempts"], doc["last_error"]) == (2, None)


def test_an_unknown_state_records_an_error_and_changes_nothing() -> None:
    doc = us.new_document("tx_a", NOW)
    observe(doc, "started", NOW)
    assert observe(doc, "Exploded", NOW + timedelta(seconds=1)) is None
    assert doc["status"] == us.EN_COURS
    assert doc["last_error"] == "unknown Universign state 'exploded'"
    assert doc["history"][-1]["ok"] is False


def test_an_older_reading_keeps_the_newer_raw_data() -> None:
    doc = us.new_document("tx_a", NOW)
    newer = {"state": "started", "participants": [{"email": "n@x", "url": "https://sign/n"}]}
    older = {"state": "started", "participants": [{"email": "o@x", "url": "https://sign/o"}]}
    observe(doc, "started", NOW, transaction=newer)
    us.apply_observation(
        doc,
        older,
        observed_at=NOW - timedelta(seconds=1),
        now=NOW,
        source="poll",
        refusal_hint=None,
        refusal_states=us.DEFAULT_REFUSAL_STATES,
        history_size=20,
    )
    assert doc["signers"][0]["email"] == "n@x"
    assert doc["signer_url"] == "https://sign/n"
    assert doc["observed_at"] == "2026-11-22T03:00:00.000000Z"


def test_history_keeps_the_last_entries_only() -> None:
    doc = us.new_document("tx_a", NOW)
    for i in range(5):
        observe(doc, "started", NOW + timedelta(seconds=i), history_size=3)
    assert [e["at"][17:19] for e in doc["history"]] == ["02", "03", "04"]


# --- one document's whole life, field by field ------------------------------------------------

FIRST = {
    "state": "Started",
    "participants": [
        {
            "id": "p1",
            "email": "a@x",
            "name": "A",
            "role": "signer",
            "status": "open",
            "viewedAt": "v1",
            "signedAt": None,
            "refusedAt": None,
            "url": "https://sign/a",
        },
        "junk",
        {
            "id": "p2",
            "email": "b@x",
            "name": "B",
            "role": "viewer",
            "state": "waiting",
            "viewed_at": "v2",
            "signed_at": "s2",
            "refused_at": "r2",
        },
    ],
    "documents": [
        {"id": "d1", "name": "Contract", "url": "https://docs/d1"},
        {"id": "d2"},
        {"id": 3},
        "junk",
    ],
}
SIGNERS = [
    {
        "order": 0,
        "id": "p1",
        "email": "a@x",
        "name": "A",
        "role": "signer",
        "state": "open",
        "viewed_at": "v1",
        "signed_at": None,
        "refused_at": None,
    },
    {
        "order": 2,
        "id": "p2",
        "email": "b@x",
        "name": "B",
        "role": "viewer",
        "state": "waiting",
        "viewed_at": "v2",
        "signed_at": "s2",
        "refused_at": "r2",
    },
]


def test_a_document_life_field_by_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    doc = us.new_document("tx_1", NOW, reference="ref-1")
    assert doc == {
        "transaction_id": "tx_1",
        "reference": "ref-1",
        "tracked_at": "2026-11-22T03:00:00.000000Z",
        "universign_state": None,
        "status": None,
        "sent_at": None,
        "signed_at": None,
        "refused_at": None,
        "expired_at": None,
        "cancelled_at": None,
        "final_at": None,
        "final_checked": False,
        "refusal": None,
        "signers": [],
        "documents": [],
        "signer_url": None,
        "document_url": None,
        "observed_at": None,
        "last_sync_at": None,
        "sync_attempts": 0,
        "last_error": None,
        "webhook_received": False,
        "archive": None,
        "outbox": [],
        "index": "pending",
        "history": [],
    }
    codes = {"EN_COURS": 10}
    common: dict[str, Any] = {
        "refusal_hint": None,
        "refusal_states": us.DEFAULT_REFUSAL_STATES,
        "history_size": 10,
    }
    first = us.apply_observation(
        doc,
        FIRST,
        observed_at=NOW,
        now=NOW,
        source="webhook:evt_1",
        external_codes=codes,
        response_ms=120,
        **common,
    )
    assert first == us.Change(
        "tx_1", None, us.EN_COURS, "started", "2026-11-22T03:00:00Z", "ref-1", codes
    )
    assert doc["signers"] == SIGNERS
    older = {"state": "started", "signers": [{"id": "old"}], "documents": [{"id": "old"}]}
    assert (
        us.apply_observation(
            doc,
            older,
            observed_at=NOW - timedelta(seconds=5),
            now=NOW + timedelta(seconds=1),
            source="poll",
            **common,
        )
        is None
    )
    assert doc["signers"] == SIGNERS
    later = NOW + timedelta(minutes=1)
    done = us.apply_observation(
        doc,
        {"state": "completed"},
        observed_at=later,
        now=later,
        source="poll",
        external_codes=codes,
        response_ms=80,
        **common,
    )
    assert done is not None and done.message()["external_status"] is None
    us.record_failure(
        doc,
        now=NOW + timedelta(minutes=2),
        source="poll",
        error="x" * 600,
        history_size=10,
        response_ms=5,
    )
    assert doc["last_error"] == "x" * 500
    weird = NOW + timedelta(minutes=3)
    assert (
        us.apply_observation(
            doc, {"state": "weird"}, observed_at=weird, now=weird, source="recheck", **common
        )
        is None
    )
    assert doc == {
        "transaction_id": "tx_1",
        "reference": "ref-1",
        "tracked_at": "2026-11-22T03:00:00.000000Z",
        "universign_state": "completed",
        "status": "SIGNE",
        "sent_at": "2026-11-22T03:00:00Z",
        "signed_at": "2026-11-22T03:01:00Z",
        "refused_at": None,
        "expired_at": None,
        "cancelled_at": None,
        "final_at": "2026-11-22T03:01:00Z",
        "final_checked": False,
        "refusal": None,
        "signers": [],
        "documents": [{"id": "d1", "name": "Contract"}, {"id": "d2", "name": "d2"}],
        "signer_url": "https://sign/a",
        "document_url": "https://docs/d1",
        "observed_at": "2026-11-22T03:01:00.000000Z",
        "last_sync_at": "2026-11-22T03:03:00.000000Z",
        "sync_attempts": 5,
        "last_error": "unknown Universign state 'weird'",
        "webhook_received": True,
        "archive": {"status": "pending", "objects": {}, "last_error": None},
        "outbox": [
            {
                "id": "tx_1:EN_COURS",
                "created_at": "2026-11-22T03:00:00.000000Z",
                "message": {
                    "transaction_id": "tx_1",
                    "previous": None,
                    "status": "EN_COURS",
                    "universign_state": "started",
                    "at": "2026-11-22T03:00:00Z",
                    "reference": "ref-1",
                    "external_status": 10,
                },
            },
            {
                "id": "tx_1:SIGNE",
                "created_at": "2026-11-22T03:01:00.000000Z",
                "message": {
                    "transaction_id": "tx_1",
                    "previous": "EN_COURS",
                    "status": "SIGNE",
                    "universign_state": "completed",
                    "at": "2026-11-22T03:01:00Z",
                    "reference": "ref-1",
                    "external_status": None,
                },
            },
        ],
        "index": "pending",
        "history": [
            {
                "at": "2026-11-22T03:00:00.000000Z",
                "source": "webhook:evt_1",
                "ok": True,
                "previous": None,
                "status": "EN_COURS",
                "universign_state": "started",
                "changes": [
                    "status",
                    "universign_state",
                    "signers",
                    "documents",
                    "signer_url",
                    "document_url",
                ],
                "response_ms": 120,
            },
            {
                "at": "2026-11-22T03:00:01.000000Z",
                "source": "poll",
                "ok": True,
                "status": "EN_COURS",
                "universign_state": "started",
                "changes": [],
            },
            {
                "at": "2026-11-22T03:01:00.000000Z",
                "source": "poll",
                "ok": True,
                "previous": "EN_COURS",
                "status": "SIGNE",
                "universign_state": "completed",
                "changes": ["status", "universign_state", "signers"],
                "response_ms": 80,
            },
            {
                "at": "2026-11-22T03:02:00.000000Z",
                "source": "poll",
                "ok": False,
                "status": "SIGNE",
                "universign_state": "completed",
                "error": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                "changes": [],
                "response_ms": 5,
            },
            {
                "at": "2026-11-22T03:03:00.000000Z",
                "source": "recheck",
                "ok": False,
                "status": "SIGNE",
                "universign_state": "weird",
                "error": "unknown Universign state 'weird'",
                "changes": [],
            },
        ],
    }


# --- the rest of the store, on the emulator ------------------------------------------------------


def test_documents_are_written_with_the_generation_read(store: us.StateStore) -> None:
    assert store.read("tx_1") == (None, 0)
    doc = us.new_document("tx_1", NOW)
    generation = store.write(doc, 0)
    assert store.read("tx_1") == (doc, generation)
    blob = store.bucket.get_blob(f"{us.DOCS}tx_1.json")
    assert blob is not None and blob.content_type == "application/json"
    assert (
        blob.download_as_bytes() == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    )
    with pytest.raises(us.Conflict, match=r"^tx_1$"):
        store.write(doc, 0)
    store.bucket.blob(f"{us.DOCS}tx_2.json").upload_from_string(b"[1]")
    assert store.read("tx_2")[0] is None


def test_update_retries_a_conflict_and_stops_at_its_limit(
    store: us.StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("universign_state.time.sleep", lambda s: None)
    store.write(us.new_document("tx_1", NOW), 0)
    calls: list[int] = []

    def bump(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
        assert doc is not None
        calls.append(1)
        if len(calls) == 1:  # another writer gets in between the read and the write
            other = dict(doc, sync_attempts=99)
            store.write(other, store.read("tx_1")[1])
        return dict(doc, last_error=f"try {len(calls)}"), "done"

    fenced: list[str] = []
    doc, generation, result = store.update("tx_1", bump, fence=fenced.append)
    assert (result, len(calls), doc and doc["last_error"]) == ("done", 2, "try 2")
    assert doc is not None and doc["sync_attempts"] == 99
    assert store.read("tx_1") == (doc, generation)
    assert fenced == ["writing the document of tx_1"] * 2
    assert store.update("tx_1", lambda d: (None, "none")) == (doc, generation, "none")

    def always_conflict(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        assert doc is not None
        store.write(dict(doc), store.read("tx_1")[1])
        return dict(doc), None

    limited = us.StateStore(store.bucket, max_attempts=2)
    with pytest.raises(us.Conflict, match=r"^tx_1: still conflicting after 2 tries$"):
        limited.update("tx_1", always_conflict)
    assert us.StateStore(store.bucket).max_attempts == 12


def test_markers_logs_and_the_cursor(store: us.StateStore) -> None:
    assert store.ensure(f"{us.PENDING}a_tx_1") is True
    assert store.ensure(f"{us.PENDING}a_tx_1") is False
    store.ensure(f"{us.PENDING}b_tx_2")
    store.ensure(f"{us.PENDING}c_tx_3")
    assert store.list_names(us.PENDING, start=None, limit=10) == [
        f"{us.PENDING}a_tx_1",
        f"{us.PENDING}b_tx_2",
        f"{us.PENDING}c_tx_3",
    ]
    assert store.list_names(us.PENDING, start=f"{us.PENDING}b", limit=1) == [f"{us.PENDING}b_tx_2"]
    store.remove(f"{us.PENDING}a_tx_1")
    store.remove(f"{us.PENDING}a_tx_1")  # already gone: no error
    assert store.list_names(us.PENDING, start=None, limit=10)[0] == f"{us.PENDING}b_tx_2"
    assert store.read_cursor() is None
    store.write_cursor("tx_9")
    assert store.read_cursor() == "tx_9"
    store.bucket.blob(us.CURSOR).upload_from_string(b'{"after": 5}')
    assert store.read_cursor() is None
    store.bucket.blob(us.CURSOR).upload_from_string(b"[]")
    assert store.read_cursor() is None
    store.bucket.blob(us.CURSOR).upload_from_string(b"{")
    assert store.read_cursor() is None
    first = store.append_log("tx_1", {"at": "2026-11-22T03:00:00.000000Z", "ok": True})
    second = store.append_log("tx_1", {"at": "2026-11-22T03:00:01.000000Z", "ok": False})
    store.bucket.blob(f"{us.SYNC_LOG}tx_1/zz_bad.json").upload_from_string(b"{")
    store.bucket.blob(f"{us.SYNC_LOG}tx_1/zz_list.json").upload_from_string(b"[1]")
    assert first.startswith(f"{us.SYNC_LOG}tx_1/20261122T030000000000Z_")
    assert second > first
    assert store.read_log("tx_1") == [
        {"transaction_id": "tx_1", "at": "2026-11-22T03:00:00.000000Z", "ok": True},
        {"transaction_id": "tx_1", "at": "2026-11-22T03:00:01.000000Z", "ok": False},
    ]
    assert store.read_log("tx_2") == []


def test_claims_name_their_event_and_time_their_lease(bucket_name: str, recorder: Recorder) -> None:
    ticks = [1000.0]
    client = storage.Client()
    client._http.mount("http://", recorder)
    store = us.StateStore(client.bucket(bucket_name), monotonic=lambda: ticks[0])
    claim = store.claim_event("evt_1", lease=LEASE, now=NOW)
    ticks[0] = 1100.0
    assert claim.remaining() == 200.0
    busy = store.claim_event("evt_1", lease=LEASE, now=NOW)
    assert (busy.state, busy.event_id) == ("busy", "evt_1")
    recorder.sent.clear()
    taken = store.claim_event("evt_1", lease=LEASE, now=NOW + LEASE)
    assert taken.state == "claimed" and taken.remaining() == 300.0
    reads = [
        parse_qs(urlsplit(u).query) for m, u in recorder.sent if m == "GET" and "alt=media" in u
    ]
    assert [q.get("ifGenerationMatch") for q in reads] == [[str(claim.generation)]]
    blob = store.bucket.get_blob(f"{us.EVENTS}evt_1")
    assert blob is not None and blob.content_type == "application/json"
    store.finish_event("evt_1", taken.generation, {})
    blob = store.bucket.get_blob(f"{us.EVENTS}evt_1")
    assert blob is not None and blob.content_type == "application/json"
    done = store.claim_event("evt_1", lease=LEASE, now=NOW)
    assert (done.state, done.event_id) == ("done", "evt_1")


class Refusing(Recorder):
    """Answers every DELETE with 412, as Cloud Storage does when the generation moved on."""

    def send(self, request, *args, **kwargs):
        if request.method != "DELETE":
            return super().send(request, *args, **kwargs)
        answer = requests.Response()
        answer.status_code = 412
        answer._content = b'{"error": {"code": 412, "message": "conditionNotMet"}}'
        answer.headers["Content-Type"] = "application/json"
        answer.request = request
        answer.url = request.url
        return answer


def test_a_release_refused_for_a_moved_generation_is_quiet(bucket_name: str) -> None:
    client = storage.Client()
    client._http.mount("http://", Refusing())
    store = us.StateStore(client.bucket(bucket_name))
    claim = store.claim_event("evt_1", lease=LEASE, now=NOW)
    store.release_event("evt_1", claim.generation)  # 412: someone else's claim now; no error


def test_an_unclaimed_fence_names_the_event_and_step() -> None:
    with pytest.raises(LeaseLost, match=r"^event evt_1 is not claimed before writing$") as raised:
        us.EventClaim("busy", "evt_1").fence("writing")
    assert raised.value.code == "lease_lost"


def test_the_status_message_carries_the_external_code_only_with_a_map() -> None:
    change = us.Change("tx_1", us.EN_COURS, us.SIGNE, "completed", "t", "ref")
    assert change.message() == {
        "transaction_id": "tx_1",
        "previous": us.EN_COURS,
        "status": us.SIGNE,
        "universign_state": "completed",
        "at": "t",
        "reference": "ref",
    }
    coded = us.Change("tx_1", None, us.SIGNE, "completed", "t", None, {us.SIGNE: "S"})
    assert coded.message()["external_status"] == "S"


@pytest.mark.parametrize(
    ("name", "transaction", "due"),
    [
        (f"{us.PENDING}20261122T030000000000Z_tx_a", "tx_a", NOW),
        ("20261122T030000500000Z_tx_b_c", "tx_b_c", NOW + timedelta(microseconds=500000)),
        (f"{us.RECHECK}garbage_tx_d", "tx_d", None),
    ],
)
def test_index_names(name: str, transaction: str, due: datetime | None) -> None:
    assert us.entry_transaction(name) == transaction
    assert us.entry_due(name) == due


def test_names_of_index_entries_and_log_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    doc = {"transaction_id": "tx_a", "tracked_at": "2026-11-22T02:00:00.000001Z"}
    assert us.pending_name(doc) == f"{us.PENDING}20261122T020000000001Z_tx_a"
    assert us.pending_name({"transaction_id": "tx_b"}) == f"{us.PENDING}20261122T030000000000Z_tx_b"
    assert us.recheck_name({"transaction_id": "tx_c"}, timedelta(hours=1)) == (
        f"{us.RECHECK}20261122T040000000000Z_tx_c"
    )
    name = us.sync_log_name("tx_a", {"at": "2026-11-22T02:00:00Z"})
    assert re.fullmatch(rf"{us.SYNC_LOG}tx_a/20261122T020000000000Z_[0-9a-f]{{8}}\.json", name)
    assert us.sync_log_name("tx_a", {}).startswith(f"{us.SYNC_LOG}tx_a/20261122T030000000000Z_")


@pytest.mark.parametrize(
    ("previous", "candidate", "kept"),
    [
        (us.EXPIRE, us.ANNULE, us.ANNULE),
        (us.ANNULE, us.EXPIRE, us.ANNULE),
        (None, us.EN_COURS, us.EN_COURS),
    ],
)
def test_resolve_keeps_the_higher_priority(previous: str | None, candidate: str, kept: str) -> None:
    assert us.resolve(previous, candidate) == kept


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://sign/a", True),
        ("http://sign/a", True),
        ("ftp://sign/a", False),
        ("https://" + "a" * 2040, True),
        ("https://" + "a" * 2041, False),
    ],
)
def test_first_url(url: str, kept: bool) -> None:
    assert us._first_url([{"url": url}]) == (url if kept else None)


def test_a_reading_with_signers_only_under_signers() -> None:
    doc = us.new_document("tx_a", NOW)
    observe(
        doc,
        "started",
        NOW,
        transaction={"state": "started", "signers": [{"id": "s1", "url": "https://s/1"}]},
    )
    assert [s["id"] for s in doc["signers"]] == ["s1"] and doc["signer_url"] == "https://s/1"


def test_a_reading_without_links_or_documents_keeps_the_stored_ones() -> None:
    doc = us.new_document("tx_a", NOW)
    with_links = {
        "state": "started",
        "participants": [{"id": "p", "url": "https://s/p"}],
        "documents": [{"id": "d", "url": "https://d/d"}],
    }
    observe(doc, "started", NOW, transaction=with_links)
    observe(doc, "started", NOW + timedelta(seconds=1), transaction={"state": "started"})
    assert (doc["signer_url"], doc["document_url"]) == ("https://s/p", "https://d/d")
    assert doc["documents"] == [{"id": "d", "name": "d"}]
    observe(
        doc,
        "started",
        NOW + timedelta(seconds=2),
        transaction={"state": "started", "documents": [{"id": "e"}]},
    )
    assert doc["documents"] == [{"id": "e", "name": "e"}]


def test_a_refusal_is_recorded_once_with_when_and_where_seen() -> None:
    doc = us.new_document("tx_a", NOW)
    refused = {"state": "started", "participants": [{"email": "a@x", "state": "refused"}]}
    change = observe(doc, "started", NOW, transaction=refused, source="poll")
    assert change is not None and change.status == us.REFUSE
    assert doc["refusal"] == {
        "reason": "refused",
        "participant": "a@x",
        "seen_at": "2026-11-22T03:00:00.000000Z",
        "source": "poll",
    }
    observe(
        doc,
        "started",
        NOW + timedelta(seconds=1),
        refusal_hint={"reason": "other", "participant": "b"},
    )
    assert doc["refusal"]["reason"] == "refused"


def test_an_archive_already_done_is_not_reopened() -> None:
    doc = us.new_document("tx_a", NOW)
    doc["archive"] = {"status": "done", "objects": {"x": 1}, "last_error": None}
    observe(doc, "completed", NOW)
    assert doc["archive"]["status"] == "done"
    other = us.new_document("tx_b", NOW)
    observe(other, "expired", NOW)
    assert other["archive"] is None


def test_a_reading_at_the_same_instant_as_the_stored_one_is_applied() -> None:
    doc = us.new_document("tx_a", NOW)
    observe(doc, "started", NOW, transaction={"state": "started", "participants": [{"id": "a"}]})
    observe(doc, "started", NOW, transaction={"state": "started", "participants": [{"id": "b"}]})
    assert doc["signers"][0]["id"] == "b"


# --- second round: what the first mutation run still let through ---------------------------------


def test_every_object_the_store_writes_is_json_and_the_log_is_created_once(
    store: us.StateStore, recorder: Recorder
) -> None:
    store.claim_event("evt_1", lease=LEASE, now=NOW)
    store.write_cursor("tx_1")
    recorder.sent.clear()
    name = store.append_log("tx_1", {"at": "2026-11-22T03:00:00.000000Z", "ok": True})
    uploads = [parse_qs(urlsplit(u).query) for m, u in recorder.sent if m == "POST"]
    assert [q.get("ifGenerationMatch") for q in uploads] == [["0"]]
    for path in (f"{us.EVENTS}evt_1", us.CURSOR, name):
        blob = store.bucket.get_blob(path)
        assert blob is not None and blob.content_type == "application/json", path
    log_blob = store.bucket.get_blob(name)
    assert log_blob is not None
    assert log_blob.download_as_bytes() == (
        b'{"transaction_id":"tx_1","at":"2026-11-22T03:00:00.000000Z","ok":true}'
    )
    assert store.ensure(f"{us.PENDING}x_tx_1")
    marker_blob = store.bucket.get_blob(f"{us.PENDING}x_tx_1")
    assert marker_blob is not None and marker_blob.size == 0
    store.ensure(f"{us.RECHECK}x_tx_2")
    assert store.list_names(us.PENDING, start=None, limit=10) == [f"{us.PENDING}x_tx_1"]


def test_update_backs_off_between_conflicts(
    store: us.StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("universign_state.time.sleep", slept.append)
    monkeypatch.setattr("universign_state.random.uniform", lambda low, high: high)
    store.write(us.new_document("tx_1", NOW), 0)
    calls: list[int] = []

    def always_conflict(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        assert doc is not None
        calls.append(1)
        store.write(dict(doc), store.read("tx_1")[1])
        return dict(doc), None

    with pytest.raises(us.Conflict):
        us.StateStore(store.bucket, max_attempts=6).update("tx_1", always_conflict)
    assert len(calls) == 6
    assert slept == [0.04, 0.08, 0.16, 0.32, 0.5, 0.5]


def test_update_hands_change_a_copy(store: us.StateStore) -> None:
    store.write(us.new_document("tx_1", NOW), 0)

    def meddle(doc: dict[str, Any] | None) -> tuple[None, None]:
        assert doc is not None
        doc["history"].append("changed in place")
        return None, None

    current, _, _ = store.update("tx_1", meddle)
    assert current is not None and current["history"] == []


def test_stamps_are_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert us._stamp(NOW) == "2026-11-22T03:00:00.000000Z"
        assert us.pending_name({"transaction_id": "t", "tracked_at": "2026-11-22T03:00:00Z"}) == (
            f"{us.PENDING}20261122T030000000000Z_t"
        )
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_bare_document_gets_its_history_and_outbox() -> None:
    doc: dict[str, Any] = {"transaction_id": "tx_a"}
    change = observe(doc, "started", NOW)
    assert change is not None
    assert [o["id"] for o in doc["outbox"]] == ["tx_a:EN_COURS"]
    assert len(doc["history"]) == 1 and doc["sync_attempts"] == 1


def test_camel_case_participant_times_are_read() -> None:
    doc = us.new_document("tx_a", NOW)
    person = {"id": "p", "signedAt": "s", "refusedAt": "r", "viewedAt": "v"}
    observe(doc, "started", NOW, transaction={"state": "started", "participants": [person]})
    (signer,) = doc["signers"]
    assert (signer["signed_at"], signer["refused_at"], signer["viewed_at"]) == ("s", "r", "v")


def test_odd_readings_are_recorded_exactly() -> None:
    doc = us.new_document("tx_a", NOW)
    assert (
        us.apply_observation(
            doc,
            {},
            observed_at=NOW,
            now=NOW,
            source="poll",
            refusal_hint=None,
            refusal_states=us.DEFAULT_REFUSAL_STATES,
            history_size=5,
            response_ms=33,
        )
        is None
    )
    assert doc["last_error"] == "unknown Universign state ''"
    assert doc["history"][-1]["response_ms"] == 33
    observe(doc, "s" * 60, NOW)
    assert doc["last_error"] == f"unknown Universign state {'s' * 40!r}"
    fresh = us.new_document("tx_b", NOW)
    us.record_failure(fresh, now=NOW, source="poll", error="boom", history_size=5)
    assert fresh["sync_attempts"] == 1


def test_a_final_time_already_set_is_kept_and_the_reference_replaced() -> None:
    doc = us.new_document("tx_a", NOW, reference="old")
    doc["final_at"] = "2026-11-01T00:00:00Z"
    observe(doc, "expired", NOW, reference="new")
    assert doc["final_at"] == "2026-11-01T00:00:00Z"
    assert doc["reference"] == "new" and doc["outbox"][0]["message"]["reference"] == "new"


def test_configured_refusal_states_reach_the_document() -> None:
    doc = us.new_document("tx_a", NOW)
    transaction = {"state": "started", "participants": [{"id": "p", "state": "rejected"}]}
    us.apply_observation(
        doc,
        transaction,
        observed_at=NOW,
        now=NOW,
        source="poll",
        refusal_hint=None,
        refusal_states={"rejected"},
        history_size=5,
    )
    assert doc["status"] == us.REFUSE


def test_a_claim_lease_that_runs_short_names_the_event(bucket_name: str) -> None:
    ticks = [0.0]
    store = us.StateStore(storage.Client().bucket(bucket_name), monotonic=lambda: ticks[0])
    claim = store.claim_event("evt_1", lease=timedelta(seconds=10), now=NOW)
    ticks[0] = 6.0
    with pytest.raises(LeaseLost, match=r"^lease on claim on event evt_1 ran short before x$"):
        claim.fence("x")
