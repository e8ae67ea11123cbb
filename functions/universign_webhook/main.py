"""Universign e-signature status, kept in sync from signed webhooks and a 5-minute poll.

Two entry points share this module:

``universign_webhook`` (HTTP, public). One delivery:
  1. Trigger: Universign POSTs an event. Refused before anything is processed: another method
     (405), a wrong URL token when one is configured (401), a body over the limit (413), a
     content type other than JSON (415), a missing or invalid signature (401), a body that
     is not a JSON object (400).
  2. Decide: the event id is claimed once (a marker object created with a generation
     precondition); a repeat answers 200 ``duplicate``. Events that do not concern a
     transaction (API keys, identity checks, chat) are acknowledged and ignored.
  3. Call Universign: the payload's state is never trusted; ``GET /v1/transactions/{id}``
     says what the transaction is. A transaction we did not track yet starts being tracked.
  4. Persist: the transaction document is updated with a generation precondition (re-read
     and re-applied on 412); a status change is published to ``universign-status-changes``;
     on SIGNE the signed documents are archived, each object created at most once.
  5. Report: one ``run_summary`` line. A failure we can recover from answers 503 and
     releases the event claim, so Universign's next retry (1 min, 5 min, 30 min, 2 h, ...)
     is processed; a refused API key also logs ``needs_reauth``.

``universign_poll`` (Pub/Sub ``universign-poll-trigger``, every 5 minutes): due final
re-checks first (one more look an hour after a transaction became final), then tracked
transactions that still need work, oldest first from where the previous poll stopped, at most
``UNIVERSIGN_POLL_BATCH`` in all; each synced as above. See universign_state for the mapping,
the priority rule and the index that spares the poll from reading every document.

Unconfirmed provider facts, kept configurable: the signature header name
(``UNIVERSIGN_SIGNATURE_HEADER``, default ``X-JWS-Signature`` then ``X-Universign-Signature``),
the event payload shape (the transaction id is looked for in several places), and the
participant fields that show a refusal (``UNIVERSIGN_REFUSAL_STATES``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc
from universign_api import NotFound, UniversignApi
from universign_jws import JwksVerifier, KeysUnavailable, SignatureError
from universign_state import (
    EVENT_ID,
    PENDING,
    RECHECK,
    REFUSAL_REASONS,
    SIGNE,
    TRANSACTION_ID,
    Change,
    Conflict,
    StateStore,
    apply_observation,
    entry_due,
    entry_transaction,
    needs_polling,
    new_document,
    pending_name,
    recheck_name,
    record_failure,
)

from shared import clock, events, logs
from shared.errors import ProviderError, TerminalError
from shared.http import HttpClient, RetryPolicy
from shared.lock import storage_client
from shared.redact import safe_url
from shared.secrets import SecretStore
from shared.settings import env_int, env_optional, env_str, project_id


@dataclass(frozen=True)
class Settings:
    project: str
    state_bucket: str
    archive_bucket: str
    api_url: str
    jwks_url: str
    api_key_secret: str
    webhook_token_secret: str | None
    signature_headers: tuple[str, ...]
    status_topic: str
    poll_batch: int
    final_recheck: timedelta
    max_body_bytes: int
    jwks_ttl_seconds: int
    jwks_min_refetch_seconds: int
    refusal_states: frozenset[str]
    history_size: int
    event_lease: timedelta
    outbox_retry_after: timedelta
    event_max_age: timedelta
    run_seconds: int
    webhook_seconds: int
    http_timeout_seconds: int
    http_attempts: int

    @classmethod
    def from_env(cls) -> Settings:
        api_url = env_str("UNIVERSIGN_API_URL", "https://api.universign.com").rstrip("/")
        headers = env_str("UNIVERSIGN_SIGNATURE_HEADER", "X-JWS-Signature,X-Universign-Signature")
        refusal = env_str("UNIVERSIGN_REFUSAL_STATES", "refused,declined,stalled")
        return cls(
            project=project_id(),
            state_bucket=env_str("STATE_BUCKET"),
            archive_bucket=env_str("ARCHIVE_BUCKET"),
            api_url=api_url,
            jwks_url=env_str("UNIVERSIGN_JWKS_URL", f"{api_url}/v1/webhooks/jwks.json"),
            api_key_secret=env_str("UNIVERSIGN_API_KEY_SECRET", "universign-api-key"),
            webhook_token_secret=env_optional("UNIVERSIGN_WEBHOOK_TOKEN_SECRET"),
            signature_headers=tuple(h.strip() for h in headers.split(",") if h.strip()),
            status_topic=env_str("UNIVERSIGN_STATUS_TOPIC", "universign-status-changes"),
            poll_batch=env_int("UNIVERSIGN_POLL_BATCH", 50, minimum=1, maximum=1000),
            final_recheck=timedelta(
                minutes=env_int("UNIVERSIGN_FINAL_RECHECK_MINUTES", 60, minimum=0)
            ),
            max_body_bytes=env_int("UNIVERSIGN_WEBHOOK_MAX_BYTES", 262_144, minimum=1024),
            jwks_ttl_seconds=env_int("UNIVERSIGN_JWKS_TTL_SECONDS", 3600, minimum=60),
            jwks_min_refetch_seconds=env_int("UNIVERSIGN_JWKS_MIN_REFETCH_SECONDS", 60, minimum=1),
            refusal_states=frozenset(s.strip().lower() for s in refusal.split(",") if s.strip()),
            history_size=env_int("UNIVERSIGN_HISTORY_SIZE", 20, minimum=1, maximum=500),
            event_lease=timedelta(
                seconds=env_int("UNIVERSIGN_EVENT_LEASE_SECONDS", 300, minimum=30)
            ),
            outbox_retry_after=timedelta(
                seconds=env_int("UNIVERSIGN_OUTBOX_RETRY_SECONDS", 120, minimum=0)
            ),
            event_max_age=timedelta(minutes=env_int("EVENT_MAX_AGE_MINUTES", 10, minimum=1)),
            run_seconds=env_int("RUN_DEADLINE_SECONDS", 240, minimum=10),
            webhook_seconds=env_int("WEBHOOK_DEADLINE_SECONDS", 20, minimum=1),
            http_timeout_seconds=env_int("HTTP_TIMEOUT_SECONDS", 15, minimum=1),
            http_attempts=env_int("HTTP_ATTEMPTS", 3, minimum=1, maximum=10),
        )


SETTINGS = Settings.from_env()
log = logs.setup(
    "universign", env_str("FUNCTION_TARGET", "universign_webhook"), project=SETTINGS.project
)


class _Clients:
    """Created on first use and kept for the life of the instance (the key set cache too)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secrets = SecretStore(settings.project)
        gcs = storage_client()
        self.state = StateStore(gcs.bucket(settings.state_bucket))
        self.archive = gcs.bucket(settings.archive_bucket)
        self.http = HttpClient(
            timeout=settings.http_timeout_seconds,
            retry=RetryPolicy(attempts=settings.http_attempts, base_delay=0.5, max_delay=5.0),
        )
        self.api = UniversignApi(settings.api_url, self.http, self._api_key)
        self.verifier = JwksVerifier(
            settings.jwks_url,
            self.http,
            ttl=settings.jwks_ttl_seconds,
            min_refetch=settings.jwks_min_refetch_seconds,
        )
        self._lock = threading.Lock()
        self._key: str | None = None
        self._token: tuple[str, float] | None = None
        self._publisher: Any = None

    def _api_key(self, refresh: bool) -> str:
        with self._lock:
            if self._key is None or refresh:
                self._key = self.secrets.read(self.settings.api_key_secret).value
            return self._key

    def webhook_token(self) -> str:
        """The URL token, re-read every 5 minutes so a rotation takes effect without a deploy."""
        assert self.settings.webhook_token_secret is not None
        with self._lock:
            if self._token is None or time.monotonic() - self._token[1] > 300:
                value = self.secrets.read(self.settings.webhook_token_secret).value
                self._token = (value, time.monotonic())
            return self._token[0]

    def publish(self, message: dict[str, Any]) -> None:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # first use only

        with self._lock:
            if self._publisher is None:
                self._publisher = pubsub_v1.PublisherClient()
        topic = self._publisher.topic_path(self.settings.project, self.settings.status_topic)
        future = self._publisher.publish(
            topic,
            json.dumps(message, separators=(",", ":")).encode("utf-8"),
            transaction_id=str(message["transaction_id"]),
            status=str(message["status"]),
        )
        future.result(timeout=30)


