"""Universign transaction state: local statuses, the mapping, the per-transaction document in
the state bucket, the polling index and the webhook event markers.

Local status from the Universign transaction state (API v1 states are lower case)::

    draft                      -> EN_ATTENTE   (not sent yet; auto-cancelled after 7 days)
    started, paused            -> EN_COURS     (with signers; a pause keeps expiry counting)
    completed, archived        -> SIGNE        (every participant signed)
    cancelled                  -> ANNULE
    expired                    -> EXPIRE
    started/paused/cancelled/expired
        + a refusal            -> REFUSE

Universign has no "refused" transaction state: a refusal is an ``action.stalled`` event with a
refusal reason, and (field names unconfirmed) a participant whose state reads refused. Either
one, once seen, is kept in the document (``refusal``).

Priority (conflicts and transitions): SIGNE > REFUSE > ANNULE > EXPIRE > EN_COURS > EN_ATTENTE.
A status only ever moves up this order, so a final status (the top four) never regresses to
EN_COURS or EN_ATTENTE, and two observations that disagree (a webhook and a poll racing, a late
refusal event after completion) settle on the higher one: documents that are signed are signed
even if someone else refused later, and an explicit refusal says more than the cancellation
or expiry that usually follows it.

Objects in the state bucket (prefix ``universign/``):

- ``transactions/<tx>.json``: the document, written with ``if_generation_match`` (0 to create)
  and re-read and re-applied on 412, so concurrent writers never lose an update.
- ``index/pending/<tracked_at>_<tx>``: empty marker while the transaction needs polling (not
  final, or its archive or a notification is still owed). Names sort by tracking time, so the
  poll lists the oldest first, a page of names at a time, and never reads the documents of
  transactions it will not sync; a cursor object lets successive polls continue round-robin.
- ``index/recheck/<due_at>_<tx>``: once final, one more check is due at ``due_at`` (final + 1h).
  Names sort by due time, so the poll stops listing at the first one not yet due.
- ``events/<evt_id>``: webhook event markers (claimed with ``if_generation_match=0``).
- ``sync-log/<tx>/<at>_<nonce>.json``: the sync log, one small object per sync (type, time,
  previous and new status, what changed, success, error, response time), each created once
  and never rewritten, so keeping all of it costs the document no read-modify-write. The
  document keeps the last ``UNIVERSIGN_HISTORY_SIZE`` of them (``history``) for quick reads.

A delivery holds its event claim while it syncs. The claim only lasts its lease: a holder that
stalled past it (Cloud Run can keep running code after a timeout, a process can be paused) may
have been replaced by the redelivery by now, so before each document write it makes under the
claim it checks, on the monotonic clock from the moment the claim was written, that the lease
still has the safety margin of shared.lock left (``EventClaim.fence``), and stops with
``LeaseLost`` (transient: answered 503 and redelivered; the marker is left to expire) when it
has not. Marking the claim done needs no such check: that write carries the claim's
generation, so it fails once another delivery has taken the claim over.

Index markers are created before and removed after the document change they reflect, so a
crash leaves an extra marker (the poll checks the document and tidies it), never a missing one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from shared import clock
from shared.lock import Lease, LeaseLost

log = logging.getLogger(__name__)

EN_ATTENTE = "EN_ATTENTE"
EN_COURS = "EN_COURS"
SIGNE = "SIGNE"
REFUSE = "REFUSE"
EXPIRE = "EXPIRE"
ANNULE = "ANNULE"

PRIORITY: dict[str, int] = {
    EN_ATTENTE: 1,
    EN_COURS: 2,
    EXPIRE: 3,
    ANNULE: 4,
    REFUSE: 5,
    SIGNE: 6,
}
FINAL = frozenset({SIGNE, REFUSE, EXPIRE, ANNULE})

STATE_TO_STATUS: dict[str, str] = {
    "draft": EN_ATTENTE,
    "started": EN_COURS,
    "paused": EN_COURS,
    "completed": SIGNE,
    "archived": SIGNE,
    "cancelled": ANNULE,
    "canceled": ANNULE,  # the docs spell it the British way; accept both
    "expired": EXPIRE,
}

# Statuses a refusal overrides: it explains why the transaction stopped.
REFUSABLE = frozenset({EN_COURS, ANNULE, EXPIRE})

# The action.stalled reasons that are refusals [O]; other stalls are not.
REFUSAL_REASONS = frozenset(
    {"action_refusal", "signature_refusal", "consultation_refusal", "review_refusal"}
)

# Participant/action state values read as a refusal [U]: configurable in main.Settings.
DEFAULT_REFUSAL_STATES = frozenset({"refused", "declined", "stalled"})

TIMESTAMP_OF = {
    EN_COURS: "sent_at",
    SIGNE: "signed_at",
    REFUSE: "refused_at",
    EXPIRE: "expired_at",
    ANNULE: "cancelled_at",
}

TRANSACTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")

PREFIX = "universign/"
DOCS = PREFIX + "transactions/"
PENDING = PREFIX + "index/pending/"
RECHECK = PREFIX + "index/recheck/"
CURSOR = PREFIX + "index/poll-cursor.json"
EVENTS = PREFIX + "events/"
SYNC_LOG = PREFIX + "sync-log/"

T = TypeVar("T")


# --- mapping and transitions --------------------------------------------------------------


def map_state(universign_state: str, *, refused: bool) -> str | None:
    """The local status a Universign state (plus what we know of refusals) means; None when
    the state is unknown to us (left as it was, with an error recorded)."""
    status = STATE_TO_STATUS.get(universign_state.lower())
    if status is None:
        return None
    if refused and status in REFUSABLE:
        return REFUSE
    return status


def resolve(previous: str | None, candidate: str) -> str:
    """The status to keep when ``previous`` is stored and ``candidate`` was just observed."""
    if previous not in PRIORITY:
        return candidate
    assert previous is not None
    return candidate if PRIORITY[candidate] > PRIORITY[previous] else previous


def is_transition_allowed(previous: str, new: str) -> bool:
    return PRIORITY[new] >= PRIORITY[previous]


def is_final(status: str | None) -> bool:
    return status in FINAL


def find_refusal(
    transaction: dict[str, Any], refusal_states: Iterable[str] = DEFAULT_REFUSAL_STATES
) -> dict[str, str] | None:
    """A refusal visible in the transaction's participants (or their actions), if any.

    Field names are not confirmed [U]; this reads ``participants`` or ``signers``, each with
    ``state``/``status`` and an optional ``refusal_reason``/``reason``, and the same fields on
    entries of a participant's ``actions`` list.
    """
    states = {s.lower() for s in refusal_states}
    for group in ("participants", "signers"):
        people = transaction.get(group)
        if not isinstance(people, list):
            continue
        for person in people:
            if not isinstance(person, dict):
                continue
            actions = person.get("actions")
            entries = (
                [person] + [a for a in actions if isinstance(a, dict)]
                if isinstance(actions, list)
                else [person]
            )
            for entry in entries:
                state = str(entry.get("state") or entry.get("status") or "").lower()
                reason = str(entry.get("refusal_reason") or entry.get("reason") or "")
                if state in states or reason in REFUSAL_REASONS:
                    who = person.get("email") or person.get("id") or "a participant"
                    return {"reason": reason or state, "participant": str(who)}
    return None


# --- the document -------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    transaction_id: str
    previous: str | None
    status: str
    universign_state: str
    at: str
    # The tracking app's own document id (``track``), carried in every status-change event.
    reference: str | None = None
    # The app's code for the status (UNIVERSIGN_EXTERNAL_STATUS_MAP); only when a map is set.
    external_codes: Mapping[str, str | int] | None = None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "transaction_id": self.transaction_id,
            "previous": self.previous,
            "status": self.status,
            "universign_state": self.universign_state,
            "at": self.at,
            "reference": self.reference,
        }
        if self.external_codes is not None:
            message["external_status"] = self.external_codes.get(self.status)
        return message


def new_document(
    transaction_id: str, now: datetime, reference: str | None = None
) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "reference": reference,
        "tracked_at": _stamp(now),
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


def _stamp(value: datetime) -> str:
    """Microsecond RFC 3339 in UTC: ordering of observations needs more than seconds."""
    return value.astimezone(clock.now().tzinfo).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    return clock.parse_time(value) if isinstance(value, str) else None


def _people(transaction: dict[str, Any]) -> list[Any]:
    people = transaction.get("participants")
    if not isinstance(people, list):
        people = transaction.get("signers")
    return people if isinstance(people, list) else []


def _signers(transaction: dict[str, Any]) -> list[dict[str, Any]]:
    result = []
    for index, person in enumerate(_people(transaction)):
        if not isinstance(person, dict):
            continue
        result.append(
            {
                "order": index,
                "id": person.get("id"),
                "email": person.get("email"),
                "name": person.get("name"),
                "role": person.get("role"),
                "state": person.get("state") or person.get("status"),
                "viewed_at": person.get("viewed_at") or person.get("viewedAt"),
                "signed_at": person.get("signed_at") or person.get("signedAt"),
                "refused_at": person.get("refused_at") or person.get("refusedAt"),
            }
        )
    return result


def _documents(transaction: dict[str, Any]) -> list[dict[str, Any]]:
    docs = transaction.get("documents")
    result = []
    for doc in docs if isinstance(docs, list) else []:
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            result.append({"id": doc["id"], "name": str(doc.get("name") or doc["id"])})
    return result


def _first_url(items: Any) -> str | None:
    """The ``url`` of the first entry (seed 004's ``signers[0]["url"]``, ``documents[0]
    ["url"]``), when it is a web address. A signing URL lets whoever holds it sign: it stays
    in the document and never reaches a log line or an event."""
    first = items[0] if isinstance(items, list) and items else None
    url = first.get("url") if isinstance(first, dict) else None
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 2048:
        return url
    return None


def _history(doc: dict[str, Any], entry: dict[str, Any], size: int) -> None:
    history = doc.setdefault("history", [])
    history.append(entry)
    del history[: max(0, len(history) - size)]


# What a sync log entry's ``changes`` lists: the fields a reading can change for a reader.
WATCHED = (
    "status",
    "universign_state",
    "reference",
    "refusal",
    "signers",
    "documents",
    "signer_url",
    "document_url",
)


def apply_observation(
    doc: dict[str, Any],
    transaction: dict[str, Any],
    *,
    observed_at: datetime,
    now: datetime,
    source: str,
    refusal_hint: dict[str, str] | None,
    refusal_states: Iterable[str],
    history_size: int,
    reference: str | None = None,
    external_codes: Mapping[str, str | int] | None = None,
    response_ms: int | None = None,
) -> Change | None:
    """Fold one API reading into ``doc`` (in place); return the status change it caused.

    ``reference`` (given by ``track``) replaces the stored one; the history entry it appends
    is the sync log entry (universign_sync writes it out too)."""
    before = {name: copy.deepcopy(doc.get(name)) for name in WATCHED}
    if reference is not None:
        doc["reference"] = reference
    previous = doc.get("status")
    universign_state = str(transaction.get("state", "")).lower()
    if doc.get("refusal") is None:
        refusal = refusal_hint or find_refusal(transaction, refusal_states)
        if refusal is not None:
            doc["refusal"] = {**refusal, "seen_at": _stamp(now), "source": source}
    stored_at = _parse(doc.get("observed_at"))
    newer = stored_at is None or observed_at >= stored_at
    candidate = map_state(universign_state, refused=doc.get("refusal") is not None)
    doc["sync_attempts"] = int(doc.get("sync_attempts") or 0) + 1
    doc["last_sync_at"] = _stamp(now)
    if source.startswith("webhook"):
        doc["webhook_received"] = True
    if candidate is None:
        doc["last_error"] = f"unknown Universign state {universign_state[:40]!r}"
        entry = _entry(now, source, False, previous, previous, universign_state, doc["last_error"])
        _history(doc, _changed(entry, before, doc, response_ms), history_size)
        return None
    status = resolve(previous, candidate)
    if newer:
        # The raw data follows the newest reading; a slower racer's older one is not applied.
        doc["observed_at"] = _stamp(observed_at)
        doc["universign_state"] = universign_state
        doc["signers"] = _signers(transaction)
        documents = _documents(transaction)
        if documents or not doc.get("documents"):
            doc["documents"] = documents
        # Kept when a reading leaves them out: not every answer carries the links.
        doc["signer_url"] = _first_url(_people(transaction)) or doc.get("signer_url")
        doc["document_url"] = _first_url(transaction.get("documents")) or doc.get("document_url")
    doc["last_error"] = None
    doc["status"] = status
    entry = _entry(now, source, True, previous, status, universign_state, None)
    _history(doc, _changed(entry, before, doc, response_ms), history_size)
    if status == previous:
        return None
    stamp = clock.format_time(now)
    field = TIMESTAMP_OF.get(status)
    if field and not doc.get(field):
        doc[field] = stamp
    if status in FINAL:
        doc["final_at"] = doc.get("final_at") or stamp
        doc["final_checked"] = False
    if status == SIGNE and (doc.get("archive") or {}).get("status") != "done":
        doc["archive"] = {"status": "pending", "objects": {}, "last_error": None}
    change = Change(
        doc["transaction_id"],
        previous,
        status,
        universign_state,
        stamp,
        reference=doc.get("reference"),
        external_codes=external_codes,
    )
    doc.setdefault("outbox", []).append(
        {
            "id": f"{doc['transaction_id']}:{status}",
            "created_at": _stamp(now),
            "message": change.message(),
        }
    )
    return change


def record_failure(
    doc: dict[str, Any],
    *,
    now: datetime,
    source: str,
    error: str,
    history_size: int,
    response_ms: int | None = None,
) -> None:
    doc["sync_attempts"] = int(doc.get("sync_attempts") or 0) + 1
    doc["last_error"] = error[:500]
    status = doc.get("status")
    entry = _entry(now, source, False, status, status, doc.get("universign_state"), error[:200])
    _history(doc, _changed(entry, {}, {}, response_ms), history_size)


def _entry(
    now: datetime,
    source: str,
    ok: bool,
    previous: str | None,
    status: str | None,
    universign_state: str | None,
    error: str | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": _stamp(now), "source": source, "ok": ok}
    if previous != status:
        entry["previous"] = previous
    entry.update(status=status, universign_state=universign_state)
    if error:
        entry["error"] = error
    return entry


def _changed(
    entry: dict[str, Any],
    before: dict[str, Any],
    doc: dict[str, Any],
    response_ms: int | None,
) -> dict[str, Any]:
    """``entry`` with the watched fields this sync changed and Universign's response time."""
    entry["changes"] = [name for name in before if before[name] != doc.get(name)]
    if response_ms is not None:
        entry["response_ms"] = response_ms
    return entry


