"""One transfer run: the SAS (step 2), the lock, staging left by crashed runs, the listing, each
file moved by cegid_copy.transfer_one (steps 3-4), one summary line (step 5). See main.py for
the story; the rules it applies (SAS check, what fits, names) are cegid_plan's."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from cegid_api import CegidApi, read_credentials
from cegid_copy import Destination, clean_staging, list_source, open_container, transfer_one
from cegid_plan import (
    STATUS_OBJECT,
    SasError,
    Summary,
    check_sas,
    fits_in_run,
    is_success,
    run_id,
    sas_advice,
    transfer_status,
)

from shared import clock, logs, runtime
from shared.errors import TerminalError
from shared.lock import LeaseLock, LeaseLost, LockBusy
from shared.redact import register
from shared.secrets import read_required

if TYPE_CHECKING:
    from main import Clients, Settings  # types only: main imports this module

log = logging.getLogger("cegid_transfer")  # the function's logger: see main.log


def run(settings: Settings, clients: Clients, *, deadline: float) -> Summary:
    meter = runtime.Meter(lambda: clients.store.reads)
    summary = Summary()
    try:
        _transfer(settings, clients, summary, deadline)
    except SasError as error:
        summary.result = "sas_invalid"
        log.error(
            "Cegid export SAS unusable, nothing was copied or deleted: %s. %s",
            error,
            sas_advice(settings.mode, settings.sas_url_secret, settings.api.sas_path),
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
        report(summary, meter)
        raise  # transient (listing, token, SAS endpoint): Pub/Sub delivers again
    report(summary, meter)
    if is_success(summary):
        record_success(clients.state_bucket, summary)
    return summary


# 2. Source -----------------------------------------------------------------------------


def container_url(settings: Settings, clients: Clients) -> str:
    """The container URL with its SAS; registered for redaction, never logged. A secret that
    is missing or has no enabled version is TERMINAL ``secret_missing``: a person must add it."""
    if settings.mode == "sas_url":
        url = read_required(clients.store, settings.sas_url_secret).strip()
        register(url)
        return url
    credentials = read_credentials(clients.store, settings.api)
    return CegidApi(settings.api, credentials, clients.http).container_sas_url()


# 3-4. Lock, list, move -------------------------------------------------------------------


def _transfer(settings: Settings, clients: Clients, summary: Summary, deadline: float) -> None:
    url = container_url(settings, clients)
    check_sas(url)
    container = open_container(url, settings.copy.chunk_bytes)
    dest = Destination(
        bucket=clients.bucket,
        prefix=settings.prefix,
        staging_prefix=settings.staging_prefix,
        run_id=run_id(clock.now(), uuid.uuid4().hex),
        config=settings.copy,
    )
    lock = LeaseLock(clients.state_bucket, "cegid-transfer", lease=settings.lock_lease)
    with lock.held(runtime.lock_wait(settings.lock_wait_seconds, deadline)):
        cleared = clean_staging(clients.bucket, settings.staging_prefix)
        if cleared:
            log.info("removed %d staging objects left by an interrupted run", cleared)
        blobs = list_source(container)
        summary.listed = len(blobs)
        for blob in blobs:
            if not fits_in_run(blob.size, settings.plan_mib_per_second, time.monotonic(), deadline):
                summary.deferred += 1
                continue
            try:
                result = transfer_one(dest, container, blob, lock)
            except LeaseLost:
                # The lock may be another run's by now: stop the whole run (transient, so the
                # message is delivered again); this file's copy is kept, its source too.
                summary.failed += 1
                summary.failed_names.append(blob.name)
                raise
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


def record_success(state_bucket: Any, summary: Summary) -> None:
    """The last successful transfer as a small object in the state bucket, for ``python -m cli
    status``. The files are moved already: a failed write only costs the status a run."""
    document = json.dumps(transfer_status(summary, clock.now()), sort_keys=True)
    try:
        state_bucket.blob(STATUS_OBJECT).upload_from_string(
            document, content_type="application/json"
        )
    except Exception as error:  # noqa: BLE001 - a status write never makes Pub/Sub run it again
        log.warning(
            "could not record the successful transfer in %s (%s)",
            STATUS_OBJECT,
            type(error).__name__,
        )


def report(summary: Summary, meter: runtime.Meter) -> None:
    log.info(
        "Cegid transfer %s: %d files (%d bytes) in %.1fs, %d already present, %d failed, "
        "%d left for the next run",
        summary.result,
        summary.files,
        summary.bytes,
        meter.seconds,
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
            entry_point="cegid_transfer",
            duration_seconds=round(meter.seconds, 3),
            secret_reads=meter.secret_reads,
            already_present=summary.already_present,
            failed=summary.failed,
            deferred=summary.deferred,
            failed_files=summary.failed_names[:20],
        ),
    )