_clients: _Clients | None = None
_clients_lock = threading.Lock()


def clients() -> _Clients:
    global _clients
    with _clients_lock:
        if _clients is None:
            _clients = _Clients(SETTINGS)
        return _clients


# 1. Trigger (webhook) ---------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    result: str
    detail: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def response(self) -> flask.Response:
        body = {"result": self.result}
        if self.detail:
            body["detail"] = self.detail
        headers = {"Content-Type": "application/json"}
        if self.status == 503:
            headers["Retry-After"] = "60"
        return flask.Response(json.dumps(body), status=self.status, headers=headers)


@functions_framework.http
def universign_webhook(request: flask.Request) -> flask.Response:
    started = time.monotonic()
    try:
        reply = handle_webhook(
            SETTINGS, clients(), request, deadline=started + SETTINGS.webhook_seconds
        )
    except Exception as error:  # never leak details; the log has the type
        log.exception("webhook failed unexpectedly (%s)", type(error).__name__)
        reply = Reply(500, "internal_error")
    log.info(
        "Universign webhook: HTTP %d %s %s",
        reply.status,
        reply.result,
        reply.detail,
        extra=logs.fields(
            event="run_summary",
            provider="universign",
            entry_point="universign_webhook",
            http_status=reply.status,
            result=reply.result,
            duration_seconds=round(time.monotonic() - started, 3),
            **reply.fields,
        ),
    )
    return reply.response()


