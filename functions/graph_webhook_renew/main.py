"""Microsoft Graph change notifications: subscriptions kept alive, notifications received.

Two entry points share this file.

``graph_webhook_renew`` (CloudEvent, topic ``graph-webhook-renew-trigger``), a reconciler:
  1. Trigger: Cloud Scheduler publishes ``{}`` daily (and deploy.sh once after a deploy); the
     notify function publishes ``{"reauthorize": [ids], "reason": ...}`` on lifecycle events.
  2. Decide: list the app's subscriptions (``GET /v1.0/subscriptions``) and compare them with
     the desired ones (``GRAPH_SUBSCRIPTIONS``). No local database that could drift.
  3. Call Graph: create what is missing, renew what expires within the window, create again
     what Graph already deleted (404), delete duplicates.
  4. Report: one summary line; anything a person must fix is an ERROR saying what to do.

``graph_webhook_notify`` (HTTP, public), the endpoint Graph posts to:
  1. Validation handshake: echo ``validationToken`` as text/plain, before anything slow.
  2. Check each item's clientState in constant time; drop forged ones.
  3. Publish change notifications to ``graph-notifications``; turn lifecycle events into a
     reconciler run (reauthorise, recreate) and a resync event for downstream apps.
  4. Answer 202 within Graph's 3 seconds; client mistakes get a 4xx, never a 500.

The notify path is kept light on a cold start: Secret Manager, Pub/Sub and requests are
imported on first use, so the handshake answers with only functions-framework loaded.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import flask
import functions_framework
from graph_plan import Desired, Step, Subscription, parse_desired_json, plan, requested_expiry

from shared import clock, events, logs
from shared.errors import ProviderError, TerminalError, TransientError
from shared.settings import env_int, env_optional, env_str, project_id

if TYPE_CHECKING:  # imported lazily at run time: see the module docstring
    from cloudevents.http import CloudEvent
    from google.cloud.pubsub_v1 import PublisherClient
    from graph_api import AppCredentials, GraphClient

    from shared.secrets import SecretStore


@dataclass(frozen=True)
class Settings:
    project: str
    login_url: str
    api_url: str
    notification_url: str | None
    desired: tuple[Desired, ...]
    renew_within: timedelta
    subscription_minutes: int
    tenant_id_secret: str
    client_id_secret: str
    client_secret_secret: str
    client_state_secret: str
    notifications_topic: str
    renew_topic: str
    event_max_age: timedelta
    run_seconds: int
    http_timeout_seconds: int
    notify_max_bytes: int
    publish_timeout_seconds: int
    state_bucket: str | None
    lock_lease: timedelta
    lock_wait_seconds: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            project=project_id(),
            login_url=env_str("GRAPH_LOGIN_URL", "https://login.microsoftonline.com"),
            api_url=env_str("GRAPH_API_URL", "https://graph.microsoft.com"),
            # Required by the reconciler only; the notify function does not know its own URL.
            notification_url=env_optional("GRAPH_NOTIFICATION_URL"),
            desired=parse_desired_json(
                env_optional("GRAPH_SUBSCRIPTIONS"),
                user_id=env_optional("GRAPH_USER_ID"),
                variable="GRAPH_SUBSCRIPTIONS",
            ),
            renew_within=timedelta(hours=env_int("GRAPH_RENEW_WITHIN_HOURS", 24, minimum=1)),
            subscription_minutes=env_int("GRAPH_SUBSCRIPTION_MINUTES", 4200, minimum=45),
            tenant_id_secret=env_str("GRAPH_TENANT_ID_SECRET", "graph-tenant-id"),
            client_id_secret=env_str("GRAPH_CLIENT_ID_SECRET", "graph-client-id"),
            client_secret_secret=env_str("GRAPH_CLIENT_SECRET_SECRET", "graph-client-secret"),
            client_state_secret=env_str("GRAPH_CLIENT_STATE_SECRET", "graph-webhook-client-state"),
            notifications_topic=env_str("GRAPH_NOTIFICATIONS_TOPIC", "graph-notifications"),
            renew_topic=env_str("GRAPH_RENEW_TOPIC", "graph-webhook-renew-trigger"),
            event_max_age=timedelta(minutes=env_int("EVENT_MAX_AGE_MINUTES", 60, minimum=1)),
            run_seconds=env_int("RUN_DEADLINE_SECONDS", 240, minimum=10),
            http_timeout_seconds=env_int("HTTP_TIMEOUT_SECONDS", 15, minimum=1),
            notify_max_bytes=env_int("GRAPH_NOTIFY_MAX_BYTES", 1_000_000, minimum=1024),
            # Graph wants a 2xx within 3 s; waiting longer than that for Pub/Sub helps nobody.
            publish_timeout_seconds=env_int("GRAPH_PUBLISH_TIMEOUT_SECONDS", 2, minimum=1),
            # The reconciler's lock; the notify function takes none and has no bucket.
            state_bucket=env_optional("STATE_BUCKET"),
            lock_lease=timedelta(seconds=env_int("LOCK_LEASE_SECONDS", 600, minimum=30)),
            lock_wait_seconds=env_int("LOCK_WAIT_SECONDS", 60, minimum=0),
        )


SETTINGS = Settings.from_env()
# Both entry points live in this file; functions-framework names the one being served.
log = logs.setup(
    "graph",
    env_str("FUNCTION_TARGET", "graph_webhook_renew"),
    project=SETTINGS.project,
)


class _Shared:
    """Clients created on first use and kept for the life of the instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._store: SecretStore | None = None
        self._publisher: PublisherClient | None = None
        self._graph: GraphClient | None = None
        self._client_state: bytes | None = None

    @property
    def store(self) -> SecretStore:
        with self._lock:
            if self._store is None:
                from shared.secrets import SecretStore

                self._store = SecretStore(self.settings.project)
            return self._store

    @property
    def publisher(self) -> PublisherClient:
        with self._lock:
            if self._publisher is None:
                # Honours PUBSUB_EMULATOR_HOST on its own.
                from google.cloud.pubsub_v1 import PublisherClient
                from google.cloud.pubsub_v1.types import BatchSettings

                # Each request waits for its own messages, so batching across requests only
                # adds latency: send after 1 ms rather than the default 10 ms.
                self._publisher = PublisherClient(batch_settings=BatchSettings(max_latency=0.001))
            return self._publisher

    def client_state(self) -> bytes:
        """The clientState secret, read once per instance (a failed read is tried again on
        the next request)."""
        if self._client_state is None:
            with self._state_lock:
                if self._client_state is None:
                    value = read_secret(self.store, self.settings.client_state_secret)
                    self._client_state = value.encode("utf-8")
        return self._client_state

    @property
    def graph(self) -> GraphClient:
        store = self.store
        with self._lock:
            if self._graph is None:
                from graph_api import AppToken, GraphClient

                from shared.http import HttpClient

                http = HttpClient(timeout=self.settings.http_timeout_seconds)
                settings = self.settings
                token = AppToken(http, settings.login_url, lambda: _credentials(settings, store))
                self._graph = GraphClient(http, self.settings.api_url, token)
            return self._graph


