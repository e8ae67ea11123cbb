"""The decisions both entry points take, as pure functions: no I/O, no environment, no
functions-framework, so each one is tested on its own.

- The poll's trigger (``parse_poll_trigger``): the scheduler's ``{}`` starts a poll; an app's
  ``{"track": [{"transaction_id": ..., "reference": ...}]}`` starts tracking transactions.
- A delivery: the HTTP answer (``Reply``), the checks that refuse a request before anything
  is processed, and what an event concerns (``parse_event``): the transaction to sync, and a
  refusal the event reports.
- After a sync (universign_sync): which owed notifications to publish now, whether the signed
  documents are owed to the archive and under which object names, the document's last
  bookkeeping write and the polling index it belongs in.

The status mapping and the priority rule (a status only ever moves up) are universign_state's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from universign_state import EVENT_ID, REFUSAL_REASONS, SIGNE, TRANSACTION_ID, needs_polling

from shared import clock, events
from shared.safe_json import UntrustedJsonError, loads_untrusted

# The history source of the poll's one final re-check; the sync marks it done when it sees it.
RECHECK_SOURCE = "poll:recheck"


# --- the poll's trigger -------------------------------------------------------------------------


# Most transactions one track message may carry: a run syncs each one before it ends.
MAX_TRACK = 100
MAX_REFERENCE_CHARS = 200
TRACK_EXPECTED = '{} or {"track": [{"transaction_id": "...", "reference": "..."}]}'


@dataclass(frozen=True)
class Track:
    transaction_id: str
    reference: str | None = None


def parse_poll_trigger(data: dict[str, Any]) -> list[Track] | None:
    """None for the scheduler's ``{}`` (a poll); the transactions to track for ``{"track":
    [...]}``. Anything else is refused (logged and acknowledged, never retried)."""
    if not data:
        return None
    events.refuse_unknown_fields(data, ("track",), TRACK_EXPECTED)
    entries = data["track"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_TRACK:
        raise events.BadMessage(f"track must be a list of 1 to {MAX_TRACK} transactions")
    tracks: list[Track] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise events.BadMessage(f"track[{index}] is not an object")
        events.refuse_unknown_fields(entry, ("transaction_id", "reference"), TRACK_EXPECTED)
        transaction_id = entry.get("transaction_id")
        if not isinstance(transaction_id, str) or not TRANSACTION_ID.fullmatch(transaction_id):
            raise events.BadMessage(f"track[{index}].transaction_id is not a transaction id")
        reference = entry.get("reference")
        if reference is not None and not valid_reference(reference):
            raise events.BadMessage(
                f"track[{index}].reference must be printable text of 1 to "
                f"{MAX_REFERENCE_CHARS} characters"
            )
        tracks.append(Track(transaction_id, reference))
    return tracks


def valid_reference(value: Any) -> bool:
    """The app's own document id: printable text, short enough for a log line and an
    attribute, and encodable (it travels in every status-change event)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REFERENCE_CHARS:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


# --- the HTTP answer ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    result: str
    detail: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    # Seconds a 503 asks the sender to wait.
    retry_after: int = 60

    def body(self) -> str:
        body = {"result": self.result}
        if self.detail:
            body["detail"] = self.detail
        return json.dumps(body)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.status == 503:
            headers["Retry-After"] = str(self.retry_after)
        return headers


# --- checks before anything is processed, in the order universign_delivery makes them ---------


class Headers(Protocol):
    """What is read of the request headers (werkzeug's are case-insensitive)."""

    def get(self, key: str) -> str | None: ...

    def __getitem__(self, key: str) -> str: ...


def refuse_method(method: str) -> Reply | None:
    if method != "POST":
        return Reply(405, "method_not_allowed", "POST only")
    return None


def token_matches(given: str, expected: str) -> bool:
    # Constant time: the comparison must not tell a caller how much of the token was right.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def refuse_size(length: int | None, max_bytes: int) -> Reply | None:
    """Checked on the declared length before reading, then on what was read (at most one byte
    over the limit), since a chunked request declares none."""
    if length is not None and length > max_bytes:
        return Reply(413, "too_large", f"body over {max_bytes} bytes")
    return None


def refuse_media_type(mimetype: str) -> Reply | None:
    if mimetype != "application/json":
        return Reply(415, "unsupported_media_type", "expected application/json")
    return None


def signature_from(headers: Headers, names: Iterable[str]) -> str | None:
    """The first configured signature header that is present and not empty."""
    return next((headers[h] for h in names if headers.get(h)), None)


