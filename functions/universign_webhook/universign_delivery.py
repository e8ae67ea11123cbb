"""One webhook delivery (main.universign_webhook), up to the Reply main writes and logs, and the
work it queues (main.universign_sync), up to the outcome main logs.

The webhook: refused before anything is processed, in this order: another method (405), a
wrong URL token when one is configured (401), a body over the limit (413), a content type
other than JSON (415), a missing or invalid signature (401, universign_jws; 503
``key_cooldown`` for a key id that could not be checked yet), a body that is not a JSON
object (400); the checks themselves are universign_plan's. An event with no transaction to
sync is acknowledged with a WARNING ``event_ignored`` line naming its type. Any other event is
published to the work topic (``universign-sync``) and answered 202 ``queued``; if Pub/Sub does
not confirm the publish in time, 503 ``retry_later``, so Universign delivers it again. Nothing
is lost either way, and a duplicate publish costs one acknowledged duplicate.

The worker (``process_work``): the event id is claimed once in the state bucket (a repeat is
acknowledged as ``duplicate``; one being processed elsewhere is retried), its transaction synced
(universign_sync, every document write fenced by the claim's lease), and the claim finished,
or released on a failure so that Pub/Sub's redelivery is processed; a holder whose lease ran
short leaves the claim to expire instead, since the redelivery may hold it by then.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from universign_alerts import config_problem, needs_reauth
from universign_jws import KeyCooldown, KeysUnavailable, SignatureError
from universign_plan import (
    Reply,
    WebhookEvent,
    decode_event,
    parse_event,
    refuse_media_type,
    refuse_method,
    refuse_size,
    signature_from,
    token_matches,
    work_message,
)
from universign_state import Conflict
from universign_sync import sync_transaction

from shared import clock, logs
from shared.errors import ProviderError, TerminalError
from shared.lock import LeaseLost

if TYPE_CHECKING:
    # Types only: main imports this module, and its Settings read the environment.
    import flask
    from main import Clients, Settings

# Lines go to main.py's logger, which logs.setup names after the entry point being served
# (settings.entry_point), so every line keeps its "logger" whichever module writes it.


def handle_webhook(
    settings: Settings, clients: Clients, request: flask.Request, *, deadline: float
) -> Reply:
    log = logging.getLogger(settings.entry_point)
    if (refused := refuse_method(request.method)) is not None:
        return refused
    if settings.webhook_token_secret:
        given = request.args.get("token", "")
        try:
            expected = clients.webhook_token()
        except gexc.GoogleAPIError as error:
            return Reply(503, "unavailable", f"token secret unreadable ({type(error).__name__})")
        if not token_matches(given, expected):
            return Reply(401, "unauthorized", "bad or missing token")
    if (refused := refuse_size(request.content_length, settings.max_body_bytes)) is not None:
        return refused
    body = request.stream.read(settings.max_body_bytes + 1)
    if (refused := refuse_size(len(body), settings.max_body_bytes)) is not None:
        return refused
    if (refused := refuse_media_type(request.mimetype)) is not None:
        return refused
    signature = signature_from(request.headers, settings.signature_headers)
    try:
        kid = clients.verifier.verify(signature, body)
    except SignatureError as error:
        log.warning("webhook refused: %s", error)
        return Reply(401, "bad_signature", str(error))
    except KeyCooldown as cooling:
        # A key id nobody could check yet (perhaps a key Universign has just published): not
        # refused, retried once the key set may be fetched again. Its own reason, so it does
        # not feed the bad-signature alert.
        return Reply(
            503, "key_cooldown", "unknown key id, not checked yet", retry_after=cooling.retry_after
        )
    except KeysUnavailable:
        return Reply(503, "unavailable", "Universign key set unavailable")
    event = decode_event(body)
    if isinstance(event, Reply):
        return event
    parsed = parse_event(event, body)
    fields: dict[str, Any] = {
        "event_id": parsed.event_id,
        "event_type": parsed.event_type,
        "transaction_id": parsed.transaction_id,
        "kid": kid,
    }
    if parsed.transaction_id is None:
        # Acknowledged (a retry would not make it understood) but never silently: one WARNING
        # line per event, counted by keepalive_universign_events_ignored.
        log.warning(
            "Universign event %s of type %r acknowledged without a sync (%s)",
            parsed.event_id,
            parsed.event_type,
            parsed.ignored,
            extra=logs.fields(
                event="event_ignored",
                provider="universign",
                event_id=parsed.event_id,
                event_type=parsed.event_type,
                reason=parsed.ignored,
            ),
        )
        return Reply(200, "ignored", f"event {parsed.event_type[:60]} needs no sync", fields=fields)
    # Bounded well inside the request's deadline: a publish Pub/Sub has not confirmed by then
    # answers 503, and Universign's retry publishes again (the worker dedupes).
    timeout = min(settings.publish_timeout_seconds, max(0.1, deadline - time.monotonic()))
    try:
        clients.queue_sync(work_message(parsed, clock.now()), timeout=timeout)
    except Exception as error:  # noqa: BLE001 - Pub/Sub refused or slow: a 503 makes Universign retry
        log.warning(
            "queueing event %s failed (%s); Universign retries",
            parsed.event_id,
            type(error).__name__,
        )
        return Reply(503, "retry_later", f"queue: {type(error).__name__}", fields=fields)
    return Reply(202, "queued", fields=fields)


@dataclass
class WorkOutcome:
    """How one work message ended: ``retry`` asks Pub/Sub to redeliver it (main raises)."""

    result: str
    retry: bool = False
    detail: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


def process_work(
    settings: Settings, clients: Clients, event: WebhookEvent, *, deadline: float
) -> WorkOutcome:
    log = logging.getLogger(settings.entry_point)
    assert event.transaction_id is not None
    fields: dict[str, Any] = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "transaction_id": event.transaction_id,
    }
    try:
        claim = clients.state.claim_event(
            event.event_id, lease=settings.event_lease, now=clock.now()
        )
    except gexc.GoogleAPIError as error:
        config_problem(settings, error)
        return WorkOutcome("unavailable", True, f"state bucket: {type(error).__name__}", fields)
    if claim.state == "done":
        return WorkOutcome("duplicate", fields=fields)
    if claim.state == "busy":
        # Another instance holds it; if that one fails, this redelivery does the work.
        return WorkOutcome("in_progress", True, "this event is being processed", fields)
    generation = claim.generation
    try:
        result = sync_transaction(
            settings,
            clients,
            event.transaction_id,
            source=f"webhook:{event.event_type}",
            refusal_hint=event.refusal,
            deadline=deadline,
            # Every document write checks the claim's lease first (LeaseLost, transient).
            fence=claim.fence,
        )
    except LeaseLost:
        # The redelivery may hold the claim by now, so this holder leaves the marker alone too
        # (it expires within the margin; the precondition on a release would protect a new
        # holder on Cloud Storage, but not on every stand-in for it).
        return WorkOutcome("retry_later", True, "LeaseLost", fields)
    except TerminalError as error:
        # Retried all the same (then dead-lettered, kept and replayable): the key is fixed by a
        # person, and the events waiting for it must still be synced once it is.
        clients.state.release_event(event.event_id, generation)
        needs_reauth(settings, error)
        return WorkOutcome("api_key_refused", True, error.code, fields)
    except (ProviderError, Conflict, gexc.GoogleAPIError) as error:
        clients.state.release_event(event.event_id, generation)
        config_problem(settings, error)
        log.warning("sync of %s failed (%s); Pub/Sub redelivers", event.transaction_id, error)
        return WorkOutcome("retry_later", True, type(error).__name__, fields)
    except BaseException:
        clients.state.release_event(event.event_id, generation)
        raise
    fields.update(status=result.status, status_changed=result.change is not None)
    clients.state.finish_event(
        event.event_id,
        generation,
        {
            "transaction_id": event.transaction_id,
            "type": event.event_type,
            "result": result.result,
            "at": clock.format_time(clock.now()),
        },
    )
    return WorkOutcome(result.result, fields=fields)