def _credentials(s: Settings, store: SecretStore) -> AppCredentials:
    from graph_api import AppCredentials

    return AppCredentials(
        tenant_id=read_secret(store, s.tenant_id_secret),
        client_id=read_secret(store, s.client_id_secret),
        client_secret=read_secret(store, s.client_secret_secret),
    )


def read_secret(store: SecretStore, secret_id: str) -> str:
    """A secret's latest value; a missing secret or version is TERMINAL (a person adds it),
    anything else from Secret Manager TRANSIENT (Pub/Sub delivers the trigger again)."""
    from google.api_core import exceptions as gexc

    try:
        return store.read(secret_id).value
    except (gexc.NotFound, gexc.FailedPrecondition, gexc.PermissionDenied) as error:
        raise TerminalError(
            f"secret {secret_id} has no readable version ({type(error).__name__})",
            code="secret_missing",
        ) from None
    except gexc.GoogleAPICallError as error:
        raise TransientError(
            f"reading secret {secret_id} failed ({type(error).__name__})", code="secret_manager"
        ) from None


_shared = _Shared(SETTINGS)


def shared_clients() -> _Shared:
    return _shared


# =========================================================================================
# graph_webhook_renew: the reconciler
# =========================================================================================

# 1. Trigger ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenewRequest:
    reauthorize: tuple[str, ...] = ()
    reason: str = "scheduled"


