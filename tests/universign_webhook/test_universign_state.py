"""Status mapping, transitions and priority (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import universign_state as us
from hypothesis import given
from hypothesis import strategies as st

from shared.lock import Lease, LeaseLost

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "refused", "status"),
    [
        ("draft", False, us.EN_ATTENTE),
        ("started", False, us.EN_COURS),
        ("paused", False, us.EN_COURS),
        ("completed", False, us.SIGNE),
        ("archived", False, us.SIGNE),
        ("cancelled", False, us.ANNULE),
        ("expired", False, us.EXPIRE),
        ("started", True, us.REFUSE),
        ("paused", True, us.REFUSE),
        ("cancelled", True, us.REFUSE),
        ("expired", True, us.REFUSE),
        ("completed", True, us.SIGNE),
        ("draft", True, us.EN_ATTENTE),
        ("STARTED", False, us.EN_COURS),
        ("exploded", False, None),
    ],
)
def test_mapping(state: str, refused: bool, status: str | None) -> None:
    assert us.map_state(state, refused=refused) == status


def test_priority_order_is_the_documented_one() -> None:
    order = sorted(us.PRIORITY, key=us.PRIORITY.__getitem__, reverse=True)
    assert order == [us.SIGNE, us.REFUSE, us.ANNULE, us.EXPIRE, us.EN_COURS, us.EN_ATTENTE]
    assert all(us.PRIORITY[f] > us.PRIORITY[us.EN_COURS] for f in us.FINAL)


@pytest.mark.parametrize(
    ("previous", "candidate", "kept"),
    [
        (None, us.EN_ATTENTE, us.EN_ATTENTE),
        (us.EN_ATTENTE, us.EN_COURS, us.EN_COURS),
        (us.EN_COURS, us.EN_ATTENTE, us.EN_COURS),
        (us.SIGNE, us.EN_COURS, us.SIGNE),
        (us.REFUSE, us.ANNULE, us.REFUSE),
        (us.ANNULE, us.REFUSE, us.REFUSE),
        (us.REFUSE, us.SIGNE, us.SIGNE),
        (us.EXPIRE, us.EN_ATTENTE, us.EXPIRE),
    ],
)
def test_resolve(previous: str | None, candidate: str, kept: str) -> None:
    assert us.resolve(previous, candidate) == kept
    if previous is not None:
        assert us.is_transition_allowed(previous, kept)


@given(st.lists(st.sampled_from(sorted(us.PRIORITY)), min_size=1, max_size=30))
def test_final_status_never_regresses(observations: list[str]) -> None:
    status: str | None = None
    for candidate in observations:
        new = us.resolve(status, candidate)
        if us.is_final(status):
            assert us.is_final(new)
        status = new
    assert status == max(observations, key=us.PRIORITY.__getitem__)


@pytest.mark.parametrize(
    "participant",
    [
        {"email": "a@x", "state": "refused"},
        {"email": "a@x", "status": "declined"},
        {"email": "a@x", "state": "open", "refusal_reason": "signature_refusal"},
        {"email": "a@x", "actions": [{"state": "stalled", "reason": "review_refusal"}]},
    ],
)
def test_refusal_found_in_participants(participant: dict[str, object]) -> None:
    found = us.find_refusal({"participants": [{"email": "b@x", "state": "signed"}, participant]})
    assert found is not None and found["participant"] == "a@x"


def test_no_refusal_in_ordinary_participants() -> None:
    tx = {"participants": [{"email": "a@x", "state": "open"}, {"email": "b", "state": "signed"}]}
    assert us.find_refusal(tx) is None
    assert us.find_refusal({"participants": "garbage"}) is None


def _apply(doc: dict[str, object], state: str, minutes: int = 0, **kw: object) -> object:
    return us.apply_observation(
        doc,
        {"state": state, "participants": [], "documents": [{"id": "doc_1", "name": "a.pdf"}]},
        observed_at=NOW + timedelta(minutes=minutes),
        now=NOW + timedelta(minutes=minutes),
        source=str(kw.get("source", "poll")),
        refusal_hint=kw.get("refusal_hint"),
        refusal_states=us.DEFAULT_REFUSAL_STATES,
        history_size=3,
    )


def test_document_life_from_draft_to_signed() -> None:
    doc = us.new_document("tx_1", NOW)
    first = _apply(doc, "draft")
    assert isinstance(first, us.Change) and first.previous is None and first.status == "EN_ATTENTE"
    change = _apply(doc, "started", 1)
    assert isinstance(change, us.Change) and change.previous == us.EN_ATTENTE
    assert doc["sent_at"] == "2026-11-22T03:01:00Z"
    assert _apply(doc, "started", 2) is None
    change = _apply(doc, "completed", 3)
    assert isinstance(change, us.Change) and change.status == us.SIGNE
    assert doc["signed_at"] == "2026-11-22T03:03:00Z" and doc["final_at"] == doc["signed_at"]
    assert doc["archive"]["status"] == "pending"
    assert [e["id"] for e in doc["outbox"]] == ["tx_1:EN_ATTENTE", "tx_1:EN_COURS", "tx_1:SIGNE"]
    assert len(doc["history"]) == 3  # bounded
    assert doc["sync_attempts"] == 4
    assert us.needs_polling(doc)


def test_an_older_reading_does_not_overwrite_a_newer_one() -> None:
    doc = us.new_document("tx_1", NOW)
    _apply(doc, "completed", 5)
    assert _apply(doc, "started", 1) is None  # a slower racer's earlier reading
    assert doc["status"] == us.SIGNE and doc["universign_state"] == "completed"


def test_refusal_hint_from_an_event_is_kept() -> None:
    doc = us.new_document("tx_1", NOW)
    _apply(doc, "started")
    change = _apply(doc, "started", 1, refusal_hint={"reason": "signature_refusal"})
    assert isinstance(change, us.Change) and change.status == us.REFUSE
    assert doc["refused_at"] and doc["refusal"]["reason"] == "signature_refusal"
    _apply(doc, "cancelled", 2)
    assert doc["status"] == us.REFUSE


def test_unknown_state_keeps_the_status_and_records_an_error() -> None:
    doc = us.new_document("tx_1", NOW)
    _apply(doc, "started")
    assert _apply(doc, "exploded", 1) is None
    assert doc["status"] == us.EN_COURS and "unknown" in doc["last_error"]


def test_index_names_sort_by_time() -> None:
    a, b = us.new_document("tx_b", NOW), us.new_document("tx_a", NOW + timedelta(seconds=1))
    assert us.pending_name(a) < us.pending_name(b)
    assert us.entry_transaction(us.pending_name(a)) == "tx_b"
    a["final_at"] = "2026-11-22T03:00:00Z"
    name = us.recheck_name(a, timedelta(hours=1))
    assert us.entry_due(name) == NOW + timedelta(hours=1)


def test_an_event_claim_fences_on_the_monotonic_clock() -> None:
    """shared.lock's rule for the event claim: the lease is timed on the monotonic clock from
    when the claim was written, and a write needs the margin (60 s, or half a short lease)."""
    now = [100.0]
    claim = us.EventClaim("claimed", "evt_1", 7, Lease("claim", 300.0, 100.0, lambda: now[0]))
    assert claim.remaining() == 300.0
    now[0] = 340.0  # exactly the margin (60 s) left: too little
    with pytest.raises(LeaseLost, match="before writing") as caught:
        claim.fence("writing")
    assert caught.value.code == "lease_lost" and not caught.value.terminal
    now[0] = 339.5
    claim.fence("writing")
    short = us.EventClaim("claimed", "evt_1", 7, Lease("claim", 30.0, 0.0, lambda: 15.0))
    assert short.lease is not None and short.lease.margin == 15.0
    with pytest.raises(LeaseLost):
        short.fence("writing")
    with pytest.raises(LeaseLost):
        us.EventClaim("busy", "evt_1").fence("writing")
    assert us.EventClaim("busy", "evt_1").remaining() == 0.0
