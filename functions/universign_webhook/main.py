"""Universign e-signature status, kept in sync from signed webhooks and a 5-minute poll.

This file holds the settings, the clients an instance keeps and the three entry points; each
step below names the module that does it.

``universign_webhook`` (HTTP, public). One delivery, acknowledged fast:
  1. Trigger: Universign POSTs an event. Refused before anything is processed: another method
     (405), a wrong URL token when one is configured (401), a body over the limit (413), a
     content type other than JSON (415), a missing or invalid signature (401,
     universign_jws; a key id that could not be checked yet answers 503 ``key_cooldown``
     instead), a body that is not a JSON object (400). universign_delivery runs the checks,
     which universign_plan decides.
  2. Queue: events that do not concern a transaction (API keys, identity checks, chat) are
     answered 200 ``ignored`` (universign_plan.parse_event). Any other is published to the
     work topic ``universign-sync`` (UNIVERSIGN_SYNC_TOPIC; the verified facts only: event id,
     type, transaction id, refusal hint, time received) and answered 202 ``queued``. A publish
     Pub/Sub does not confirm within UNIVERSIGN_PUBLISH_TIMEOUT_SECONDS answers 503
     ``retry_later``, so Universign retries (1 min, 5 min, 30 min, 2 h, ...): nothing is lost.
  3. Report: one ``webhook_request`` line (status, result, duration), written here; a request
     is not a run, so it never counts as one in the metrics.

``universign_sync`` (Pub/Sub ``universign-sync``, retried with backoff, then dead-lettered to
``universign-sync-dead-letter``). One work message, what the webhook used to do inline:
  1. Decide: the message is parsed strictly (universign_plan.parse_work_message; a bad one is
     logged and acknowledged). It is never dropped for its age: a redelivery hours later is
     still an event to sync. The event id is claimed once (a marker object created with a
     generation precondition, universign_state); a repeat is acknowledged as ``duplicate``.
  2. Call Universign: the payload's state is never trusted; ``GET /v1/transactions/{id}``
     (universign_api) says what the transaction is. A transaction we did not track yet starts
     being tracked (universign_sync). Each document write under the claim first checks that
     the claim's lease still has its margin left (universign_state.EventClaim.fence).
  3. Persist: the transaction document is updated with a generation precondition (re-read
     and re-applied on 412, universign_state); a status change is published to
     ``universign-status-changes``; on SIGNE the signed documents are archived, each object
     created at most once (universign_archive). What to publish and archive, and the polling
     index, are universign_plan's decisions; universign_sync carries them out.
  4. Report: one ``sync_message`` line (result, retry, duration, queued_seconds). A failure we
     can recover from (Universign 5xx, a 412 conflict, Cloud Storage, a lease that ran short,
     a claim held elsewhere) releases the claim and raises, so Pub/Sub redelivers; a refused
     API key also logs ``needs_reauth`` (universign_alerts) and is retried the same way, so
     the events waiting for a new key reach the dead-letter topic at worst, kept to replay.

``universign_poll`` (Pub/Sub ``universign-poll-trigger``, every 5 minutes), universign_poll
(the module): for an app's ``{"track": [{"transaction_id": ..., "reference": ...}]}``, those
transactions are tracked and synced now (``run_track``); for the scheduler's ``{}``, due final
re-checks first (one more look an hour after a transaction became
final), then tracked transactions that still need work, oldest first from where the previous
poll stopped, at most ``UNIVERSIGN_POLL_BATCH`` in all; each synced as above
(universign_sync), then one ``run_summary`` line. See universign_state for the mapping, the
priority rule and the index that spares the poll from reading every document.

Unconfirmed provider facts, kept configurable: the signature header name
(``UNIVERSIGN_SIGNATURE_HEADER``, default ``X-JWS-Signature`` then ``X-Universign-Signature``),
the event payload shape (the transaction id is looked for in several places), and the
participant fields that show a refusal (``UNIVERSIGN_REFUSAL_STATES``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from universign_api import UniversignApi
from universign_delivery import handle_webhook, process_work
from universign_jws import JwksVerifier
from universign_plan import Reply, parse_poll_trigger, parse_work_message
from universign_poll import run_poll, run_track
from universign_state import PRIORITY, StateStore

from shared import clock, logs, runtime
from shared.gcs import storage_client
from shared.http import HttpClient, RetryPolicy
from shared.secrets import SecretStore
from shared.settings import ConfigError, env_int, env_json, env_optional, env_str, project_id


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
    # The work topic the webhook publishes verified events to; universign_sync consumes it.
    sync_topic: str
    publish_timeout_seconds: int
    poll_batch: int
    final_recheck: timedelta
    max_body_bytes: int
    jwks_ttl_seconds: int
    jwks_min_refetch_seconds: int
    jwks_max_fetches_per_minute: int
    refusal_states: frozenset[str]
    # Our status -> the app's code, put in each status-change event (None: no such field).
    external_status_map: dict[str, str | int] | None
    history_size: int
    event_lease: timedelta
    outbox_retry_after: timedelta
    event_max_age: timedelta
    run_seconds: int
    webhook_seconds: int
    http_timeout_seconds: int
    http_attempts: int
    # The entry points live in this file; FUNCTION_TARGET names the one being served. The
    # logger is named after it, and the sibling modules log through that same logger.
    entry_point: str

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
            # Work topic the webhook queues verified events on; universign_sync consumes it.
            sync_topic=env_str("UNIVERSIGN_SYNC_TOPIC", "universign-sync"),
            # Most seconds the webhook waits for Pub/Sub to confirm a publish (then 503).
            publish_timeout_seconds=env_int(
                "UNIVERSIGN_PUBLISH_TIMEOUT_SECONDS", 10, minimum=1, maximum=60
            ),
            poll_batch=env_int("UNIVERSIGN_POLL_BATCH", 50, minimum=1, maximum=1000),
            final_recheck=timedelta(
                minutes=env_int("UNIVERSIGN_FINAL_RECHECK_MINUTES", 60, minimum=0)
            ),
            max_body_bytes=env_int("UNIVERSIGN_WEBHOOK_MAX_BYTES", 262_144, minimum=1024),
            jwks_ttl_seconds=env_int("UNIVERSIGN_JWKS_TTL_SECONDS", 3600, minimum=60),
            jwks_min_refetch_seconds=env_int("UNIVERSIGN_JWKS_MIN_REFETCH_SECONDS", 60, minimum=1),
            # Most key set fetches an instance makes per minute; past it, a key id not checked
            # yet is answered 503 with Retry-After (key_cooldown), never refused.
            jwks_max_fetches_per_minute=env_int(
                "UNIVERSIGN_JWKS_MAX_FETCHES_PER_MINUTE", 10, minimum=1, maximum=600
            ),
            refusal_states=frozenset(s.strip().lower() for s in refusal.split(",") if s.strip()),
            external_status_map=external_status_map(),
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
            entry_point=env_str("FUNCTION_TARGET", "universign_webhook"),
        )


def external_status_map() -> dict[str, str | int] | None:
    """UNIVERSIGN_EXTERNAL_STATUS_MAP: a JSON object from our statuses to the app's codes
    (seed 004's get_sage_status_code), e.g. ``{"SIGNE": "2", "REFUSE": "3"}``; unset or empty
    for none. Checked at start, so a typo stops the function with a message naming it."""
    name = "UNIVERSIGN_EXTERNAL_STATUS_MAP"
    value = env_json("UNIVERSIGN_EXTERNAL_STATUS_MAP", None)
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"environment variable {name} must be a JSON object")
    unknown = sorted(str(k) for k in value if k not in PRIORITY)
    if unknown:
        raise ConfigError(
            f"environment variable {name} has unknown statuses {unknown[:3]}; "
            f"expected some of {', '.join(sorted(PRIORITY))}"
        )
    if not all(
        isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
        for v in value.values()
    ):
        raise ConfigError(f"environment variable {name} must map statuses to strings or integers")
    return dict(value)


SETTINGS = Settings.from_env()
log = logs.setup("universign", SETTINGS.entry_point, project=SETTINGS.project)


class Clients:
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
            max_fetches_per_minute=settings.jwks_max_fetches_per_minute,
        )
        self._lock = threading.Lock()
        self._key: str | None = None
        self._token: tuple[str, float] | None = None
        self._publisher: runtime.Lazy[Any] = runtime.Lazy(_publisher)
        self._publish_api: runtime.Lazy[Any] = runtime.Lazy(self._unbatched_api)

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
        publisher = self._publisher.get()
        topic = publisher.topic_path(self.settings.project, self.settings.status_topic)
        # Attributes let a subscription filter on them; the reference only when there is one.
        attributes = {"transaction_id": str(message["transaction_id"])}
        attributes["status"] = str(message["status"])
        if message.get("reference"):
            attributes["reference"] = str(message["reference"])
        future = publisher.publish(
            topic, json.dumps(message, separators=(",", ":")).encode("utf-8"), **attributes
        )
        future.result(timeout=30)

    def _unbatched_api(self) -> Any:
        """The publisher's own API client (one Publish call per message), configured as the
        publisher is (credentials, PUBSUB_EMULATOR_HOST). The library calls its ``api``
        property deprecated in favour of the client's methods, but ``publish`` there is the
        batching one; the property is kept for exactly this."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._publisher.get().api

    def queue_sync(self, message: dict[str, Any], *, timeout: float) -> None:
        """Publish a verified event on the work topic; returns once Pub/Sub has stored it.

        One synchronous Publish call (the client's own API, retried on transient errors
        within ``timeout``) rather than the batching publisher: a webhook sends one message
        and waits for it, and the batcher's commit thread and window cost more than the call
        (benchmarks/universign_webhook.py measures the difference at 100 requests/s)."""
        topic = f"projects/{self.settings.project}/topics/{self.settings.sync_topic}"
        attributes = {
            "event_id": str(message["event_id"]),
            "transaction_id": str(message["transaction_id"]),
        }
        data = json.dumps(message, separators=(",", ":")).encode("utf-8")
        self._publish_api.get().publish(
            topic=topic, messages=[{"data": data, "attributes": attributes}], timeout=timeout
        )


def _publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # first use only

    # A 1 ms batch window (the default is 10 ms): a sync publishes its status change and waits
    # for it, so waiting for more to batch would only slow each sync.
    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001)
    )


