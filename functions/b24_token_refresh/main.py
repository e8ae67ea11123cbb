"""Bitrix24 OAuth tokens, refreshed on a schedule and stored as Secret Manager versions.

The story of one run:
  1. Trigger: Cloud Scheduler publishes ``{}`` to ``b24-token-refresh-trigger`` every 30
     minutes (or someone publishes ``{"force": true}``).
  2. Decide: refresh when the access token expires within the margin, its expiry is unknown,
     the refresh token changed since the last refresh, or the message forces it.
  3. Lock, then re-read: two runs never spend the same single-use refresh token.
  4. Call Bitrix24: GET the token endpoint with the refresh token.
  5. Persist: the new refresh token first (retried until the run's deadline, because the old
     one is already spent), then the access token and its status annotations; prune old
     versions.
  6. Report: one summary log line; a refused refresh token is an ERROR that says what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from shared import clock, events, logs
from shared.errors import ProviderError, TerminalError
from shared.http import HttpClient, json_body, oauth_error
from shared.lock import LeaseLock, LockBusy, storage_client
from shared.redact import register
from shared.secrets import SecretStore, with_retry
from shared.settings import env_int, env_str, project_id
from shared.status import CredentialStatus, decide

# Bitrix24-specific codes that need a person: the trial or paid period ended, or the app
# was removed from the portal.
TERMINAL_CODES = frozenset({"invalid_grant", "invalid_client", "PAYMENT_REQUIRED"})
# Of the run's deadline, what provider retries may not use: storing a rotated token needs it.
PERSIST_RESERVE_SECONDS = 60


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
log = logs.setup("bitrix24", "b24_token_refresh", project=SETTINGS.project)


class _Clients:
    """Created on first use and kept for the life of the instance."""

    def __init__(self, settings: Settings) -> None:
        self.store = SecretStore(settings.project)
        self.bucket = storage_client().bucket(settings.state_bucket)
        self.http = HttpClient(timeout=settings.http_timeout_seconds)


_clients: _Clients | None = None


def clients() -> _Clients:
    global _clients
    if _clients is None:
        _clients = _Clients(SETTINGS)
    return _clients


# 1. Trigger ----------------------------------------------------------------------------


@functions_framework.cloud_event
def b24_token_refresh(cloud_event: CloudEvent) -> None:
    message = events.receive(cloud_event, max_age=SETTINGS.event_max_age)
    if message is None:
        return
    try:
        force = parse_request(message.data)
    except events.BadMessage as error:
        log.warning("ignoring message %s: %s", message.message_id, error)
        return
    run(
        SETTINGS,
        clients(),
        force=force,
        requested_at=message.published_at,
        deadline=time.monotonic() + SETTINGS.run_seconds,
    )


def parse_request(data: dict[str, Any]) -> bool:
    """``{}`` refreshes when due; ``{"force": true}`` refreshes now. Anything else is refused."""
    unknown = set(data) - {"force"}
    if unknown:
        raise events.BadMessage(f"unknown fields {sorted(unknown)}; expected {{}} or force")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise events.BadMessage("force must be true or false")
    return force


# 2. Decide -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    result: str  # refreshed | skipped | needs-reauth
    reason: str
    expires_at: datetime | None = None
    refresh_token_version: int | None = None
    access_token_version: int | None = None


def run(
    settings: Settings,
    c: _Clients,
    *,
    force: bool,
    requested_at: datetime | None,
    deadline: float,
) -> Outcome:
    started = time.monotonic()
    try:
        outcome = _decide_and_refresh(settings, c, force, requested_at, deadline)
    except (ProviderError, LockBusy) as error:
        code = error.code if isinstance(error, ProviderError) else "lock_busy"
        report(settings, Outcome("failed", code), time.monotonic() - started)
        raise
    report(settings, outcome, time.monotonic() - started)
    return outcome


def _read_status(settings: Settings, c: _Clients) -> tuple[CredentialStatus, int | None]:
    info = c.store.info(settings.access_token_secret)
    status = CredentialStatus.from_annotations(info.annotations)
    return status, c.store.latest_version(settings.refresh_token_secret)


def _decide_and_refresh(
    settings: Settings,
    c: _Clients,
    force: bool,
    requested_at: datetime | None,
    deadline: float,
) -> Outcome:
    def due() -> tuple[bool, str, CredentialStatus, int | None]:
        status, rt_version = _read_status(settings, c)
        decision = decide(
            status,
            now=clock.now(),
            margin=settings.margin,
            refresh_token_version=rt_version,
            force=force,
            requested_at=requested_at,
        )
        return decision.refresh, decision.reason, status, rt_version

    refresh, reason, status, _ = due()
    if not refresh:
        return Outcome("skipped", reason, status.expires_at)

    # 3. Lock, then re-read: a run that held the lock before us may have done the work.
    lock = LeaseLock(c.bucket, f"b24-{settings.refresh_token_secret}", lease=settings.lock_lease)
    wait = max(0.0, min(settings.lock_wait_seconds, deadline - time.monotonic()))
    try:
        with lock.held(wait):
            refresh, reason, status, rt_version = due()
            if not refresh:
                return Outcome("skipped", reason, status.expires_at)
            return _refresh(settings, c, status, rt_version, reason, deadline)
    except LockBusy:
        # Raising makes Pub/Sub deliver again later; by then the holder has finished.
        log.warning("another run holds the Bitrix24 refresh lock; retrying later")
        raise


# 4. Call Bitrix24 ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: datetime | None


def call_bitrix24(
    settings: Settings,
    c: _Clients,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    deadline: float,
) -> Tokens:
    """GET the token endpoint. The client secret travels in the query string, so neither the
    URL nor the request ever reaches a log line or an exception (see shared.http)."""
    response = c.http.request(
        "GET",
        settings.oauth_url,
        params={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        headers={"Accept": "application/json"},
        # Waits asked for by Retry-After must leave time to store what comes back.
        deadline=deadline - PERSIST_RESERVE_SECONDS,
    )
    if response.status_code != 200:
        raise oauth_error(response, terminal_codes=TERMINAL_CODES, where="Bitrix24 token endpoint")
    body = json_body(response)
    access_token, new_refresh_token = body.get("access_token"), body.get("refresh_token")
    if not isinstance(access_token, str) or not isinstance(new_refresh_token, str):
        # The old refresh token may already be spent: only a person can recover from here.
        raise TerminalError(
            "Bitrix24 token endpoint answered 200 without access_token and refresh_token",
            code="malformed_response",
        )
    register(access_token, new_refresh_token)
    return Tokens(access_token, new_refresh_token, _expiry(body))


def _expiry(body: dict[str, Any]) -> datetime | None:
    expires_in, expires = body.get("expires_in"), body.get("expires")
    if isinstance(expires_in, int | float) and expires_in > 0:
        return clock.now() + timedelta(seconds=int(expires_in))
    if isinstance(expires, int | float) and expires > 0:
        return datetime.fromtimestamp(int(expires), clock.now().tzinfo)
    return None  # unknown: the next run refreshes


def _refresh(
    settings: Settings,
    c: _Clients,
    status: CredentialStatus,
    rt_version: int | None,
    reason: str,
    deadline: float,
) -> Outcome:
    log.info("refreshing Bitrix24 tokens (%s)", reason)
    client_id = c.store.read(settings.client_id_secret).value
    client_secret = c.store.read(settings.client_secret_secret).value
    refresh_token = c.store.read(settings.refresh_token_secret)
    try:
        tokens = call_bitrix24(settings, c, client_id, client_secret, refresh_token.value, deadline)
    except ProviderError as error:
        return _failed(settings, c, status, refresh_token.version, error)

    # 5. Persist --------------------------------------------------------------------------
    try:
        rt_new = with_retry(
            lambda: c.store.add_version(settings.refresh_token_secret, tokens.refresh_token),
            deadline=deadline,
            what=f"storing {settings.refresh_token_secret}",
        )
    except Exception as error:  # noqa: BLE001 - whatever the cause, the token is now lost
        log.error(
            "Bitrix24 rotated the refresh token but Secret Manager refused to store it "
            "(%s); the previous one is spent. Re-authorise the app and add the new refresh "
            "token as a new version of secret %s.",
            type(error).__name__,
            settings.refresh_token_secret,
            extra=logs.fields(event="needs_reauth", provider="bitrix24", error_code="lost"),
        )
        _annotate_best_effort(
            settings,
            c,
            status.needs_reauth(
                now=clock.now(),
                error=f"rotated refresh token could not be stored ({type(error).__name__})",
                refresh_token_version=refresh_token.version,
            ),
        )
        return Outcome("needs-reauth", "rotated refresh token could not be stored")

    at_new = with_retry(
        lambda: c.store.add_version(settings.access_token_secret, tokens.access_token),
        deadline=deadline,
        what=f"storing {settings.access_token_secret}",
    )
    new_status = status.succeeded(
        now=clock.now(), expires_at=tokens.expires_at, refresh_token_version=rt_new
    )
    with_retry(
        lambda: c.store.update_annotations(
            settings.access_token_secret, new_status.to_annotations()
        ),
        deadline=deadline,
        what=f"annotating {settings.access_token_secret}",
    )
    _prune(settings, c)
    return Outcome("refreshed", reason, tokens.expires_at, rt_new, at_new)


def _failed(
    settings: Settings,
    c: _Clients,
    status: CredentialStatus,
    rt_version: int,
    error: ProviderError,
) -> Outcome:
    now = clock.now()
    if error.terminal:
        log.error(
            "Bitrix24 refused the refresh (%s): a person must act. Re-authorise the app in "
            "the Bitrix24 portal and add the new refresh token as a new version of secret "
            "%s; refreshes resume on their own after that.",
            error.code,
            settings.refresh_token_secret,
            extra=logs.fields(event="needs_reauth", provider="bitrix24", error_code=error.code),
        )
        c.store.update_annotations(
            settings.access_token_secret,
            status.needs_reauth(
                now=now, error=str(error), refresh_token_version=rt_version
            ).to_annotations(),
        )
        return Outcome("needs-reauth", error.code)
    _annotate_best_effort(settings, c, status.failed_transiently(now=now, error=str(error)))
    log.warning("Bitrix24 refresh failed transiently (%s); Pub/Sub delivers again", error.code)
    raise error


def _annotate_best_effort(settings: Settings, c: _Clients, status: CredentialStatus) -> None:
    try:
        c.store.update_annotations(settings.access_token_secret, status.to_annotations())
    except Exception as error:  # noqa: BLE001 - the status is a report; the run goes on
        log.error("could not record status on %s: %s", settings.access_token_secret, error)


def _prune(settings: Settings, c: _Clients) -> None:
    for secret_id in (settings.refresh_token_secret, settings.access_token_secret):
        try:
            c.store.prune(secret_id, keep=settings.versions_to_keep)
        except Exception as error:  # noqa: BLE001 - old versions cost cents; the run succeeded
            log.warning("could not prune old versions of %s: %s", secret_id, error)


# 6. Report -----------------------------------------------------------------------------


def report(settings: Settings, outcome: Outcome, seconds: float) -> None:
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
            duration_seconds=round(seconds, 3),
        ),
    )
