"""HubSpot OAuth access tokens of every account, refreshed before they expire.

The story of one run (each step names the module that does it):
  1. Trigger: Cloud Scheduler publishes ``{}`` to ``hubspot-token-refresh-trigger`` every 15
     minutes; a person may publish ``{"force": true}`` (every account) or
     ``{"force": true, "accounts": ["62515"]}`` (some). The message is read here and parsed by
     ``hubspot_plan.parse_request``. With sharding on, the scheduled run only plans and
     publishes one work message per shard to ``HUBSPOT_WORK_TOPIC`` (``hubspot_shards``);
     this same function consumes them (they carry ``"shard"``). Every other run is
     ``hubspot_run.run``.
  2. Discover (``hubspot_accounts``): one filtered List of Secret Manager returns every account
     (``hubspot-<account>-refresh-token``, label ``integration=hubspot``) and its status (the
     annotations of ``hubspot-<account>-access-token``). ``enabled=false`` skips an account.
  3. Decide per account (``hubspot_plan``): refresh when the access token expires within the
     margin, has expired or its expiry is unknown; not while in backoff; never again after a
     terminal refusal until the refresh token (or the app's client credentials) gets a new
     version.
  4. Refresh the due accounts concurrently (``HUBSPOT_CONCURRENCY`` threads, ``hubspot_run``),
     each under its own lease lock and re-reading its status after taking it
     (``hubspot_refresh_account``): POST the form to the token URL (``hubspot_api``).
  5. Persist (``hubspot_refresh_account``): a rotated refresh token first, then the access
     token and the status annotations. One account's failure is recorded on that account and
     never stops the others.
  6. Report (``hubspot_report``): one summary log line per run; a refused account is an ERROR
     saying what to do.

When to turn sharding on (``HUBSPOT_SHARD_SIZE`` > 0 with ``HUBSPOT_WORK_TOPIC``): two limits
bound one run. (1) Time: one instance refreshes ``HUBSPOT_CONCURRENCY`` accounts at a time, each
about one HubSpot round trip plus seven calls (0.3-1 s): five to Secret Manager (re-read the
status, read the refresh token, store the access token, annotate, destroy the version that left
the kept window) and two to Cloud Storage (take and release the lock), within
``RUN_DEADLINE_SECONDS``; accounts that do not fit are counted as ``deferred`` in the summary.
(2) Secret Manager's project quota: 600 writes and 600 reads per minute, shared by every
instance and integration; a refresh costs 3 writes and 1 read, so about 200 refreshes a minute
per project (throttled calls wait and retry). Sharding spreads (1) over instances and does
nothing for (2); a shard lists nothing (its message says what the fan-out's listing found).
Turn it on when runs report ``deferred`` > 0 although Secret Manager is not
throttling (its quota was raised, or runs are short of time for another reason, such as a slow
HubSpot); in practice from about 1,500 accounts. Below that, or when the quota is the limit,
leave it off: one instance is simpler and cheaper. To lower the quota use, run more often with
a smaller margin (every 5 minutes with a 7-minute margin refreshes each account about every 25
minutes instead of 15).

The token endpoint defaults to ``https://api.hubapi.com/oauth/2026-03/token``, where HubSpot's
migration guide points; ``.../oauth/v3/token`` takes the same form, and the legacy
``.../oauth/v1/token`` stays selectable until HubSpot retires it on 2027-02-16. A run
configured with a retiring endpoint says so first, a WARNING each run (an ERROR once retired;
``hubspot_endpoint``), and the endpoint is recorded on each account's status for ``cli status``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent
from hubspot_endpoint import endpoint_notice
from hubspot_plan import RunRequest as RunRequest  # re-exported: hubspot_testkit, benchmarks
from hubspot_plan import parse_request
from hubspot_run import run
from hubspot_shards import fan_out

from shared import clock, logs, runtime
from shared.gcs import storage_client
from shared.http import HttpClient, RetryPolicy
from shared.secrets import SecretStore
from shared.settings import ConfigError, env_int, env_optional, env_str, project_id
from shared.status import Backoff


@dataclass(frozen=True)
class Settings:
    project: str
    state_bucket: str
    token_url: str
    client_id_secret: str
    client_secret_secret: str
    margin: timedelta
    concurrency: int
    backoff: Backoff
    versions_to_keep: int
    shard_size: int
    work_topic: str | None
    event_max_age: timedelta
    lock_lease: timedelta
    lock_wait_seconds: int
    run_seconds: int
    http_timeout_seconds: int
    http_attempts: int

    @classmethod
    def from_env(cls) -> Settings:
        settings = cls(
            project=project_id(),
            state_bucket=env_str("STATE_BUCKET"),
            # Where HubSpot's v1 migration guide points; .../oauth/v1/token is retired 2027-02-16.
            token_url=env_str("HUBSPOT_TOKEN_URL", "https://api.hubapi.com/oauth/2026-03/token"),
            client_id_secret=env_str("HUBSPOT_CLIENT_ID_SECRET", "hubspot-client-id"),
            client_secret_secret=env_str("HUBSPOT_CLIENT_SECRET_SECRET", "hubspot-client-secret"),
            margin=timedelta(minutes=env_int("HUBSPOT_REFRESH_MARGIN_MINUTES", 30, minimum=0)),
            concurrency=env_int("HUBSPOT_CONCURRENCY", 8, minimum=1, maximum=64),
            backoff=Backoff(
                first=timedelta(minutes=env_int("HUBSPOT_BACKOFF_MINUTES", 5, minimum=1)),
                cap=timedelta(minutes=env_int("HUBSPOT_BACKOFF_CAP_MINUTES", 60, minimum=1)),
            ),
            versions_to_keep=env_int("HUBSPOT_VERSIONS_TO_KEEP", 2, minimum=1),
            shard_size=env_int("HUBSPOT_SHARD_SIZE", 0, minimum=0),
            work_topic=env_optional("HUBSPOT_WORK_TOPIC"),
            event_max_age=timedelta(minutes=env_int("EVENT_MAX_AGE_MINUTES", 30, minimum=1)),
            lock_lease=timedelta(seconds=env_int("LOCK_LEASE_SECONDS", 600, minimum=30)),
            lock_wait_seconds=env_int("LOCK_WAIT_SECONDS", 30, minimum=0),
            run_seconds=env_int("RUN_DEADLINE_SECONDS", 240, minimum=10),
            http_timeout_seconds=env_int("HTTP_TIMEOUT_SECONDS", 15, minimum=1),
            # Tries per refresh within one run (timeouts, 5xx, 429); later runs try again.
            http_attempts=env_int("HUBSPOT_HTTP_ATTEMPTS", 3, minimum=1, maximum=10),
        )
        if settings.shard_size and not settings.work_topic:
            raise ConfigError("HUBSPOT_SHARD_SIZE is set: HUBSPOT_WORK_TOPIC is required too")
        return settings


SETTINGS = Settings.from_env()
# The sibling modules log through logging.getLogger("hubspot_refresh"), this same logger, so
# every line of a run carries the same "logger" field whichever module wrote it.
log = logs.setup("hubspot", "hubspot_refresh", project=SETTINGS.project)


class Clients:
    """Created on first use (``clients()``) and kept for the life of the instance.

    The Secret Manager client (gRPC) and the Pub/Sub publisher are shared by all threads. The
    HTTP session and the Cloud Storage client are one per worker thread (``HUBSPOT_CONCURRENCY``
    refresh accounts at once): both are built on a requests session, which is not thread-safe
    and pools only a few connections, so sharing one would serialise or break the workers.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = SecretStore(settings.project)
        self._local = threading.local()
        self._publisher: runtime.Lazy[Any] = runtime.Lazy(_publisher)

    @property
    def http(self) -> HttpClient:
        if not hasattr(self._local, "http"):
            self._local.http = HttpClient(
                timeout=self.settings.http_timeout_seconds,
                retry=RetryPolicy(attempts=self.settings.http_attempts),
            )
        http: HttpClient = self._local.http
        return http

    def bucket(self) -> Any:
        if not hasattr(self._local, "bucket"):
            self._local.bucket = storage_client().bucket(self.settings.state_bucket)
        return self._local.bucket

    def publisher(self) -> Any:
        return self._publisher.get()