@functions_framework.cloud_event
def graph_webhook_renew(cloud_event: CloudEvent) -> None:
    message = events.receive(cloud_event, max_age=SETTINGS.event_max_age)
    if message is None:
        return
    try:
        request = parse_request(message.data)
    except events.BadMessage as error:
        log.warning("ignoring message %s: %s", message.message_id, error)
        return
    reconcile(SETTINGS, shared_clients(), request, deadline=time.monotonic() + SETTINGS.run_seconds)


def parse_request(data: dict[str, Any]) -> RenewRequest:
    """``{}`` reconciles; ``reauthorize`` lists subscription ids to reauthorise first."""
    unknown = set(data) - {"reauthorize", "reason"}
    if unknown:
        raise events.BadMessage(f"unknown fields {sorted(unknown)}; expected reauthorize, reason")
    ids = data.get("reauthorize", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise events.BadMessage("reauthorize must be a list of subscription ids")
    reason = data.get("reason", "scheduled")
    if not isinstance(reason, str):
        raise events.BadMessage("reason must be a string")
    return RenewRequest(tuple(dict.fromkeys(ids))[:100], reason[:100])


# 2. Decide -------------------------------------------------------------------------------


@dataclass
class Tally:
    created: int = 0
    renewed: int = 0
    recreated: int = 0
    deleted: int = 0
    unchanged: int = 0
    reauthorized: int = 0
    unmanaged: int = 0
    failed: int = 0
    expiries: list[datetime] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)

    @property
    def earliest_expiry(self) -> datetime | None:
        return min(self.expiries) if self.expiries else None


def reconcile(settings: Settings, c: _Shared, request: RenewRequest, *, deadline: float) -> Tally:
    started = time.monotonic()
    tally = Tally()
    if not settings.notification_url or not settings.desired:
        missing = "GRAPH_SUBSCRIPTIONS or GRAPH_USER_ID"
        if not settings.notification_url:
            missing = "GRAPH_NOTIFICATION_URL"
        log.error(
            "nothing to reconcile: set %s on the graph_webhook_renew function",
            missing,
            extra=logs.fields(event="config_error", provider="graph", missing=missing),
        )
        report(settings, tally, request.reason, time.monotonic() - started, "config_error")
        return tally
    # Overlapping runs (a lifecycle event during the daily run, a redelivery) would each see
    # a subscription missing and each create it: one run at a time, re-listing after the lock.
    from shared.lock import LeaseLock, storage_client

    lock = (
        LeaseLock(
            storage_client().bucket(settings.state_bucket),
            "graph-webhook-renew",
            lease=settings.lock_lease,
        )
        if settings.state_bucket
        else None
    )
    if lock is not None:
        wait = max(0.0, min(settings.lock_wait_seconds, deadline - time.monotonic()))
        if not lock.acquire(wait):
            report(settings, tally, request.reason, time.monotonic() - started, "lock_busy")
            raise TransientError("another reconciler run holds the lock", code="lock_busy")
    try:
        _reconcile_locked(settings, c, request, tally, deadline)
    finally:
        if lock is not None:
            lock.release()
    report(settings, tally, request.reason, time.monotonic() - started)
    transient = [e for e in tally.errors if not e.terminal]
    if transient:
        # Pub/Sub delivers the trigger again; what succeeded is simply unchanged next time.
        raise transient[0]
    return tally