def handle_webhook(
    settings: Settings, c: _Clients, request: flask.Request, *, deadline: float
) -> Reply:
    if request.method != "POST":
        return Reply(405, "method_not_allowed", "POST only")
    if settings.webhook_token_secret:
        given = request.args.get("token", "")
        try:
            expected = c.webhook_token()
        except gexc.GoogleAPIError as error:
            return Reply(503, "unavailable", f"token secret unreadable ({type(error).__name__})")
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            return Reply(401, "unauthorized", "bad or missing token")
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return Reply(413, "too_large", f"body over {settings.max_body_bytes} bytes")
    body = request.stream.read(settings.max_body_bytes + 1)
    if len(body) > settings.max_body_bytes:
        return Reply(413, "too_large", f"body over {settings.max_body_bytes} bytes")
    if request.mimetype != "application/json":
        return Reply(415, "unsupported_media_type", "expected application/json")
    signature = next(
        (request.headers[h] for h in settings.signature_headers if request.headers.get(h)), None
    )
    try:
        kid = c.verifier.verify(signature, body)
    except SignatureError as error:
        log.warning("webhook refused: %s", error)
        return Reply(401, "bad_signature", str(error))
    except KeysUnavailable:
        return Reply(503, "unavailable", "Universign key set unavailable")
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Reply(400, "bad_json", "body is not JSON")
    if not isinstance(event, dict):
        return Reply(400, "bad_json", "body is not a JSON object")
    parsed = parse_event(event, body)
    fields: dict[str, Any] = {
        "event_id": parsed.event_id,
        "event_type": parsed.event_type,
        "transaction_id": parsed.transaction_id,
        "kid": kid,
    }
    if parsed.transaction_id is None:
        return Reply(200, "ignored", f"event {parsed.event_type[:60]} needs no sync", fields=fields)
    return _process_event(settings, c, parsed, fields, deadline)


# 2. Decide (webhook) ----------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    event_type: str
    transaction_id: str | None
    refusal: dict[str, str] | None