def _publisher() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient()


# Built on the first run rather than at import (importing main.py needs no credentials).
clients = runtime.Lazy(lambda: Clients(SETTINGS)).get


# 1. Trigger: the entry point ---------------------------------------------------------------


@functions_framework.cloud_event
def hubspot_refresh(cloud_event: CloudEvent) -> None:
    received = runtime.receive(cloud_event, parse_request, max_age=SETTINGS.event_max_age, log=log)
    if received is None:
        return
    request, published_at = received
    requested_at = request.requested_at or published_at
    deadline = time.monotonic() + SETTINGS.run_seconds
    if request.shard is None:  # a shard's run was told already, by its fan-out
        warn_if_retiring(SETTINGS.token_url)
    if request.shard is None and SETTINGS.shard_size > 0:
        fan_out(SETTINGS, clients(), request, requested_at=requested_at)
        return
    run(SETTINGS, clients(), request, requested_at=requested_at, deadline=deadline)


def warn_if_retiring(token_url: str) -> None:
    """A WARNING on each run while the configured endpoint awaits its retirement, an ERROR
    after it: the setting to change is in the message."""
    notice = endpoint_notice(token_url, clock.now().date())
    if notice is None:
        return
    log.log(
        logging.ERROR if notice.retired else logging.WARNING,
        notice.message,
        extra=logs.fields(
            event="token_endpoint_retiring",
            provider="hubspot",
            endpoint=notice.endpoint,
            retires_on=notice.retires_on.isoformat(),
            replacement=notice.replacement,
        ),
    )