def _reconcile_locked(
    settings: Settings, c: _Shared, request: RenewRequest, tally: Tally, deadline: float
) -> None:
    assert settings.notification_url is not None
    try:
        graph = c.graph
        must_renew = _reauthorize(graph, request.reauthorize, tally, deadline)
        actual = graph.list_subscriptions(deadline=deadline)
        client_state = c.client_state().decode("utf-8")
        now = clock.now()
        steps, unmanaged = plan(
            settings.desired,
            actual,
            notification_url=settings.notification_url,
            now=now,
            renew_within=settings.renew_within,
        )
        tally.unmanaged = len(unmanaged)
        if unmanaged:
            # Left alone (they lapse within days), but a resource Graph echoes differently
            # from GRAPH_SUBSCRIPTIONS would show up here run after run.
            log.warning(
                "%d subscription(s) to our endpoint match no desired one and are left to "
                "expire: %s",
                len(unmanaged),
                ", ".join(sorted({f"{u.change_type} on {u.resource}" for u in unmanaged})),
                extra=logs.fields(event="unmanaged_subscriptions", provider="graph"),
            )
        for step in steps:
            if step.keep is not None and step.keep.id in must_renew:
                step = replace(step, renew=True)  # renewing reauthorises too
            try:
                _carry_out(settings, graph, step, client_state, tally, deadline)
            except ProviderError as error:
                tally.failed += 1
                tally.errors.append(error)
                _log_failure(step.desired, error)
    except ProviderError as error:
        # Listing or the token failed: nothing could be checked this run.
        tally.failed += 1
        tally.errors.append(error)
        _log_failure(None, error)


# 3. Call Graph ---------------------------------------------------------------------------


def _reauthorize(
    graph: GraphClient, ids: tuple[str, ...], tally: Tally, deadline: float
) -> set[str]:
    """Reauthorise the subscriptions a lifecycle event named; returns those to renew instead
    (Graph accepts either). A 404 means Graph removed it: the plan creates a new one."""
    must_renew: set[str] = set()
    for sub_id in ids:
        try:
            if graph.reauthorize(sub_id, deadline=deadline):
                tally.reauthorized += 1
        except ProviderError as error:
            log.warning("reauthorizing %s failed (%s); renewing it instead", sub_id, error)
            must_renew.add(sub_id)
    return must_renew


def _carry_out(
    settings: Settings,
    graph: GraphClient,
    step: Step,
    client_state: str,
    tally: Tally,
    deadline: float,
) -> None:
    assert settings.notification_url is not None
    want = step.desired

    def create() -> Subscription:
        return graph.create(
            resource=want.resource,
            change_type=want.change_type,
            notification_url=settings.notification_url or "",
            client_state=client_state,
            expires_at=requested_expiry(clock.now(), want, settings.subscription_minutes),
            deadline=deadline,
        )

    kept: Subscription | None = None
    if step.keep is None:
        kept = create()
        tally.created += 1
        log.info("created subscription %s for %s", kept.id, want.describe())
    elif step.renew:
        kept = graph.renew(
            step.keep.id,
            requested_expiry(clock.now(), want, settings.subscription_minutes),
            deadline=deadline,
        )
        if kept is None:
            log.warning(
                "subscription %s for %s was gone at renewal (404); creating it again",
                step.keep.id,
                want.describe(),
            )
            kept = create()
            tally.recreated += 1
        else:
            tally.renewed += 1
    else:
        kept = step.keep
        tally.unchanged += 1
    if kept.expires_at is not None:
        # Graph's answer, not our request: it may have shortened the lifetime.
        tally.expiries.append(kept.expires_at)
    # Delete extras only once the kept one is certain, so there is never a gap.
    for extra in step.delete:
        if graph.delete(extra.id, deadline=deadline):
            tally.deleted += 1
            log.info("deleted duplicate subscription %s for %s", extra.id, want.describe())


def _log_failure(desired: Desired | None, error: ProviderError) -> None:
    what = desired.describe() if desired else "the subscription list"
    if not error.terminal:
        log.warning("Graph call for %s failed transiently: %s", what, error)
        return
    if error.code == "secret_missing":
        log.error(
            "%s: a person must act. Add the value as a new version of that secret "
            "(deploy.sh asks for it); the next run picks it up.",
            error,
            extra=logs.fields(event="config_error", provider="graph", error_code=error.code),
        )
        return
    if error.status in (400, 401) and error.code in {
        "invalid_client",
        "unauthorized_client",
        "invalid_request",
    }:
        log.error(
            "Entra ID refused the app's credentials (%s): a person must act. Check the "
            "client secret has not expired and add a new version of the graph-client-secret "
            "(and graph-client-id, graph-tenant-id) secrets; the next run picks it up.",
            error.code,
            extra=logs.fields(event="needs_reauth", provider="graph", error_code=error.code),
        )
        return
    log.error(
        "Graph refused the call for %s (%s): a person must act. A 400 on create usually "
        "means the notify endpoint did not echo the validation token (is it deployed and "
        "public?); 403 means the app lacks the permission (Mail.Read for messages).",
        what,
        error,
        extra=logs.fields(event="subscription_failed", provider="graph", error_code=error.code),
    )