def parse_event(event: dict[str, Any], body: bytes) -> WebhookEvent:
    """The parts of an event we act on. Its shape is only known from third-party code, so the
    transaction id is looked for in every place it has been seen; without an ``evt_`` id the
    body's hash stands in for deduplication."""
    raw_id = event.get("id")
    event_id = raw_id if isinstance(raw_id, str) and EVENT_ID.match(raw_id) else None
    event_id = event_id or "sha256-" + hashlib.sha256(body).hexdigest()[:40]
    event_type = str(event.get("type") or event.get("event") or "")[:100]
    payload: dict[str, Any] = _object(event.get("payload"))
    obj: dict[str, Any] = _object(payload.get("object"))
    candidates: list[Any] = []
    if obj.get("object") == "transaction" or str(obj.get("id", "")).startswith("tx_"):
        candidates.append(obj.get("id"))
    for holder in (obj, payload, event):
        for key in ("transaction", "transaction_id", "transactionId"):
            value = holder.get(key)
            candidates.append(value.get("id") if isinstance(value, dict) else value)
    transaction_id = next(
        (v for v in candidates if isinstance(v, str) and TRANSACTION_ID.match(v)), None
    )
    if not (event_type.startswith("transaction.lifecycle.") or event_type.startswith("action.")):
        transaction_id = None  # API keys, identity checks, chat: nothing to sync
    refusal = None
    if event_type == "action.stalled":
        reason = next(
            (
                str(h.get(k))
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
            refusal = {"reason": reason, "participant": str(who)[:200], "event": event_id}
    return WebhookEvent(event_id, event_type, transaction_id, refusal)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _process_event(
    settings: Settings,
    c: _Clients,
    event: WebhookEvent,
    fields: dict[str, Any],
    deadline: float,
) -> Reply:
    assert event.transaction_id is not None
    try:
        claim, generation = c.state.claim_event(
            event.event_id, lease=settings.event_lease, now=clock.now()
        )
    except gexc.GoogleAPIError as error:
        return Reply(503, "unavailable", f"state bucket: {type(error).__name__}", fields=fields)
    if claim == "done":
        return Reply(200, "duplicate", fields=fields)
    if claim == "busy":
        return Reply(409, "in_progress", "this event is being processed", fields=fields)
    try:
        result = sync_transaction(
            settings,
            c,
            event.transaction_id,
            source=f"webhook:{event.event_type}",
            refusal_hint=event.refusal,
            deadline=deadline,
        )
    except TerminalError as error:
        c.state.release_event(event.event_id, generation)
        _needs_reauth(settings, error)
        return Reply(503, "api_key_refused", error.code, fields=fields)
    except (ProviderError, Conflict, gexc.GoogleAPIError) as error:
        c.state.release_event(event.event_id, generation)
        _config_problem(settings, error)
        log.warning(
            "webhook sync of %s failed (%s); Universign retries", event.transaction_id, error
        )
        return Reply(503, "retry_later", type(error).__name__, fields=fields)
    except BaseException:
        c.state.release_event(event.event_id, generation)
        raise
    fields.update(status=result.status, status_changed=result.change is not None)
    c.state.finish_event(
        event.event_id,
        generation,
        {
            "transaction_id": event.transaction_id,
            "type": event.event_type,
            "result": result.result,
            "at": clock.format_time(clock.now()),
        },
    )
    return Reply(200, result.result, fields=fields)


# 3. Call Universign and 4. persist (both entry points) ------------------------------------


@dataclass
class SyncResult:
    transaction_id: str
    result: str  # synced | not_found | untracked
    status: str | None = None
    change: Change | None = None
    published: int = 0
    archived: int = 0


def sync_transaction(
    settings: Settings,
    c: _Clients,
    transaction_id: str,
    *,
    source: str,
    refusal_hint: dict[str, str] | None = None,
    deadline: float | None = None,
) -> SyncResult:
    """Read the transaction from Universign and fold it into its document; then publish the
    status change, archive signed documents and keep the polling index right."""
    observed_at = clock.now()
    try:
        transaction = c.api.get_transaction(transaction_id, deadline=deadline)
    except NotFound:
        doc = _record_failure(settings, c, transaction_id, source, "Universign answered 404")
        if doc is None:
            log.warning("Universign does not know %s; not tracking it", transaction_id)
            return SyncResult(transaction_id, "untracked")
        return SyncResult(transaction_id, "not_found", doc.get("status"))
    except ProviderError as error:
        _record_failure(settings, c, transaction_id, source, str(error))
        raise

    tracked_at = clock.now()
    created_marker: list[str] = []

    def apply(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Change | None]:
        if doc is None:
            doc = new_document(transaction_id, tracked_at)
            name = pending_name(doc)
            if name not in created_marker:
                # Marker before document: a crash leaves an extra marker, never a missing one.
                c.state.ensure(name)
                created_marker.append(name)
        change = apply_observation(
            doc,
            transaction,
            observed_at=observed_at,
            now=clock.now(),
            source=source,
            refusal_hint=refusal_hint,
            refusal_states=settings.refusal_states,
            history_size=settings.history_size,
        )
        return doc, change

    doc, _, change = c.state.update(transaction_id, apply)
    assert doc is not None
    for name in created_marker:
        if name != pending_name(doc):
            c.state.remove(name)  # another writer created the document first
    if change is not None:
        log.info(
            "Universign %s: %s -> %s (%s)",
            transaction_id,
            change.previous,
            change.status,
            change.universign_state,
            extra=logs.fields(event="status_change", provider="universign", **change.message()),
        )
    result = SyncResult(transaction_id, "synced", doc.get("status"), change)
    _follow_up(settings, c, doc, result, source=source, deadline=deadline)
    return result


def _record_failure(
    settings: Settings, c: _Clients, transaction_id: str, source: str, error: str
) -> dict[str, Any] | None:
    def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        if doc is None:
            return None, None
        record_failure(
            doc, now=clock.now(), source=source, error=error, history_size=settings.history_size
        )
        return doc, None

    try:
        doc, _, _ = c.state.update(transaction_id, change)
    except (Conflict, gexc.GoogleAPIError) as failure:
        log.warning("could not record the failure on %s: %s", transaction_id, failure)
        return None
    return doc


def _follow_up(
    settings: Settings,
    c: _Clients,
    doc: dict[str, Any],
    result: SyncResult,
    *,
    source: str,
    deadline: float | None,
) -> None:
    """Status actions and bookkeeping after a sync: publish owed notifications, archive the
    signed documents, mark the final re-check done and move the index markers."""
    now = clock.now()
    own = f"{doc['transaction_id']}:{result.change.status}" if result.change else None
    published: list[str] = []
    for entry in doc.get("outbox") or []:
        created = clock.parse_time(entry.get("created_at"))
        stale = created is None or now - created >= settings.outbox_retry_after
        # Only the writer that made the change publishes it at once; anyone else only when it
        # looks abandoned, so a webhook and a poll racing do not both announce it.
        if entry.get("id") != own and not stale:
            continue
        try:
            c.publish(entry["message"])
        except Exception as error:  # noqa: BLE001 - kept in the outbox; the poll tries again
            log.warning(
                "could not publish the status change of %s: %s", doc["transaction_id"], error
            )
            continue
        published.append(str(entry.get("id")))
    result.published = len(published)

    archive_update: dict[str, Any] | None = None
    if doc.get("status") == SIGNE and (doc.get("archive") or {}).get("status") == "pending":
        archive_update = _archive(settings, c, doc, deadline)
        result.archived = sum(1 for o in archive_update["objects"].values() if o.get("new"))

    def finish(current: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
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
        if needs_polling(current):
            target = "pending"
        else:
            target = "none" if current.get("final_checked") else "recheck"
        current["index"] = target
        if json.dumps(current, sort_keys=True) == before:
            return None, target
        return current, target

    index_before = doc.get("index", "pending")
    desired = (
        "pending" if needs_polling(doc) else ("recheck" if not doc.get("final_checked") else "none")
    )
    if (
        not published
        and archive_update is None
        and source != RECHECK_SOURCE
        and desired == index_before
    ):
        return  # the common case, a sync that changed nothing: no second write
    if index_before != "pending" and needs_polling(doc):
        c.state.ensure(pending_name(doc))  # marker first, as always
    final, _, target = c.state.update(doc["transaction_id"], finish)
    if final is None or target is None or target == index_before:
        return
    # Markers follow the committed document; a crash here leaves the pending marker, which the
    # poll then tidies (see run_poll).
    if target == "recheck":
        c.state.ensure(recheck_name(final, settings.final_recheck))
        c.state.remove(pending_name(final))
    elif target == "none":
        c.state.remove(recheck_name(final, settings.final_recheck))
        c.state.remove(pending_name(final))


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


def _archive(
    settings: Settings, c: _Clients, doc: dict[str, Any], deadline: float | None
) -> dict[str, Any]:
    """Copy every signed document to the archive bucket. Each object is created with
    ``if_generation_match=0``: whoever comes second (a racing webhook or poll) gets 412 and
    keeps the first copy, so each document is archived exactly once."""
    transaction_id = doc["transaction_id"]
    objects: dict[str, dict[str, Any]] = {}
    error: str | None = None
    for document_id, name in archive_object_names(
        transaction_id, doc.get("documents") or []
    ).items():
        try:
            existing = c.archive.get_blob(name)
            if existing is not None:
                objects[document_id] = {"name": name, "generation": int(existing.generation)}
                continue
            download = c.api.download_document(transaction_id, document_id, deadline=deadline)
            blob = c.archive.blob(name)
            blob.metadata = {
                "universign-transaction": transaction_id,
                "universign-document": document_id,
            }
            try:
                blob.upload_from_string(
                    download.content, content_type=download.content_type, if_generation_match=0
                )
                objects[document_id] = {
                    "name": name,
                    "generation": int(blob.generation),
                    "new": True,
                }
            except gexc.PreconditionFailed:
                existing = c.archive.get_blob(name)
                if existing is not None:
                    objects[document_id] = {"name": name, "generation": int(existing.generation)}
        except (ProviderError, NotFound, gexc.GoogleAPIError) as failure:
            error = f"{document_id}: {type(failure).__name__}: {failure}"[:300]
            log.warning("archiving %s of %s failed: %s", document_id, transaction_id, error)
            break
    if not doc.get("documents"):
        log.warning("Universign listed no documents for signed transaction %s", transaction_id)
    done = error is None
    if done:
        log.info(
            "archived %d document(s) of %s to %s",
            len(objects),
            transaction_id,
            safe_url(f"gs://{settings.archive_bucket}/universign/{transaction_id}/"),
        )
    return {"status": "done" if done else "pending", "objects": objects, "last_error": error}


def _needs_reauth(settings: Settings, error: ProviderError) -> None:
    log.error(
        "Universign refused the API key (%s): a person must act. Create an API key in the "
        "Universign web app (Developer menu) and add it as a new version of secret %s; "
        "syncing resumes on its own, and Universign redelivers the webhooks it retries.",
        error.code,
        settings.api_key_secret,
        extra=logs.fields(event="needs_reauth", provider="universign", error_code=error.code),
    )


def _config_problem(settings: Settings, error: Exception) -> bool:
    """Log an ERROR that says what to fix when Google Cloud refused for a reason waiting will
    not cure (a secret without a version, a missing bucket, a permission); True if so."""
    if not isinstance(error, gexc.NotFound | gexc.FailedPrecondition | gexc.PermissionDenied):
        return False
    log.error(
        "Google Cloud refused a call (%s: %s). Check that secret %s has an enabled version and "
        "that buckets %s and %s exist and the function's service account may use them.",
        type(error).__name__,
        error,
        settings.api_key_secret,
        settings.state_bucket,
        settings.archive_bucket,
        extra=logs.fields(
            event="needs_config", provider="universign", error_code=type(error).__name__
        ),
    )
    return True


# Poll (second entry point) ---------------------------------------------------------------


@functions_framework.cloud_event
def universign_poll(cloud_event: CloudEvent) -> None:
    message = events.receive(cloud_event, max_age=SETTINGS.event_max_age)
    if message is None:
        return
    if message.data:
        log.warning("ignoring message %s: expected {}", message.message_id)
        return
    run_poll(SETTINGS, clients(), deadline=time.monotonic() + SETTINGS.run_seconds)


RECHECK_SOURCE = "poll:recheck"


@dataclass
class PollStats:
    selected: int = 0
    synced: int = 0
    rechecked: int = 0
    status_changes: int = 0
    published: int = 0
    archived_documents: int = 0
    not_found: int = 0
    untracked: int = 0
    repaired: int = 0
    failed: int = 0
    stopped: str | None = None
    order: list[str] = field(default_factory=list)


def select_work(settings: Settings, c: _Clients) -> list[tuple[str, str]]:
    """``(kind, marker name)`` for this run: due re-checks first, then pending transactions in
    marker order (oldest tracked first) starting after the previous poll's cursor and wrapping
    around, at most ``poll_batch`` in all. Only names are listed: no document is read here."""
    batch = settings.poll_batch
    now = clock.now()
    work: list[tuple[str, str]] = []
    for name in c.state.list_names(RECHECK, start=None, limit=batch):
        due = entry_due(name)
        if due is not None and due > now:
            break  # names sort by due time: the rest are later still
        work.append(("recheck", name))
    remaining = batch - len(work)
    if remaining <= 0:
        return work
    cursor = c.state.read_cursor()
    first = [
        n for n in c.state.list_names(PENDING, start=cursor, limit=remaining + 1) if n != cursor
    ]
    names = first[:remaining]
    if cursor is not None and len(names) < remaining:
        wrapped = c.state.list_names(PENDING, start=None, limit=remaining - len(names))
        names += [n for n in wrapped if n <= cursor and n not in names]
    work += [("pending", n) for n in names]
    return work


def run_poll(settings: Settings, c: _Clients, *, deadline: float) -> PollStats:
    started = time.monotonic()
    stats = PollStats()
    work = select_work(settings, c)
    stats.selected = len(work)
    seen: set[str] = set()
    last_pending: str | None = None
    consecutive_failures = 0
    for kind, marker in work:
        if time.monotonic() > deadline:
            stats.stopped = "deadline"
            break
        transaction_id = entry_transaction(marker)
        if kind == "pending":
            last_pending = marker
        if transaction_id in seen:
            continue
        seen.add(transaction_id)
        try:
            _poll_one(settings, c, kind, marker, transaction_id, stats, deadline)
            consecutive_failures = 0
        except TerminalError as error:
            _needs_reauth(settings, error)
            stats.failed += 1
            stats.stopped = "api_key_refused"
            break
        except (ProviderError, Conflict, gexc.GoogleAPIError) as error:
            if _config_problem(settings, error):
                stats.failed += 1
                stats.stopped = "configuration"
                break
            stats.failed += 1
            consecutive_failures += 1
            log.warning("poll of %s failed: %s", transaction_id, error)
            if consecutive_failures >= 3:
                stats.stopped = "api_unavailable"
                break
    if last_pending is not None:
        c.state.write_cursor(last_pending)
    report_poll(stats, time.monotonic() - started)
    return stats


def _poll_one(
    settings: Settings,
    c: _Clients,
    kind: str,
    marker: str,
    transaction_id: str,
    stats: PollStats,
    deadline: float,
) -> None:
    doc, _ = c.state.read(transaction_id)
    if kind == "recheck":
        if doc is None or doc.get("final_checked"):
            c.state.remove(marker)
            stats.repaired += 1
            return
    elif doc is not None and (marker != pending_name(doc) or not needs_polling(doc)):
        # A marker left by a crash or a lost creation race: tidy it, no API call needed.
        if marker == pending_name(doc) and not doc.get("final_checked"):
            c.state.ensure(recheck_name(doc, settings.final_recheck))
        c.state.remove(marker)
        stats.repaired += 1
        return
    stats.order.append(transaction_id)
    source = RECHECK_SOURCE if kind == "recheck" else "poll"
    result = sync_transaction(settings, c, transaction_id, source=source, deadline=deadline)
    if result.result == "untracked":
        c.state.remove(marker)
        stats.untracked += 1
        return
    if result.result == "not_found":
        stats.not_found += 1
    elif kind == "recheck":
        stats.rechecked += 1
        c.state.remove(marker)
    else:
        stats.synced += 1
    stats.status_changes += result.change is not None
    stats.published += result.published
    stats.archived_documents += result.archived


# 5. Report ---------------------------------------------------------------------------------


def report_poll(stats: PollStats, seconds: float) -> None:
    log.info(
        "Universign poll: %d selected, %d synced, %d re-checked, %d status change(s), %d failed",
        stats.selected,
        stats.synced,
        stats.rechecked,
        stats.status_changes,
        stats.failed,
        extra=logs.fields(
            event="run_summary",
            provider="universign",
            entry_point="universign_poll",
            selected=stats.selected,
            synced=stats.synced,
            rechecked=stats.rechecked,
            status_changes=stats.status_changes,
            published=stats.published,
            archived_documents=stats.archived_documents,
            not_found=stats.not_found,
            untracked=stats.untracked,
            repaired=stats.repaired,
            failed=stats.failed,
            stopped=stats.stopped,
            duration_seconds=round(seconds, 3),
        ),
    )
