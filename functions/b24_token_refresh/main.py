"""Bitrix24 OAuth tokens, refreshed on a schedule and stored as Secret Manager versions.

The story of one run (each step names the module that does it):
  1. Trigger: Cloud Scheduler publishes ``{}`` to ``b24-token-refresh-trigger`` every 30
     minutes (or someone publishes ``{"force": true}``). The message is received here
     (``runtime.receive``) and parsed by ``b24_plan.parse_request``; ``b24_run.run`` does the
     rest.
  2. Decide (``b24_plan.judge``, on the status ``b24_run`` reads): refresh when the access
     token expires within the margin, its expiry is unknown, the refresh token changed since
     the last refresh, or the message forces it.
  3. Lock, then re-read (``b24_run``): two runs never spend the same single-use refresh token.
     The lease is checked again before the call and before each write (``LeaseLock.fence``):
     a run that stalled past it stops with ``lease_lost`` (see ``b24_persist``).
  4. Call Bitrix24 (``b24_api``): GET the token endpoint with the refresh token; read the
     answer and its expiry, class a refusal as terminal or transient.
  5. Persist (``b24_persist``): the new refresh token first (retried until the run's deadline,
     because the old one is already spent), then the access token and its status
     annotations; prune old versions. A refusal is recorded as needs-reauth.
  6. Report (``b24_run.report``): one summary log line; a refused refresh token is an ERROR
     (``b24_persist``) that says what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import functions_framework
from b24_plan import parse_request
from b24_run import run
from cloudevents.http import CloudEvent

from shared import logs, runtime
from shared.gcs import storage_client
from shared.http import HttpClient
from shared.secrets import SecretStore
from shared.settings import env_int, env_str, project_id


@dataclass(frozen=True)
class Settings:
    project: str
    state_bucket: str
    oauth_url: str
    client_id_secret: str
    client_secret_secret: str
    refresh_token_secret: str
    access_token_secret: str
    margin: timedelta
    versions_to_keep: int
    event_max_age: timedelta
    lock_lease: timedelta
    lock_wait_seconds: int
    run_seconds: int
    http_timeout_seconds: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            project=project_id(),
            state_bucket=env_str("STATE_BUCKET"),
            oauth_url=env_str("B24_OAUTH_URL", "https://oauth.bitrix.info/oauth/token/"),
            client_id_secret=env_str("B24_CLIENT_ID_SECRET", "b24-client-id"),
            client_secret_secret=env_str("B24_CLIENT_SECRET_SECRET", "b24-client-secret"),
            refresh_token_secret=env_str("B24_REFRESH_TOKEN_SECRET", "b24-refresh-token"),
            access_token_secret=env_str("B24_ACCESS_TOKEN_SECRET", "b24-access-token"),
            margin=timedelta(minutes=env_int("B24_REFRESH_MARGIN_MINUTES", 35, minimum=0)),
            versions_to_keep=env_int("B24_VERSIONS_TO_KEEP", 2, minimum=1),
            event_max_age=timedelta(minutes=env_int("EVENT_MAX_AGE_MINUTES", 30, minimum=1)),
            lock_lease=timedelta(seconds=env_int("LOCK_LEASE_SECONDS", 600, minimum=30)),
            lock_wait_seconds=env_int("LOCK_WAIT_SECONDS", 60, minimum=0),
            run_seconds=env_int("RUN_DEADLINE_SECONDS", 240, minimum=10),
            http_timeout_seconds=env_int("HTTP_TIMEOUT_SECONDS", 15, minimum=1),
        )


SETTINGS = Settings.from_env()
# The sibling modules log through logging.getLogger("b24_token_refresh"), this same logger, so
# every line of a run carries the same "logger" field whichever module wrote it.
log = logs.setup("bitrix24", "b24_token_refresh", project=SETTINGS.project)


class Clients:
    """Created on first use (``clients()``) and kept for the life of the instance."""

    def __init__(self, settings: Settings) -> None:
        self.store = SecretStore(settings.project)
        self.bucket = storage_client().bucket(settings.state_bucket)
        self.http = HttpClient(timeout=settings.http_timeout_seconds)


# Built on the first run rather than at import (importing main.py needs no credentials).
clients = runtime.Lazy(lambda: Clients(SETTINGS)).get


# 1. Trigger: the entry point -----------------------------------------------------------


@functions_framework.cloud_event
def b24_token_refresh(cloud_event: CloudEvent) -> None:
    received = runtime.receive(cloud_event, parse_request, max_age=SETTINGS.event_max_age, log=log)
    if received is None:
        return
    force, published_at = received
    run(
        SETTINGS,
        clients(),
        force=force,
        requested_at=published_at,
        deadline=time.monotonic() + SETTINGS.run_seconds,
    )
