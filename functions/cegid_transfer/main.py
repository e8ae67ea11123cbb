"""Cegid Data Access exports, moved hourly from Azure Blob Storage to Cloud Storage; Cegid
scheduled queries forced on request.

The story of one transfer run (entry point ``cegid_transfer``; each step names the module that
does it):
  1. Trigger: Cloud Scheduler publishes ``{}`` to ``cegid-transfer-trigger`` every hour. The
     message is read here (``receive``, on ``runtime.receive``) and checked by
     ``cegid_plan.parse_trigger``; the run is ``cegid_run.run``.
  2. Source (``cegid_run.container_url``): ``CEGID_MODE=api`` asks the Cegid API for an access
     token, then for a container SAS with read/list/delete (``cegid_api``);
     ``CEGID_MODE=sas_url`` reads a SAS URL (valid 24 h) from secret ``cegid-sas-url``. A SAS
     that is expired or lacks a permission (``cegid_plan.check_sas``) stops the run before
     anything is copied or deleted, with an error that says which.
  3. Lock (one run at a time), clear staging left by crashed runs, list every blob
     (``cegid_run``, ``cegid_copy.clean_staging``, ``cegid_copy.list_source``).
  4. Move each blob that still fits in the run's time (``cegid_plan.fits_in_run``) with
     ``cegid_copy.transfer_one``: stream it to a staging object, verify MD5 and CRC32C, publish
     it as ``cegid/<blob name>`` without ever overwriting another file (names:
     ``cegid_plan``), then delete the source, fenced by the lock's remaining lease. One file's
     failure is logged and counted; the others go on. A file that failed or did not fit in
     this run's time stays in Azure for the next run. A lease run short (``LeaseLost``) stops
     the run and Pub/Sub delivers the message again.
  5. Report (``cegid_run.report``): one summary line (files, bytes, seconds, already present,
     failed); after a successful run (``cegid_plan.is_success``), ``status/cegid-transfer.json``
     in the state bucket (``cegid_run.record_success``), which ``python -m cli status`` shows.
Each landed object announces itself through the bucket's notification to ``cegid-files``.

The second entry point, ``cegid_queries``, takes ``{"action": "force", "name": "ECRITURE",
"time": "14:30"}`` from topic ``cegid-queries`` (parsed by ``cegid_plan.force_request``) and
moves the matching scheduled queries' ``nextExecution`` (the cron stays; ``cegid_force``, calls
in ``cegid_api``). It is a separate function on the same code so that it needs no access to the
bucket or the SAS, and a long transfer never delays a force request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import functions_framework
from cegid_api import ApiSettings
from cegid_copy import CopyConfig
from cegid_force import run_force
from cegid_plan import MIB, BadForceRequest, force_request, parse_trigger
from cegid_run import run
from cloudevents.http import CloudEvent

from shared import events, logs, runtime
from shared.gcs import storage_client
from shared.http import HttpClient
from shared.secrets import SecretStore
from shared.settings import env_choice, env_int, env_optional, env_str, project_id

__all__ = ["SETTINGS", "Clients", "Settings", "cegid_queries", "cegid_transfer", "clients", "run"]

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    project: str
    state_bucket: str
    mode: str
    api: ApiSettings
    sas_url_secret: str
    bucket: str
    prefix: str
    staging_prefix: str
    copy: CopyConfig
    plan_mib_per_second: int
    force_time: str | None
    event_max_age: timedelta
    lock_lease: timedelta
    lock_wait_seconds: int
    run_seconds: int
    http_timeout_seconds: int

    @classmethod
    def from_env(cls) -> Settings:
        upload_mib = env_int("CEGID_UPLOAD_CHUNK_MIB", 16, minimum=1, maximum=256)
        return cls(
            project=project_id(),
            state_bucket=env_str("STATE_BUCKET"),
            mode=env_choice("CEGID_MODE", ("api", "sas_url"), "api"),
            api=ApiSettings.from_env(),
            sas_url_secret=env_str("CEGID_SAS_URL_SECRET", "cegid-sas-url"),
            bucket=env_str("CEGID_BUCKET"),
            prefix=env_str("CEGID_PREFIX", "cegid/"),
            staging_prefix=env_str("CEGID_STAGING_PREFIX", "_cegid-staging/"),
            copy=CopyConfig(
                chunk_bytes=env_int("CEGID_DOWNLOAD_CHUNK_MIB", 4, minimum=1, maximum=64) * MIB,
                upload_chunk_bytes=upload_mib * MIB,
                queue_depth=env_int("CEGID_QUEUE_DEPTH", 2, minimum=1, maximum=16),
                timeout_seconds=env_int("CEGID_STORAGE_TIMEOUT_SECONDS", 120, minimum=5),
            ),
            # Lower bound of throughput used to decide whether a file still fits in this run.
            plan_mib_per_second=env_int("CEGID_PLAN_MIB_PER_SECOND", 20, minimum=1),
            force_time=env_optional("CEGID_FORCE_TIME"),
            event_max_age=timedelta(minutes=env_int("EVENT_MAX_AGE_MINUTES", 30, minimum=1)),
            lock_lease=timedelta(seconds=env_int("LOCK_LEASE_SECONDS", 600, minimum=30)),
            lock_wait_seconds=env_int("LOCK_WAIT_SECONDS", 30, minimum=0),
            # Cloud Functions stop event-driven runs at 540 s: stop starting files well before.
            run_seconds=env_int("RUN_DEADLINE_SECONDS", 480, minimum=10),
            http_timeout_seconds=env_int("HTTP_TIMEOUT_SECONDS", 30, minimum=1),
        )


SETTINGS = Settings.from_env()
# The sibling modules log through logging.getLogger("cegid_transfer"), this same logger (both
# entry points), so every line of a run carries the same "logger" field whichever module wrote
# it. cegid_copy keeps its own module logger, as before.
log = logs.setup("cegid", "cegid_transfer", project=SETTINGS.project)


class Clients:
    """Created on first use (``clients()``) and kept for the life of the instance."""

    def __init__(self, settings: Settings) -> None:
        self.store = SecretStore(settings.project)
        storage = storage_client()
        self.state_bucket = storage.bucket(settings.state_bucket)
        self.bucket = storage.bucket(settings.bucket)
        self.http = HttpClient(timeout=settings.http_timeout_seconds)


# Built on the first run rather than at import (importing main.py needs no credentials).
clients = runtime.Lazy(lambda: Clients(SETTINGS)).get


# 1. Trigger: the entry points --------------------------------------------------------------


@functions_framework.cloud_event
def cegid_transfer(cloud_event: CloudEvent) -> None:
    if receive(cloud_event, parse_trigger) is None:
        return
    run(SETTINGS, clients(), deadline=time.monotonic() + SETTINGS.run_seconds)


@functions_framework.cloud_event
def cegid_queries(cloud_event: CloudEvent) -> None:
    request = receive(cloud_event, lambda data: force_request(data, SETTINGS.force_time))
    if request is None:
        return
    name, when = request
    started = time.monotonic()
    run_force(SETTINGS, clients(), name, when, started=started)


def receive(cloud_event: CloudEvent, parse: Callable[[dict[str, Any]], T]) -> T | None:
    """The parsed request, or None when the message is to be acknowledged and dropped (too old,
    not JSON, not a request): Pub/Sub must not redeliver what cannot work."""
    received = runtime.receive(
        cloud_event,
        parse,
        max_age=SETTINGS.event_max_age,
        log=log,
        bad=(events.BadMessage, BadForceRequest),
    )
    return None if received is None else received[0]