# 4. Report -------------------------------------------------------------------------------


def report(
    settings: Settings, tally: Tally, reason: str, seconds: float, result: str | None = None
) -> None:
    earliest = tally.earliest_expiry
    result = result or ("failed" if tally.failed else "ok")
    log.info(
        "Graph subscriptions %s: %d created, %d renewed, %d recreated, %d deleted, "
        "%d unchanged, %d failed; earliest expiry %s",
        result,
        tally.created,
        tally.renewed,
        tally.recreated,
        tally.deleted,
        tally.unchanged,
        tally.failed,
        clock.format_time(earliest) if earliest else "none",
        extra=logs.fields(
            event="run_summary",
            provider="graph",
            result=result,
            reason=reason,
            desired=len(settings.desired),
            created=tally.created,
            renewed=tally.renewed,
            recreated=tally.recreated,
            deleted=tally.deleted,
            unchanged=tally.unchanged,
            reauthorized=tally.reauthorized,
            unmanaged=tally.unmanaged,
            failed=tally.failed,
            earliest_expiry=clock.format_time(earliest) if earliest else None,
            earliest_expiry_in_minutes=(
                int((earliest - clock.now()).total_seconds() // 60) if earliest else None
            ),
            duration_seconds=round(seconds, 3),
        ),
    )


# =========================================================================================
# graph_webhook_notify: the endpoint Graph posts to
# =========================================================================================

# Graph's tokens are short; anything this long is not from Graph.
MAX_VALIDATION_TOKEN_CHARS = 4096
# Pub/Sub attribute values are capped at 1024 bytes; Graph's ids are far shorter.
MAX_FIELD_CHARS = 256
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})

Reply = tuple[str, int, dict[str, str]]


