"""Cegid Data Access exports, moved hourly from Azure Blob Storage to Cloud Storage; Cegid
scheduled queries forced on request.

The story of one transfer run (entry point ``cegid_transfer``):
  1. Trigger: Cloud Scheduler publishes ``{}`` to ``cegid-transfer-trigger`` every hour.
  2. Source: ``CEGID_MODE=api`` asks the Cegid API for an access token, then for a container
     SAS with read/list/delete; ``CEGID_MODE=sas_url`` reads a SAS URL (valid 24 h) from
     secret ``cegid-sas-url``. A SAS that is expired or lacks a permission stops the run
     before anything is copied or deleted, with an error that says which.
  3. Lock (one run at a time), clear staging left by crashed runs, list every blob.
  4. Move each blob (cegid_copy.transfer_one): stream it to a staging object, verify MD5 and
     CRC32C, publish it as ``cegid/<blob name>`` without ever overwriting another file, then
     delete the source. One file's failure is logged and counted; the others go on. A file
     that failed or did not fit in this run's time stays in Azure for the next run.
  5. Report: one summary line (files, bytes, seconds, already present, failed).
Each landed object announces itself through the bucket's notification to ``cegid-files``.

The second entry point, ``cegid_queries``, takes ``{"action": "force", "name": "ECRITURE",
"time": "14:30"}`` from topic ``cegid-queries`` and moves the matching scheduled queries'
``nextExecution`` (the cron stays). It is a separate function on the same code so that it
needs no access to the bucket or the SAS, and a long transfer never delays a force request.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import functions_framework
from cegid_api import ApiSettings, BadForceRequest, CegidApi, force, force_time, read_credentials
from cegid_copy import (
    CopyConfig,
    Destination,
    SasError,
    check_sas,
    clean_staging,
    list_source,
    open_container,
    transfer_one,
)
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc

from shared import clock, events, logs
from shared.errors import ProviderError, TerminalError
from shared.http import HttpClient
from shared.lock import LeaseLock, LockBusy, storage_client
from shared.redact import register
from shared.secrets import SecretStore
from shared.settings import env_choice, env_int, env_optional, env_str, project_id

MIB = 1024 * 1024


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
log = logs.setup("cegid", "cegid_transfer", project=SETTINGS.project)


class _Clients:
    """Created on first use and kept for the life of the instance."""

    def __init__(self, settings: Settings) -> None:
        self.store = SecretStore(settings.project)
        storage = storage_client()
        self.state_bucket = storage.bucket(settings.state_bucket)
        self.bucket = storage.bucket(settings.bucket)
        self.http = HttpClient(timeout=settings.http_timeout_seconds)


_clients: _Clients | None = None


def clients() -> _Clients:
    global _clients
    if _clients is None:
        _clients = _Clients(SETTINGS)
    return _clients


# 1. Trigger ----------------------------------------------------------------------------


@functions_framework.cloud_event
def cegid_transfer(cloud_event: CloudEvent) -> None:
    message = events.receive(cloud_event, max_age=SETTINGS.event_max_age)
    if message is None:
        return
    if message.data:
        log.warning(
            "ignoring message %s: the transfer takes {} (force requests go to cegid-queries)",
            message.message_id,
        )
        return
    run(SETTINGS, clients(), deadline=time.monotonic() + SETTINGS.run_seconds)


@dataclass
class Summary:
    result: str = "done"  # done | sas_invalid | needs_reauth | busy | failed
    listed: int = 0
    files: int = 0
    bytes: int = 0
    already_present: int = 0
    failed: int = 0
    deferred: int = 0
    failed_names: list[str] = field(default_factory=list)


def run(settings: Settings, c: _Clients, *, deadline: float) -> Summary:
    started = time.monotonic()
    summary = Summary()
    try:
        _transfer(settings, c, summary, deadline)
    except SasError as error:
        summary.result = "sas_invalid"
        log.error(
            "Cegid export SAS unusable, nothing was copied or deleted: %s. %s",
            error,
            _sas_advice(settings),
            extra=logs.fields(event="needs_reauth", provider="cegid", error_code=error.code),
        )
    except TerminalError as error:
        summary.result = "needs_reauth"
        log.error(
            "Cegid API refused the transfer (%s): a person must act. Check secrets %s, %s and "
            "%s and CEGID_TENANT_ID; the next hourly run picks up once they are right.",
            error,
            settings.api.key_id_secret,
            settings.api.key_secret_secret,
            settings.api.subscription_key_secret,
            extra=logs.fields(event="needs_reauth", provider="cegid", error_code=error.code),
        )
    except LockBusy:
        summary.result = "busy"
        log.warning("another transfer run holds the lock; it does the work")
    except BaseException:
        summary.result = "failed"
        report(summary, time.monotonic() - started)
        raise  # transient (listing, token, SAS endpoint): Pub/Sub delivers again
    report(summary, time.monotonic() - started)
    return summary


def _sas_advice(settings: Settings) -> str:
    if settings.mode == "sas_url":
        return (
            f"Generate a new container SAS URL (read, list, delete) in the Cegid portal and add "
            f"it as a new version of secret {settings.sas_url_secret}."
        )
    return (
        f"The SAS came from {settings.api.sas_path}; it must grant read, list and delete "
        "(GetSASTokenLRD), see CEGID_SAS_PATH."
    )


# 2. Source -----------------------------------------------------------------------------


def container_url(settings: Settings, c: _Clients) -> str:
    """The container URL with its SAS; registered for redaction, never logged."""
    try:
        if settings.mode == "sas_url":
            url = c.store.read(settings.sas_url_secret).value.strip()
            register(url)
            return url
        credentials = read_credentials(c.store, settings.api)
    except (gexc.NotFound, gexc.FailedPrecondition) as error:
        # No secret, no enabled version: waiting will not help, a person must add it.
        raise TerminalError(
            f"a Cegid secret is missing or has no enabled version ({type(error).__name__})",
            code="missing_secret",
        ) from None
    return CegidApi(settings.api, credentials, c.http).container_sas_url()


# 3-4. Lock, list, move -------------------------------------------------------------------


def _transfer(settings: Settings, c: _Clients, summary: Summary, deadline: float) -> None:
    url = container_url(settings, c)
    check_sas(url)
    container = open_container(url, settings.copy.chunk_bytes)
    dest = Destination(
        bucket=c.bucket,
        prefix=settings.prefix,
        staging_prefix=settings.staging_prefix,
        run_id=f"{clock.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
        config=settings.copy,
    )
    lock = LeaseLock(c.state_bucket, "cegid-transfer", lease=settings.lock_lease)
    wait = max(0.0, min(settings.lock_wait_seconds, deadline - time.monotonic()))
    with lock.held(wait):
        cleared = clean_staging(c.bucket, settings.staging_prefix)
        if cleared:
            log.info("removed %d staging objects left by an interrupted run", cleared)
        blobs = list_source(container)
        summary.listed = len(blobs)
        for blob in blobs:
            needed = 5 + blob.size / (settings.plan_mib_per_second * MIB)
            if time.monotonic() + needed > deadline:
                summary.deferred += 1
                continue
            try:
                result = transfer_one(dest, container, blob)
            except Exception as error:  # noqa: BLE001 - one file never stops the others
                summary.failed += 1
                summary.failed_names.append(blob.name)
                log.warning(
                    "could not move %s (%s: %s); it stays in Azure for the next run",
                    blob.name,
                    type(error).__name__,
                    error,
                    extra=logs.fields(event="file_failed", provider="cegid", file=blob.name),
                )
                continue
            if result.already_present:
                summary.already_present += 1
                log.info("%s was already in the bucket as %s", blob.name, result.landed_as)
            else:
                summary.files += 1
                summary.bytes += result.bytes_copied
                log.info("moved %s to %s (%d bytes)", blob.name, result.landed_as, blob.size)


# 5. Report -----------------------------------------------------------------------------


def report(summary: Summary, seconds: float) -> None:
    log.info(
        "Cegid transfer %s: %d files (%d bytes) in %.1fs, %d already present, %d failed, "
        "%d left for the next run",
        summary.result,
        summary.files,
        summary.bytes,
        seconds,
        summary.already_present,
        summary.failed,
        summary.deferred,
        extra=logs.fields(
            event="run_summary",
            provider="cegid",
            result=summary.result,
            listed=summary.listed,
            files=summary.files,
            bytes=summary.bytes,
            seconds=round(seconds, 3),
            already_present=summary.already_present,
            failed=summary.failed,
            deferred=summary.deferred,
            failed_files=summary.failed_names[:20],
        ),
    )


# Scheduled queries: force the next execution ---------------------------------------------


@functions_framework.cloud_event
def cegid_queries(cloud_event: CloudEvent) -> None:
    message = events.receive(cloud_event, max_age=SETTINGS.event_max_age)
    if message is None:
        return
    try:
        name, at = parse_force(message.data)
        when = force_time(at, SETTINGS.force_time)
    except (events.BadMessage, BadForceRequest) as error:
        log.warning("ignoring message %s: %s", message.message_id, error)
        return
    started = time.monotonic()
    c = clients()
    try:
        api = CegidApi(SETTINGS.api, read_credentials(c.store, SETTINGS.api), c.http)
        done, failed = force(api, name, when)
    except TerminalError as error:
        log.error(
            "Cegid API refused the force request (%s): a person must act (API key secrets, "
            "CEGID_TENANT_ID, CEGID_PROVIDER_ID).",
            error,
            extra=logs.fields(event="needs_reauth", provider="cegid", error_code=error.code),
        )
        _report_force("needs_reauth", name, when, [], [], started)
        return
    except ProviderError:
        _report_force("failed", name, when, [], [], started)
        raise
    for query, problem in failed:
        log.error("could not force %s: %s", query, problem)
    transient = [e for _, e in failed if not e.terminal]
    _report_force("partial" if failed else "done", name, when, done, failed, started)
    if transient:
        raise transient[0]  # redelivery forces again; setting the same time twice is harmless


def parse_force(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """``{"action": "force", "name"?: str, "time"?: "HH:MM"}``; anything else is refused."""
    unknown = set(data) - {"action", "name", "time"}
    if unknown:
        raise events.BadMessage(f"unknown fields {sorted(unknown)}")
    if data.get("action") != "force":
        raise events.BadMessage('action must be "force"')
    name, at = data.get("name"), data.get("time")
    if name is not None and not isinstance(name, str):
        raise events.BadMessage("name must be a string")
    if at is not None and not isinstance(at, str):
        raise events.BadMessage("time must be HH:MM")
    return name or None, at or None


def _report_force(
    result: str,
    name: str | None,
    when: Any,
    done: list[str],
    failed: list[Any],
    started: float,
) -> None:
    log.info(
        "Cegid force %s: %d scheduled queries moved to %s, %d failed",
        result,
        len(done),
        clock.format_time(when),
        len(failed),
        extra=logs.fields(
            event="run_summary",
            provider="cegid",
            action="force",
            result=result,
            name=name,
            next_execution=clock.format_time(when),
            forced=len(done),
            forced_names=done[:50],
            failed=len(failed),
            seconds=round(time.monotonic() - started, 3),
        ),
    )
