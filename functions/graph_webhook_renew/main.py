"""Microsoft Graph change notifications: subscriptions kept alive, notifications received.

Two entry points share this file, with their settings and the clients an instance keeps; the
sibling modules named at each step do the work.

``graph_webhook_renew`` (CloudEvent, topic ``graph-webhook-renew-trigger``), a reconciler:
  1. Trigger: Cloud Scheduler publishes ``{}`` hourly (and deploy.sh once after a deploy); the
     notify function publishes ``{"reauthorize": [ids], "reason": ...}`` on lifecycle events;
     an operator publishes ``{"force": true}`` (optionally with ``"subscriptions": [resource,
     ...]``) to renew now, the seed's ``python renew_webhook.py``.
     ``runtime.receive`` decodes it; ``graph_plan.parse_request`` reads what it asks for.
  2. Decide: ``graph_reconcile.reconcile`` takes the lock, lists the app's subscriptions
     (``GET /v1.0/subscriptions``, graph_api) and ``graph_plan.plan`` compares them with the
     desired ones (``GRAPH_SUBSCRIPTIONS``). No local database that could drift.
  3. Call Graph: graph_reconcile, through ``graph_api.GraphClient``, creates what is missing,
     renews what expires within the window, creates again what Graph already deleted (404)
     and deletes duplicates.
  4. Report: one summary line (``graph_reconcile.report``); anything a person must fix is an
     ERROR saying what to do.

``graph_webhook_notify`` (HTTP, public), the endpoint Graph posts to (``graph_notify.notify``):
  1. Validation handshake: echo ``validationToken`` as text/plain, before anything slow.
  2. Check each item's clientState in constant time; drop forged ones
     (``graph_notify.sort_items``).
  3. Publish change notifications to ``graph-notifications``; turn lifecycle events into a
     reconciler run (reauthorise, recreate) and a resync event for downstream apps
     (``graph_notify.publish``).
  4. Answer 202 within Graph's 3 seconds; client mistakes get a 4xx, never a 500.

The notify path is kept light on a cold start: each entry point imports its own module on
first use, and ``Clients`` imports Secret Manager, Pub/Sub and requests (graph_api) on first
use, so the handshake answers with only functions-framework loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import flask
import functions_framework
from graph_plan import Desired, parse_desired_json, parse_request

from shared import logs, runtime
from shared.settings import env_int, env_optional, env_str, project_id

if TYPE_CHECKING:  # imported lazily at run time: see the module docstring
    from cloudevents.http import CloudEvent
    from google.cloud.pubsub_v1 import PublisherClient
    from graph_api import AppCredentials, GraphClient
    from graph_notify import Reply

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


class Clients:
    """Clients created on first use and kept for the life of the instance; each import of
    Secret Manager, Pub/Sub and requests happens inside its builder (see the docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store = runtime.Lazy(lambda: _secret_store(settings))
        self._publisher = runtime.Lazy(_publisher)
        self._graph = runtime.Lazy(lambda: _graph_client(settings, self.store))
        # Read once per instance; a failed read keeps nothing and is tried on the next request.
        self._client_state = runtime.Lazy(
            lambda: _read(self.store, settings.client_state_secret).encode("utf-8")
        )

    @property
    def store(self) -> SecretStore:
        return self._store.get()

    def secret_reads(self) -> int:
        """Secret values read so far on this instance (0 before the store is first used)."""
        store = self._store.built()
        return store.reads if store is not None else 0

    @property
    def publisher(self) -> PublisherClient:
        return self._publisher.get()

    def client_state(self) -> bytes:
        """The clientState secret."""
        return self._client_state.get()

    @property
    def graph(self) -> GraphClient:
        return self._graph.get()


def _secret_store(settings: Settings) -> SecretStore:
    from shared.secrets import SecretStore

    return SecretStore(settings.project)


def _publisher() -> PublisherClient:
    # Honours PUBSUB_EMULATOR_HOST on its own.
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.pubsub_v1.types import BatchSettings

    # Each request waits for its own messages, so batching across requests only adds latency:
    # send after 1 ms rather than the default 10 ms.
    return PublisherClient(batch_settings=BatchSettings(max_latency=0.001))


def _graph_client(settings: Settings, store: SecretStore) -> GraphClient:
    from graph_api import AppToken, GraphClient

    from shared.http import HttpClient

    http = HttpClient(timeout=settings.http_timeout_seconds)
    token = AppToken(http, settings.login_url, lambda: _credentials(settings, store))
    return GraphClient(http, settings.api_url, token)


def _credentials(settings: Settings, store: SecretStore) -> AppCredentials:
    from graph_api import AppCredentials

    return AppCredentials(
        tenant_id=_read(store, settings.tenant_id_secret),
        client_id=_read(store, settings.client_id_secret),
        client_secret=_read(store, settings.client_secret_secret),
    )


def _read(store: SecretStore, secret_id: str) -> str:
    """A required secret: a missing one is TERMINAL ``secret_missing`` (a person adds it), any
    other Secret Manager failure TRANSIENT (Pub/Sub delivers the trigger again)."""
    from shared.secrets import read_required

    return read_required(store, secret_id)


# Eager: building it costs nothing (every client inside is lazy), and both entry points use it.
_clients = Clients(SETTINGS)


def clients() -> Clients:
    return _clients


# graph_webhook_renew: the reconciler ------------------------------------------------------


@functions_framework.cloud_event
def graph_webhook_renew(cloud_event: CloudEvent) -> None:
    import graph_reconcile  # here, not at the top: the notify function never needs it

    # Acknowledged and dropped (None) when bad or too old: no redelivery makes it usable.
    received = runtime.receive(
        cloud_event,
        lambda data: parse_request(data, SETTINGS.desired),
        max_age=SETTINGS.event_max_age,
        log=log,
    )
    if received is None:
        return
    request, _published_at = received
    graph_reconcile.reconcile(
        SETTINGS, clients(), request, deadline=time.monotonic() + SETTINGS.run_seconds
    )


# graph_webhook_notify: the endpoint Graph posts to ---------------------------------------


@functions_framework.http
def graph_webhook_notify(request: flask.Request) -> Reply:
    import graph_notify  # nothing heavy: the first handshake stays fast

    try:
        return graph_notify.notify(SETTINGS, clients(), request)
    except Exception:
        log.exception("notification handling failed unexpectedly")
        return graph_notify.error_reply(500, "internal error")
