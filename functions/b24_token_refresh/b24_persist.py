"""What a refresh leaves in Secret Manager, and in which order.

The order is the point: Bitrix24 refresh tokens are single-use, so the rotated one is stored
first (retried until the run's deadline, because the old one is already spent), then the
access token, then the status annotations; old versions are destroyed last. A refusal is
recorded as needs-reauth with an ERROR saying what to do; a transient failure is recorded
and raised, so Pub/Sub delivers again.

Every write is fenced (``shared.lock.LeaseLock.fence``): a run whose lease is nearly over may
have been overtaken by another run, so it writes nothing more and stops with ``LeaseLost``
(transient: Pub/Sub delivers again, and the run reports ``failed`` with reason
``lease_lost``). One write is exempt: the rotated refresh token. Bitrix24 has already spent
the old one, so the new one is the only valid token; skipping it would lose the credential,
while storing it late costs at most a successor that read the old one an ``invalid_grant``.
It is stored with a WARNING, and then the run stops: the status still names the previous
refresh-token version, so the next run refreshes with the stored one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from b24_api import Tokens
from b24_plan import Outcome

from shared import clock, logs
from shared.errors import ProviderError
from shared.lock import LeaseLost
from shared.secrets import with_retry
from shared.status import CredentialStatus

if TYPE_CHECKING:
    from main import Clients, Settings  # types only: main imports b24_run, which imports this

log = logging.getLogger("b24_token_refresh")  # the function's logger: see main.log


class Fence(Protocol):
    """What the writes need of the lock (shared.lock.LeaseLock has it)."""

    def fence(self, step: str) -> None: ...


def store_tokens(
    settings: Settings,
    clients: Clients,
    status: CredentialStatus,
    refresh_token_version: int,
    tokens: Tokens,
    reason: str,
    deadline: float,
    *,
    lock: Fence,
) -> Outcome:
    """Store what Bitrix24 answered: the refresh token first, then the access token and the
    status annotations; prune old versions. Each step is fenced; the refresh token is stored
    even when the lease ran short (see the module docstring)."""
    lease_lost = _fence_or_warn(lock, settings.refresh_token_secret)
    try:
        rt_new = with_retry(
            lambda: clients.store.add_version(settings.refresh_token_secret, tokens.refresh_token),
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
        lock.fence(f"annotating {settings.access_token_secret}")
        annotate_best_effort(
            settings,
            clients,
            status.needs_reauth(
                now=clock.now(),
                error=f"rotated refresh token could not be stored ({type(error).__name__})",
                refresh_token_version=refresh_token_version,
            ),
        )
        return Outcome("needs-reauth", "rotated refresh token could not be stored")
    if lease_lost is not None:
        raise lease_lost

    lock.fence(f"storing {settings.access_token_secret}")
    at_new = with_retry(
        lambda: clients.store.add_version(settings.access_token_secret, tokens.access_token),
        deadline=deadline,
        what=f"storing {settings.access_token_secret}",
    )
    new_status = status.succeeded(
        now=clock.now(), expires_at=tokens.expires_at, refresh_token_version=rt_new
    )
    lock.fence(f"annotating {settings.access_token_secret}")
    with_retry(
        lambda: clients.store.update_annotations(
            settings.access_token_secret, new_status.to_annotations()
        ),
        deadline=deadline,
        what=f"annotating {settings.access_token_secret}",
    )
    lock.fence("destroying old versions")
    prune(settings, clients)
    return Outcome("refreshed", reason, tokens.expires_at, rt_new, at_new)


def _fence_or_warn(lock: Fence, refresh_token_secret: str) -> LeaseLost | None:
    """The fence before storing a rotated refresh token: a short lease does not stop that
    write (the old token is spent), it is only returned so the run stops right after it."""
    try:
        lock.fence(f"storing {refresh_token_secret}")
    except LeaseLost as lost:
        log.warning(
            "the lease on the Bitrix24 lock ran short after Bitrix24 rotated the refresh "
            "token; storing the new refresh token anyway (the previous one is spent, so it is "
            "the only valid token), then stopping without further writes"
        )
        return lost
    return None


def record_failure(
    settings: Settings,
    clients: Clients,
    status: CredentialStatus,
    rt_version: int,
    error: ProviderError,
    *,
    lock: Fence,
) -> Outcome:
    """A refusal: needs-reauth, recorded, and an ERROR saying what to do. Anything else: the
    failure recorded (best effort) and raised again, so Pub/Sub delivers again.

    Fenced before anything: once the lease ran short, another run may have spent the token
    this one was refused with, so neither the refusal nor the failure is recorded."""
    lock.fence(f"recording the failure on {settings.access_token_secret}")
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
        clients.store.update_annotations(
            settings.access_token_secret,
            status.needs_reauth(
                now=now, error=str(error), refresh_token_version=rt_version
            ).to_annotations(),
        )
        return Outcome("needs-reauth", error.code)
    annotate_best_effort(settings, clients, status.failed_transiently(now=now, error=str(error)))
    log.warning("Bitrix24 refresh failed transiently (%s); Pub/Sub delivers again", error.code)
    raise error


def annotate_best_effort(settings: Settings, clients: Clients, status: CredentialStatus) -> None:
    try:
        clients.store.update_annotations(settings.access_token_secret, status.to_annotations())
    except Exception as error:  # noqa: BLE001 - the status is a report; the run goes on
        log.error("could not record status on %s: %s", settings.access_token_secret, error)


def prune(settings: Settings, clients: Clients) -> None:
    for secret_id in (settings.refresh_token_secret, settings.access_token_secret):
        try:
            clients.store.prune(secret_id, keep=settings.versions_to_keep)
        except Exception as error:  # noqa: BLE001 - old versions cost cents; the run succeeded
            log.warning("could not prune old versions of %s: %s", secret_id, error)
