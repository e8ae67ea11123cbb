"""One Bitrix24 run: decide, lock and re-read, call Bitrix24, persist, report.

The steps are numbered as in main's docstring. Two runs never spend the same single-use
refresh token: the refresh happens under a lease lock, after the status was read again, and
the lock is fenced (``LeaseLock.fence``) right before Bitrix24 is called: a run that stalled
until its lease is nearly over stops there (``LeaseLost``, transient) instead of spending a
token another run may be spending or have spent already.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from b24_api import call_bitrix24
from b24_persist import record_failure, store_tokens
from b24_plan import Outcome, judge, not_called

from shared import clock, logs, runtime
from shared.errors import ProviderError
from shared.lock import LeaseLock, LockBusy
from shared.runtime import lock_wait
from shared.status import CredentialStatus

if TYPE_CHECKING:
    from main import Clients, Settings  # types only: main imports this module

log = logging.getLogger("b24_token_refresh")  # the function's logger: see main.log


def run(
    settings: Settings,
    clients: Clients,
    *,
    force: bool,
    requested_at: datetime | None,
    deadline: float,
) -> Outcome:
    meter = runtime.Meter(lambda: clients.store.reads)
    try:
        outcome = _decide_and_refresh(settings, clients, force, requested_at, deadline)
    except LockBusy:
        # Another run holds the lock and does the refresh: neither a success nor a failure.
        report(settings, Outcome("busy", "lock_busy"), meter)
        raise
    except ProviderError as error:
        report(settings, Outcome("failed", error.code), meter)
        raise
    report(settings, outcome, meter)
    return outcome


# 2. Decide -----------------------------------------------------------------------------


def _read_status(settings: Settings, clients: Clients) -> tuple[CredentialStatus, int | None]:
    info = clients.store.info(settings.access_token_secret)
    status = CredentialStatus.from_annotations(info.annotations)
    return status, clients.store.latest_version(settings.refresh_token_secret)


def _decide_and_refresh(
    settings: Settings,
    clients: Clients,
    force: bool,
    requested_at: datetime | None,
    deadline: float,
) -> Outcome:
    def due() -> tuple[bool, str, CredentialStatus, int | None]:
        status, rt_version = _read_status(settings, clients)
        decision = judge(
            status,
            rt_version,
            now=clock.now(),
            margin=settings.margin,
            force=force,
            requested_at=requested_at,
        )
        return decision.refresh, decision.reason, status, rt_version

    refresh, reason, status, _ = due()
    if not refresh:
        return not_called(reason, status.expires_at)

    # 3. Lock, then re-read: a run that held the lock before us may have done the work.
    lock = LeaseLock(
        clients.bucket, f"b24-{settings.refresh_token_secret}", lease=settings.lock_lease
    )
    try:
        with lock.held(lock_wait(settings.lock_wait_seconds, deadline)) as held:
            refresh, reason, status, rt_version = due()
            if not refresh:
                return not_called(reason, status.expires_at)
            return _refresh(settings, clients, status, rt_version, reason, deadline, held)
    except LockBusy:
        # Raising makes Pub/Sub deliver again later; by then the holder has finished.
        log.warning("another run holds the Bitrix24 refresh lock; retrying later")
        raise


# 4. Call Bitrix24 (b24_api), 5. Persist (b24_persist) ------------------------------------


def _refresh(
    settings: Settings,
    clients: Clients,
    status: CredentialStatus,
    rt_version: int | None,
    reason: str,
    deadline: float,
    lock: LeaseLock,
) -> Outcome:
    log.info("refreshing Bitrix24 tokens (%s)", reason)
    client_id = clients.store.read(settings.client_id_secret).value
    client_secret = clients.store.read(settings.client_secret_secret).value
    refresh_token = clients.store.read(settings.refresh_token_secret)
    # The call spends the refresh token: only while the lease surely is still ours.
    lock.fence("calling Bitrix24")
    try:
        tokens = call_bitrix24(
            settings.oauth_url,
            clients.http,
            client_id,
            client_secret,
            refresh_token.value,
            deadline,
        )
    except ProviderError as error:
        return record_failure(settings, clients, status, refresh_token.version, error, lock=lock)
    return store_tokens(
        settings, clients, status, refresh_token.version, tokens, reason, deadline, lock=lock
    )


# 6. Report -----------------------------------------------------------------------------


def report(settings: Settings, outcome: Outcome, meter: runtime.Meter) -> None:
    expires = clock.format_time(outcome.expires_at) if outcome.expires_at else None
    remaining = (
        int((outcome.expires_at - clock.now()).total_seconds() // 60)
        if outcome.expires_at
        else None
    )
    log.info(
        "Bitrix24 token %s (%s); expires at %s",
        outcome.result,
        outcome.reason,
        expires or "unknown",
        extra=logs.fields(
            event="run_summary",
            provider="bitrix24",
            result=outcome.result,
            reason=outcome.reason,
            expires_at=expires,
            expires_in_minutes=remaining,
            refresh_token_version=outcome.refresh_token_version,
            access_token_version=outcome.access_token_version,
            duration_seconds=round(meter.seconds, 3),
            secret_reads=meter.secret_reads,
        ),
    )