def sync_log_name(transaction_id: str, entry: dict[str, Any]) -> str:
    """``sync-log/<tx>/<at>_<nonce>.json``: names sort by time, and two syncs in the same
    microsecond still get an object each."""
    at = _parse(entry.get("at")) or clock.now()
    return f"{SYNC_LOG}{transaction_id}/{_compact(at)}_{secrets.token_hex(4)}.json"


def needs_polling(doc: dict[str, Any]) -> bool:
    """Work is left: not final yet, or the archive or a notification is still owed."""
    if not is_final(doc.get("status")):
        return True
    if (doc.get("archive") or {}).get("status") == "pending":
        return True
    return bool(doc.get("outbox"))


# --- names ---------------------------------------------------------------------------------


def _compact(value: datetime) -> str:
    return value.astimezone(clock.now().tzinfo).strftime("%Y%m%dT%H%M%S%fZ")


def pending_name(doc: dict[str, Any]) -> str:
    tracked = _parse(doc.get("tracked_at")) or clock.now()
    return f"{PENDING}{_compact(tracked)}_{doc['transaction_id']}"


def recheck_name(doc: dict[str, Any], delay: timedelta) -> str:
    final_at = _parse(doc.get("final_at")) or clock.now()
    return f"{RECHECK}{_compact(final_at + delay)}_{doc['transaction_id']}"