# Built once on first use rather than at import: importing main.py needs no credentials, and a
# busy instance's threads share one set.
clients = runtime.Lazy(lambda: Clients(SETTINGS)).get


# Entry points ------------------------------------------------------------------------------


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
            # A request, not a run: it never counts as a successful run of the integration.
            event="webhook_request",
            provider="universign",
            entry_point="universign_webhook",
            http_status=reply.status,
            result=reply.result,
            duration_seconds=round(time.monotonic() - started, 3),
            **reply.fields,
        ),
    )
    return flask.Response(reply.body(), status=reply.status, headers=reply.headers())


@functions_framework.cloud_event
def universign_poll(cloud_event: CloudEvent) -> None:
    # Acknowledged without a run (None) when bad or stale: the scheduler sends ``{}`` (a poll),
    # an app ``{"track": [...]}``.
    received = runtime.receive(
        cloud_event, parse_poll_trigger, max_age=SETTINGS.event_max_age, log=log
    )
    if received is None:
        return
    tracks, _published_at = received
    deadline = time.monotonic() + SETTINGS.run_seconds
    if tracks is None:
        run_poll(SETTINGS, clients(), deadline=deadline)
    else:
        run_track(SETTINGS, clients(), tracks, deadline=deadline)


class Redeliver(Exception):
    """Raised by universign_sync so that Pub/Sub delivers the message again (with the
    subscription's backoff, then to the dead-letter topic): the message names the result."""