def decode_event(body: bytes) -> dict[str, Any] | Reply:
    """The verified body as a JSON object, or the 400 that refuses it."""
    try:
        event = loads_untrusted(body)
    except UntrustedJsonError as refused:
        return Reply(400, "bad_json", f"body is not usable JSON: {refused}")
    if not isinstance(event, dict):
        return Reply(400, "bad_json", "body is not a JSON object")
    return event


# --- what an event concerns ----------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    event_type: str
    transaction_id: str | None
    refusal: dict[str, str] | None
    # Why an event with no transaction to sync is ignored (logged at WARNING, counted).
    ignored: str | None = None


def is_flat(event: dict[str, Any]) -> bool:
    """Seed 004's shape, ``{"event": "...", "transaction_id": "..."}``: no ``type``, no
    ``payload``. Whatever its event name says, the transaction is re-read, so any name
    will do."""
    return "type" not in event and "payload" not in event and "event" in event


def parse_event(event: dict[str, Any], body: bytes) -> WebhookEvent:
    """The parts of an event we act on. Its shape is only known from third-party code, so the
    transaction id is looked for in every place it has been seen; without an ``evt_`` id the
    body's hash stands in for deduplication. Events of other types (API keys, identity
    checks, chat) and events naming no usable transaction come back with ``ignored`` set."""
    raw_id = event.get("id")
    # fullmatch: ``$`` alone lets a final newline through, into object names and URLs.
    event_id = raw_id if isinstance(raw_id, str) and EVENT_ID.fullmatch(raw_id) else None
    event_id = event_id or "sha256-" + hashlib.sha256(body).hexdigest()[:40]
    event_type = _text(event.get("type") or event.get("event"))[:100]
    payload: dict[str, Any] = _object(event.get("payload"))
    obj: dict[str, Any] = _object(payload.get("object"))
    candidates: list[Any] = []
    if obj.get("object") == "transaction" or _text(obj.get("id")).startswith("tx_"):
        candidates.append(obj.get("id"))
    for holder in (obj, payload, event):
        for key in ("transaction", "transaction_id", "transactionId"):
            value = holder.get(key)
            candidates.append(value.get("id") if isinstance(value, dict) else value)
    transaction_id = next(
        (v for v in candidates if isinstance(v, str) and TRANSACTION_ID.fullmatch(v)), None
    )
    handled = (
        event_type.startswith("transaction.lifecycle.")
        or event_type.startswith("action.")
        or is_flat(event)
    )
    ignored = None
    if not handled:
        transaction_id = None  # API keys, identity checks, chat: nothing to sync
        ignored = "type_not_handled"
    elif transaction_id is None:
        ignored = "no_transaction_id"
    refusal = None
    if event_type == "action.stalled":
        reason = next(
            (
                _text(h.get(k))
                for h in (obj, payload)
                for k in ("reason", "stalled_reason", "refusal_reason")
                if h.get(k)
            ),
            "",
        )
        if reason in REFUSAL_REASONS:
            who = obj.get("participant") or obj.get("email") or "a participant"
            if isinstance(who, dict):
                who = who.get("email") or who.get("id") or "a participant"
            participant = _text(who)[:200] or "a participant"
            refusal = {"reason": reason, "participant": participant, "event": event_id}
    return WebhookEvent(event_id, event_type, transaction_id, refusal, ignored)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    """A scalar of the event as text; a list or object is no text ("", and str() of one nested
    deep enough would recurse past the interpreter's limit). What UTF-8 cannot encode (a lone
    surrogate, which a JSON escape allows) is replaced: this text reaches log lines, and one
    such character loses the whole line."""
    if isinstance(value, list | dict) or value is None:
        return ""
    return str(value).encode("utf-8", "replace").decode("utf-8")


# --- the work message: the webhook's verified event, for universign_sync ------------------------

WORK_FIELDS = ("event_id", "event_type", "transaction_id", "refusal", "received_at")
WORK_EXPECTED = (
    '{"event_id": "...", "event_type": "...", "transaction_id": "...", "refusal": null or '
    '{"reason": "...", "participant": "...", "event": "..."}, "received_at": "<RFC 3339>"}'
)
MAX_EVENT_TYPE_CHARS = 100
MAX_PARTICIPANT_CHARS = 200


def work_message(event: WebhookEvent, received_at: datetime) -> dict[str, Any]:
    """What the webhook publishes on the work topic: the facts of a verified event the worker
    acts on, nothing else (never the body, never a credential). Only events with a
    transaction are queued."""
    assert event.transaction_id is not None
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "transaction_id": event.transaction_id,
        "refusal": event.refusal,
        # To the millisecond: the worker logs how long the event waited in the queue.
        "received_at": received_at.astimezone(UTC).isoformat(timespec="milliseconds"),
    }