def entry_transaction(name: str) -> str:
    return name.rsplit("/", 1)[-1].split("_", 1)[1]


def entry_due(name: str) -> datetime | None:
    stamp = name.rsplit("/", 1)[-1].split("_", 1)[0]
    try:
        parsed = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=clock.now().tzinfo)


# --- storage -------------------------------------------------------------------------------


class Conflict(RuntimeError):
    """Another writer changed the document first (HTTP 412); re-read and re-apply."""


# A check run before each document write made under an event claim (EventClaim.fence).
Fence = Callable[[str], None]


@dataclass
class EventClaim:
    """One delivery's claim on an event marker: ``claimed`` (with the marker's generation and
    its lease, fenced by shared.lock's rule), ``done`` or ``busy``."""

    state: str
    event_id: str
    generation: int = 0
    lease: Lease | None = None

    def remaining(self) -> float:
        """Seconds of lease left by the monotonic clock; 0 unless claimed."""
        return self.lease.remaining() if self.lease is not None else 0.0

    def fence(self, step: str) -> None:
        """Raise ``LeaseLost`` unless the claim's lease still has its margin left for ``step``."""
        if self.lease is None:
            raise LeaseLost(
                f"event {self.event_id} is not claimed before {step}", code="lease_lost"
            )
        self.lease.fence(step)