def _reply(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    # nosniff: a browser must never render an echoed token as HTML.
    return text, status, {"Content-Type": content_type, "X-Content-Type-Options": "nosniff"}


def _error(status: int, error: str) -> Reply:
    return _reply(status, json.dumps({"error": error}), "application/json")


@functions_framework.http
def graph_webhook_notify(request: flask.Request) -> Reply:
    try:
        return _notify(SETTINGS, shared_clients(), request)
    except Exception:
        log.exception("notification handling failed unexpectedly")
        return _error(500, "internal error")


# 1. Validation handshake -----------------------------------------------------------------


def _notify(settings: Settings, c: _Shared, request: flask.Request) -> Reply:
    if request.method != "POST":
        return _error(405, "POST only")
    token = request.args.get("validationToken")
    if token is not None:
        # Flask already URL-decoded it; Graph wants exactly that back, as plain text.
        if len(token) > MAX_VALIDATION_TOKEN_CHARS:
            return _error(400, "validationToken too long")
        return _reply(200, token)

    # 2. Read and check the batch ---------------------------------------------------------
    mimetype = (request.mimetype or "").lower()
    if mimetype != "application/json":
        return _error(415, "Content-Type must be application/json")
    if request.content_length is not None and request.content_length > settings.notify_max_bytes:
        return _error(413, "body too large")
    raw = request.stream.read(settings.notify_max_bytes + 1)
    if len(raw) > settings.notify_max_bytes:
        return _error(413, "body too large")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _error(400, "body is not JSON")
    items = body.get("value") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return _error(400, 'body must be {"value": [notifications]}')

    try:
        secret = c.client_state()
    except Exception as error:  # noqa: BLE001 - Secret Manager down: Graph retries on 5xx
        log.error(
            "cannot check notifications: %s",
            error if isinstance(error, ProviderError) else type(error).__name__,
            extra=logs.fields(event="config_error", provider="graph"),
        )
        return _error(503, "temporarily unavailable")
    batch = sort_items(items, secret)
    if batch.malformed == len(items):
        return _error(400, "no notification in the body has the expected fields")

    # 3. Publish --------------------------------------------------------------------------
    try:
        publish(settings, c, batch)
    except Exception as error:  # noqa: BLE001 - Pub/Sub refused: a 5xx makes Graph retry
        log.error("publishing notifications failed (%s); Graph will retry", type(error).__name__)
        return _error(503, "temporarily unavailable")

    # 4. Acknowledge ----------------------------------------------------------------------
    if batch.forged:
        # One line per request, whatever the count, so a flood cannot flood the logs. The
        # received value is never logged: it may be a near miss of the real secret.
        log.warning(
            "dropped %d notification(s) with a wrong clientState",
            batch.forged,
            extra=logs.fields(event="forged_notification", provider="graph", count=batch.forged),
        )
    log.info(
        "received %d notification(s): %d published, %d lifecycle, %d forged, %d malformed",
        len(items),
        len(batch.changes),
        len(batch.lifecycle),
        batch.forged,
        batch.malformed,
        extra=logs.fields(
            event="notifications_received",
            provider="graph",
            published=len(batch.changes),
            lifecycle=len(batch.lifecycle),
            forged=batch.forged,
            malformed=batch.malformed,
        ),
    )
    return _reply(202, "")


@dataclass
class Batch:
    changes: list[dict[str, Any]] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    forged: int = 0
    malformed: int = 0


def _short_str(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_FIELD_CHARS


def sort_items(items: list[Any], secret: bytes) -> Batch:
    """Valid change notifications and lifecycle events, with clientState checked and removed
    (downstream apps never see the secret)."""
    batch = Batch()
    for item in items:
        if not isinstance(item, dict) or not _short_str(item.get("subscriptionId")):
            batch.malformed += 1
            continue
        state = item.get("clientState")
        if not isinstance(state, str) or not hmac.compare_digest(state.encode("utf-8"), secret):
            batch.forged += 1
            continue
        clean = {k: v for k, v in item.items() if k != "clientState"}
        event = item.get("lifecycleEvent")
        if event is not None:
            if event in LIFECYCLE_EVENTS:
                batch.lifecycle.append(clean)
            else:
                batch.malformed += 1
        elif _short_str(item.get("changeType")):
            batch.changes.append(clean)
        else:
            batch.malformed += 1
    return batch


def _attributes(item: dict[str, Any], *names: str) -> dict[str, str]:
    return {n: str(item[n])[:MAX_FIELD_CHARS] for n in names if item.get(n)}


def publish(settings: Settings, c: _Shared, batch: Batch) -> None:
    """Publish everything the batch asks for and wait until Pub/Sub has it all."""
    if not batch.changes and not batch.lifecycle:
        return
    publisher = c.publisher
    notifications = publisher.topic_path(settings.project, settings.notifications_topic)
    futures = []
    for item in batch.changes:
        futures.append(
            publisher.publish(
                notifications,
                json.dumps(item).encode("utf-8"),
                **_attributes(item, "subscriptionId", "changeType", "tenantId"),
            )
        )
    reauthorize: list[str] = []
    reasons: set[str] = set()
    for item in batch.lifecycle:
        event = item["lifecycleEvent"]
        log.info(
            "lifecycle event %s for subscription %s",
            event,
            item["subscriptionId"],
            extra=logs.fields(event="lifecycle", provider="graph", lifecycle_event=event),
        )
        if event == "reauthorizationRequired":
            reauthorize.append(item["subscriptionId"])
            reasons.add(event)
        elif event == "subscriptionRemoved":
            reasons.add(event)  # the reconciler sees it missing and creates it again
        if event in ("missed", "subscriptionRemoved"):
            # Notifications were (or may have been) lost: downstream apps resync by delta.
            futures.append(
                publisher.publish(
                    notifications,
                    json.dumps(item).encode("utf-8"),
                    **_attributes(item, "lifecycleEvent", "subscriptionId", "tenantId"),
                )
            )
    if reasons:
        trigger = {
            "reauthorize": list(dict.fromkeys(reauthorize)),
            "reason": ",".join(sorted(reasons)),
        }
        futures.append(
            publisher.publish(
                publisher.topic_path(settings.project, settings.renew_topic),
                json.dumps(trigger).encode("utf-8"),
            )
        )
    give_up = time.monotonic() + settings.publish_timeout_seconds
    for future in futures:
        future.result(timeout=max(0.1, give_up - time.monotonic()))