# A work message is never dropped for its age: its subscription's retention (and the
# dead-letter topic after it) bound how long it waits, and every hour it waited is still an
# event to sync. runtime.receive's guard is given an age no message reaches.
NO_AGE_LIMIT = timedelta.max


@functions_framework.cloud_event
def universign_sync(cloud_event: CloudEvent) -> None:
    started = time.monotonic()
    received = runtime.receive(cloud_event, parse_work_message, max_age=NO_AGE_LIMIT, log=log)
    if received is None:
        # Logged by runtime.receive (without the payload); acknowledged, never retried.
        _work_line("bad_message", started, {}, retry=False)
        return
    item, _published_at = received
    fields = {
        "event_id": item.event.event_id,
        "transaction_id": item.event.transaction_id,
        "queued_seconds": round((clock.now() - item.received_at).total_seconds(), 3),
    }
    try:
        outcome = process_work(
            SETTINGS, clients(), item.event, deadline=started + SETTINGS.run_seconds
        )
    except Exception as error:
        # A failure nobody foresaw still gets its line (the traceback is logged as well) and
        # is redelivered, then dead-lettered: never an acknowledged, unsynced event.
        log.exception("universign_sync failed unexpectedly (%s)", type(error).__name__)
        _work_line("internal_error", started, fields, type(error).__name__, retry=True)
        raise
    _work_line(outcome.result, started, {**fields, **outcome.fields}, outcome.detail, outcome.retry)
    if outcome.retry:
        raise Redeliver(f"{outcome.result}: {outcome.detail}"[:200])


def _work_line(
    result: str, started: float, fields: dict[str, Any], detail: str = "", retry: bool = False
) -> None:
    # One line per work message, delivered or redelivered: what the sync metrics and alerts
    # count (a request line for the webhook, a run_summary for the poll, this for the worker).
    # WARNING when it is handed back for redelivery or unreadable.
    log.log(
        logging.WARNING if retry or result == "bad_message" else logging.INFO,
        "Universign sync message: %s %s",
        result,
        detail,
        extra=logs.fields(
            event="sync_message",
            provider="universign",
            entry_point="universign_sync",
            result=result,
            retry=retry,
            duration_seconds=round(time.monotonic() - started, 3),
            **fields,
        ),
    )