class StateStore:
    """The documents, index markers and event markers in the state bucket."""

    def __init__(
        self,
        bucket: storage.Bucket,
        *,
        max_attempts: int = 12,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = bucket
        self.max_attempts = max_attempts
        self.monotonic = monotonic  # times event claim leases

    # documents

    def read(self, transaction_id: str) -> tuple[dict[str, Any] | None, int]:
        """The document and its generation; ``(None, 0)`` when it does not exist."""
        blob = self.bucket.blob(f"{DOCS}{transaction_id}.json")
        try:
            data = blob.download_as_bytes()
        except gexc.NotFound:
            return None, 0
        doc = json.loads(data)
        return (doc if isinstance(doc, dict) else None), int(blob.generation or 0)

    def write(self, doc: dict[str, Any], generation: int) -> int:
        blob = self.bucket.blob(f"{DOCS}{doc['transaction_id']}.json")
        try:
            # A small string is one simple upload: preconditions hold there (also on the fake).
            blob.upload_from_string(
                json.dumps(doc, sort_keys=True, separators=(",", ":")),
                content_type="application/json",
                if_generation_match=generation,
            )
        except gexc.PreconditionFailed:
            raise Conflict(doc["transaction_id"]) from None
        return int(blob.generation or 0)

    def update(
        self,
        transaction_id: str,
        change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]],
        *,
        fence: Fence | None = None,
    ) -> tuple[dict[str, Any] | None, int, T]:
        """Read, apply ``change`` to a copy, write with the generation read; again on 412.

        ``change`` returns the document to write (None: write nothing) and a result. It must be
        a pure function of the document it gets, since it may run several times. ``fence``,
        given under an event claim, runs before every write and stops it by raising.
        """
        for attempt in range(1, self.max_attempts + 1):
            current, generation = self.read(transaction_id)
            doc, result = change(copy.deepcopy(current))
            if doc is None:
                return current, generation, result
            if fence is not None:
                fence(f"writing the document of {transaction_id}")
            try:
                return doc, self.write(doc, generation), result
            except Conflict:
                # Jittered so two racers do not collide again in lockstep.
                time.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))  # noqa: S311
        raise Conflict(f"{transaction_id}: still conflicting after {self.max_attempts} tries")

    # index markers

    def ensure(self, name: str, bucket: storage.Bucket | None = None) -> bool:
        """Create an empty marker; False when it already existed."""
        try:
            (bucket or self.bucket).blob(name).upload_from_string(b"", if_generation_match=0)
        except gexc.PreconditionFailed:
            return False
        return True

    def remove(self, name: str) -> None:
        with contextlib.suppress(gexc.NotFound):
            self.bucket.blob(name).delete()

    def list_names(self, prefix: str, *, start: str | None, limit: int) -> list[str]:
        blobs = self.bucket.list_blobs(
            prefix=prefix, start_offset=start, max_results=limit, fields="items(name),nextPageToken"
        )
        return [b.name for b in blobs]

    # the sync log

    def append_log(self, transaction_id: str, entry: dict[str, Any]) -> str:
        """Store one sync log entry as its own object, created once (never overwritten)."""
        name = sync_log_name(transaction_id, entry)
        self.bucket.blob(name).upload_from_string(
            json.dumps({"transaction_id": transaction_id, **entry}, separators=(",", ":")),
            content_type="application/json",
            if_generation_match=0,
        )
        return name

    def read_log(self, transaction_id: str) -> list[dict[str, Any]]:
        """Every sync log entry of the transaction, oldest first."""
        entries = []
        for blob in self.bucket.list_blobs(prefix=f"{SYNC_LOG}{transaction_id}/"):
            with contextlib.suppress(gexc.NotFound, ValueError):
                entry = json.loads(blob.download_as_bytes())
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def read_cursor(self) -> str | None:
        try:
            data = json.loads(self.bucket.blob(CURSOR).download_as_bytes())
        except (gexc.NotFound, ValueError):
            return None
        after = data.get("after") if isinstance(data, dict) else None
        return after if isinstance(after, str) else None

    def write_cursor(self, after: str) -> None:
        # Last writer wins: two overlapping polls at worst visit a few transactions twice.
        self.bucket.blob(CURSOR).upload_from_string(
            json.dumps({"after": after}), content_type="application/json"
        )

    # webhook event markers

    def claim_event(self, event_id: str, *, lease: timedelta, now: datetime) -> EventClaim:
        """The claim: ``claimed`` (with its generation and lease timer), ``done`` or ``busy``.

        The marker is created with ``if_generation_match=0``, so one delivery of an event wins.
        A claim whose lease ran out (its holder crashed) is taken over, again with a
        generation precondition.
        """
        blob = self.bucket.blob(f"{EVENTS}{event_id}")
        record = json.dumps({"state": "processing", "expires_at": _stamp(now + lease)})

        def claimed(started: float) -> EventClaim:
            timer = Lease(
                f"claim on event {event_id}", lease.total_seconds(), started, self.monotonic
            )
            return EventClaim("claimed", event_id, int(blob.generation or 0), timer)

        # Read before each write: the lease counts from no later than the stored expiry does.
        started = self.monotonic()
        try:
            blob.upload_from_string(record, content_type="application/json", if_generation_match=0)
            return claimed(started)
        except gexc.PreconditionFailed:
            pass
        busy, done = EventClaim("busy", event_id), EventClaim("done", event_id)
        existing = self.bucket.get_blob(blob.name)
        if existing is None:
            return busy  # released a moment ago: let the sender retry
        try:
            held = json.loads(existing.download_as_bytes(if_generation_match=existing.generation))
        except (gexc.NotFound, gexc.PreconditionFailed):
            return busy
        except ValueError:
            held = None
        # Only a marker that says so is done. One that cannot be read says neither done nor
        # when a holder's lease ends: it is taken over like an expired claim, since counting it
        # done would acknowledge an event never synced, and busy would leave it busy for good
        # (a second sync of one event is harmless: the document write is idempotent).
        if not isinstance(held, dict):
            held = {}
        if held.get("state") == "done":
            return done
        expires = _parse(held.get("expires_at"))
        if expires is not None and expires > now:
            return busy
        started = self.monotonic()
        try:
            blob.upload_from_string(
                record, content_type="application/json", if_generation_match=existing.generation
            )
        except gexc.PreconditionFailed:
            return busy
        return claimed(started)

    def finish_event(self, event_id: str, generation: int, summary: dict[str, Any]) -> None:
        blob = self.bucket.blob(f"{EVENTS}{event_id}")
        try:
            blob.upload_from_string(
                json.dumps({"state": "done", **summary}),
                content_type="application/json",
                if_generation_match=generation,
            )
        except gexc.PreconditionFailed:
            log.warning("event marker %s changed hands before it was marked done", event_id)

    def release_event(self, event_id: str, generation: int) -> None:
        """Forget a claim that failed, so Universign's retry is processed."""
        with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):
            self.bucket.blob(f"{EVENTS}{event_id}").delete(if_generation_match=generation)