@dataclass(frozen=True)
class WorkItem:
    event: WebhookEvent
    # When the webhook received the event: the worker logs how long it waited.
    received_at: datetime


def parse_work_message(data: dict[str, Any]) -> WorkItem:
    """The event a work message carries, checked as strictly as the webhook built it. Anything
    else raises ``events.BadMessage``: logged and acknowledged, never retried (a retry would
    not make it valid)."""
    events.refuse_unknown_fields(data, WORK_FIELDS, WORK_EXPECTED)
    missing = [name for name in WORK_FIELDS if name not in data]
    if missing:
        raise events.BadMessage(f"missing fields {missing}; expected {WORK_EXPECTED}")
    event_id = data.get("event_id")
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise events.BadMessage("event_id is not an event id")
    transaction_id = data.get("transaction_id")
    if not isinstance(transaction_id, str) or not TRANSACTION_ID.fullmatch(transaction_id):
        raise events.BadMessage("transaction_id is not a transaction id")
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or len(event_type) > MAX_EVENT_TYPE_CHARS:
        raise events.BadMessage(f"event_type must be text of at most {MAX_EVENT_TYPE_CHARS}")
    raw_received = data.get("received_at")
    received_at = clock.parse_time(raw_received) if isinstance(raw_received, str) else None
    if received_at is None:
        raise events.BadMessage("received_at is not an RFC 3339 time")
    refusal = data.get("refusal")
    if refusal is not None and (
        not isinstance(refusal, dict)
        or set(refusal) != {"reason", "participant", "event"}
        or refusal["reason"] not in REFUSAL_REASONS
        or not all(
            isinstance(v, str) and 0 < len(v) <= MAX_PARTICIPANT_CHARS for v in refusal.values()
        )
    ):
        raise events.BadMessage("refusal must be null or {reason, participant, event}")
    return WorkItem(WebhookEvent(event_id, _text(event_type), transaction_id, refusal), received_at)


# --- after a sync --------------------------------------------------------------------------------


def publish_now(
    entry: dict[str, Any], *, own: str | None, now: datetime, retry_after: timedelta
) -> bool:
    """Only the writer that made the change publishes it at once; anyone else only when it
    looks abandoned, so a webhook and a poll racing do not both announce it."""
    created = clock.parse_time(entry.get("created_at"))
    stale = created is None or now - created >= retry_after
    return entry.get("id") == own or stale


def archive_owed(doc: dict[str, Any]) -> bool:
    return doc.get("status") == SIGNE and (doc.get("archive") or {}).get("status") == "pending"


def archive_object_names(transaction_id: str, documents: list[dict[str, Any]]) -> dict[str, str]:
    """``universign/<tx>/<document name>`` per document id; names made safe and unique."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for doc in documents:
        clean = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in doc["name"])
        clean = clean.strip().lstrip(".")[:200] or doc["id"]
        if clean in used:
            clean = f"{doc['id']}-{clean}"
        used.add(clean)
        names[doc["id"]] = f"universign/{transaction_id}/{clean}"
    return names


def index_of(doc: dict[str, Any]) -> str:
    """The polling index the document belongs in: ``pending`` while work is left, then
    ``recheck`` until the final re-check is done, then ``none``."""
    if needs_polling(doc):
        return "pending"
    return "none" if doc.get("final_checked") else "recheck"


def second_write_needed(
    doc: dict[str, Any], *, published: bool, archiving: bool, source: str
) -> bool:
    """False in the common case, a sync that changed nothing: then no second write."""
    return (
        published
        or archiving
        or source == RECHECK_SOURCE
        or index_of(doc) != doc.get("index", "pending")
    )


def finish_document(
    current: dict[str, Any] | None,
    *,
    published: list[str],
    archive_update: dict[str, Any] | None,
    source: str,
) -> tuple[dict[str, Any] | None, str | None]:
    """The bookkeeping write after a sync, applied to the current document: drop the published
    notifications, record the archive (unless another writer finished it), mark the final
    re-check done and set the index. ``(None, index)`` when nothing changed, so nothing is
    written."""
    if current is None:
        return None, None
    before = json.dumps(current, sort_keys=True)
    current["outbox"] = [e for e in current.get("outbox") or [] if e.get("id") not in published]
    if archive_update is not None and (current.get("archive") or {}).get("status") != "done":
        objects = {
            k: {kk: vv for kk, vv in v.items() if kk != "new"}
            for k, v in archive_update["objects"].items()
        }
        current["archive"] = {**archive_update, "objects": objects}
    if source == RECHECK_SOURCE:
        current["final_checked"] = True
    target = index_of(current)
    current["index"] = target
    if json.dumps(current, sort_keys=True) == before:
        return None, target
    return current, target
