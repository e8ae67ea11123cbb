"""One account's refresh: take its lock, re-read its status, call HubSpot, store what came back.

The order of the writes is the point: a rotated refresh token is stored before anything else
("always use the latest one"), then the access token, then the status annotations; old
versions are destroyed last. A failure is recorded on the account's status and never raised,
so one account never stops the others.

The HubSpot call and every write are fenced (``shared.lock.LeaseLock.fence``): a run whose
lease on the account's lock is nearly over may have been overtaken by another run, so it
writes nothing more and raises ``LeaseLost`` (hubspot_run counts the account as failed and
ends the run with ``lease_lost``; Pub/Sub delivers it again). One write is exempt: a refresh
token HubSpot just rotated is stored whatever the lease says, with a WARNING, because the old
one may be spent and the new one then is the only valid token; the run stops right after it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from google.api_core import exceptions as gexc
from hubspot_accounts import (
    CLIENT_ID_ANNOTATION,
    CLIENT_SECRET_ANNOTATION,
    Account,
    account_labels,
)
from hubspot_api import call_hubspot
from hubspot_endpoint import ENDPOINT_ANNOTATION, shown
from hubspot_plan import (
    BUSY,
    CLIENT_VERSIONS_ANNOTATION,
    FAILED,
    FRESH,
    NEEDS_REAUTH,
    REFRESHED,
    RunRequest,
    client_secret_ids,
    judge,
    served_since,
    skip_result,
)

from shared import clock, logs
from shared.errors import ProviderError, TransientError
from shared.lock import LeaseLock, LeaseLost, LockBusy
from shared.runtime import lock_wait
from shared.secrets import SecretInfo, SecretStore, SecretValue, with_retry
from shared.status import CredentialStatus, Decision

if TYPE_CHECKING:
    from main import Clients, Settings  # types only: main imports this module

log = logging.getLogger("hubspot_refresh")  # the function's logger: see main.log

T = TypeVar("T")

# A full listing-based prune every this many versions catches up on any destroy that failed.
FULL_PRUNE_EVERY = 50


class ClientCredentials:
    """Client ids and secrets read at most once per run, shared by the worker threads."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self._values: dict[str, tuple[str, int]] = {}
        self._versions: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def value(self, secret_id: str) -> tuple[str, int]:
        with self._lock:
            if secret_id not in self._values:
                read = self.store.read(secret_id)
                self._values[secret_id] = (read.value, read.version)
            return self._values[secret_id]

    def version(self, secret_id: str) -> int | None:
        with self._lock:
            if secret_id not in self._versions:
                self._versions[secret_id] = self.store.latest_version(secret_id)
            return self._versions[secret_id]


def refresh_account(
    settings: Settings,
    clients: Clients,
    account: Account,
    request: RunRequest,
    requested_at: datetime | None,
    creds: ClientCredentials,
    deadline: float,
) -> str:
    """Lock the account, re-read its status, and refresh it if still due.

    Secret Manager allows 600 read and 600 write requests per minute per project (access
    requests: 90,000), so each refresh costs 1 read, 3 writes and 1 access, and a throttled
    call (429) waits and retries: the quota then paces the pool instead of failing accounts.
    """
    lock = LeaseLock(clients.bucket(), f"hubspot-{account.account_id}", lease=settings.lock_lease)
    try:
        with lock.held(lock_wait(settings.lock_wait_seconds, deadline)) as held:
            # Re-read: a run that held the lock before us may have done the work.
            info = _retrying(
                lambda: clients.store.info_optional(account.access_token_secret),
                deadline,
                "status",
            )
            annotations = dict(info.annotations) if info else {}
            status = CredentialStatus.from_annotations(annotations)
            if served_since(status, requested_at):
                # A redelivered message (or a shard another instance served): no token read.
                return FRESH
            try:
                # An access request (generous quota) that also tells the latest version.
                refresh_token = _retrying(
                    lambda: clients.store.read(account.refresh_token_secret),
                    deadline,
                    "refresh token",
                )
            except (gexc.NotFound, gexc.FailedPrecondition):
                log.error(
                    "account %s: secret %s has no enabled version; store the refresh token "
                    "with `python -m cli hubspot add-account %s`",
                    account.account_id,
                    account.refresh_token_secret,
                    account.account_id,
                    extra=logs.fields(account=account.account_id, outcome=FAILED),
                )
                return FAILED
            decision = judge(
                settings,
                account,
                status,
                annotations,
                refresh_token.version,
                request,
                requested_at,
                creds,
            )
            if not decision.refresh:
                return skip_result(decision)
            return _refresh(
                settings,
                clients,
                account,
                status,
                info,
                refresh_token,
                decision,
                creds,
                deadline,
                held,
            )
    except LockBusy:
        log.warning(
            "account %s: another run holds its refresh lock; leaving it to that run",
            account.account_id,
            extra=logs.fields(account=account.account_id, outcome=BUSY),
        )
        return BUSY


def _refresh(
    settings: Settings,
    clients: Clients,
    account: Account,
    status: CredentialStatus,
    info: SecretInfo | None,
    refresh_token: SecretValue,
    decision: Decision,
    creds: ClientCredentials,
    deadline: float,
    lock: LeaseLock,
) -> str:
    account_id = account.account_id
    fields = logs.fields(account=account_id)
    log.info("account %s: refreshing (%s)", account_id, decision.reason, extra=fields)
    if info is None:
        # Before calling HubSpot, so a missing permission costs no token. `hubspot
        # add-account` creates it up front; this covers accounts added by hand.
        lock.fence(f"creating {account.access_token_secret}")
        info = clients.store.create(account.access_token_secret, labels=account_labels(account_id))
    # The status just read (or created) under the lock: the annotation writes below merge into
    # it and carry its etag, so they need no read of their own.
    id_secret, secret_secret = client_secret_ids(settings, account)
    try:
        client_id, id_version = creds.value(id_secret)
        client_secret, secret_version = creds.value(secret_secret)
    except (gexc.NotFound, gexc.FailedPrecondition, gexc.PermissionDenied) as error:
        # A configuration problem, not the account's: back off and say which secret.
        return _failed(
            settings,
            clients,
            account,
            status,
            TransientError(
                f"client credentials unreadable: {id_secret} / {secret_secret} "
                f"({type(error).__name__}); create them or fix the annotations "
                f"{CLIENT_ID_ANNOTATION}/{CLIENT_SECRET_ANNOTATION}",
                code="client_credentials_missing",
            ),
            rt_version=None,
            client_versions=None,
            lock=lock,
            current=info,
        )
    client_versions = f"{id_version}/{secret_version}"
    # The call may spend the refresh token: only while the lease surely is still ours.
    lock.fence("calling HubSpot")
    try:
        tokens = call_hubspot(
            settings.token_url,
            clients.http,
            client_id,
            client_secret,
            refresh_token.value,
            deadline=deadline,
        )
    except ProviderError as error:
        return _failed(
            settings,
            clients,
            account,
            status,
            error,
            rt_version=refresh_token.version,
            client_versions=client_versions,
            lock=lock,
            current=info,
        )

    rt_version = refresh_token.version
    lease_lost: LeaseLost | None = None
    if tokens.refresh_token is not None and tokens.refresh_token != refresh_token.value:
        # Rotated: store it before anything else ("always use the latest one"), even when the
        # lease ran short meanwhile (see the module docstring).
        lease_lost = _fence_or_warn(lock, account)
        try:
            rt_version = with_retry(
                lambda: clients.store.add_version(
                    account.refresh_token_secret, tokens.refresh_token or ""
                ),
                deadline=deadline,
                what=f"storing {account.refresh_token_secret}",
            )
        except Exception as error:  # noqa: BLE001 - recorded; the previous token is kept
            return _failed(
                settings,
                clients,
                account,
                status,
                TransientError(
                    f"HubSpot returned a new refresh token that could not be stored "
                    f"({type(error).__name__}); the previous one is kept",
                    code="refresh_token_not_stored",
                ),
                rt_version=refresh_token.version,
                client_versions=client_versions,
                lock=lock,
                current=info,
            )
    if lease_lost is not None:
        raise lease_lost
    lock.fence(f"storing {account.access_token_secret}")
    at_version = with_retry(
        lambda: clients.store.add_version(account.access_token_secret, tokens.access_token),
        deadline=deadline,
        what=f"storing {account.access_token_secret}",
    )
    changes = status.succeeded(
        now=clock.now(), expires_at=tokens.expires_at, refresh_token_version=rt_version
    ).to_annotations()
    changes[CLIENT_VERSIONS_ANNOTATION] = None
    changes[ENDPOINT_ANNOTATION] = shown(settings.token_url)
    lock.fence(f"annotating {account.access_token_secret}")
    with_retry(
        lambda: clients.store.update_annotations(
            account.access_token_secret, changes, current=info
        ),
        deadline=deadline,
        what=f"annotating {account.access_token_secret}",
    )
    lock.fence("destroying old versions")
    _prune(settings, clients, account.access_token_secret, at_version)
    if rt_version != refresh_token.version:
        _prune(settings, clients, account.refresh_token_secret, rt_version)
    return REFRESHED


def _fence_or_warn(lock: LeaseLock, account: Account) -> LeaseLost | None:
    """The fence before storing a rotated refresh token: a short lease does not stop that
    write, it is only returned so the run stops right after it."""
    try:
        lock.fence(f"storing {account.refresh_token_secret}")
    except LeaseLost as lost:
        log.warning(
            "account %s: the lease on its lock ran short after HubSpot rotated the refresh "
            "token; storing the new refresh token anyway (the previous one may be spent, so "
            "it may be the only valid token), then stopping without further writes",
            account.account_id,
            extra=logs.fields(account=account.account_id, error_code="lease_lost"),
        )
        return lost
    return None


def _failed(
    settings: Settings,
    clients: Clients,
    account: Account,
    status: CredentialStatus,
    error: ProviderError,
    *,
    rt_version: int | None,
    client_versions: str | None,
    lock: LeaseLock,
    current: SecretInfo | None = None,
) -> str:
    # Once the lease ran short another run may have spent the token this one was refused
    # with: nothing is recorded, and no ERROR tells a person to act.
    lock.fence(f"recording the failure on {account.access_token_secret}")
    now = clock.now()
    account_id = account.account_id
    if error.terminal:
        id_secret, secret_secret = client_secret_ids(settings, account)
        log.error(
            "HubSpot refused the refresh of account %s (%s): a person must act. Re-authorise "
            "the app for that account and store the new refresh token with `python -m cli "
            "hubspot add-account %s` (a new version of secret %s); if instead the client id "
            "or secret is wrong, add the right values as new versions of %s / %s. "
            "Refreshes resume on their own after either.",
            account_id,
            error.code,
            account_id,
            account.refresh_token_secret,
            id_secret,
            secret_secret,
            extra=logs.fields(
                event="needs_reauth",
                provider="hubspot",
                account=account_id,
                error_code=error.code,
            ),
        )
        changes = status.needs_reauth(
            now=now, error=str(error), refresh_token_version=rt_version
        ).to_annotations()
        changes[CLIENT_VERSIONS_ANNOTATION] = client_versions
        result = NEEDS_REAUTH
    else:
        new_status = status.failed_transiently(now=now, error=str(error), backoff=settings.backoff)
        log.warning(
            "account %s: refresh failed (%s); next attempt not before %s",
            account_id,
            error.code,
            clock.format_time(new_status.next_attempt_at or now),
            extra=logs.fields(account=account_id, outcome=FAILED, error_code=error.code),
        )
        changes = new_status.to_annotations()
        result = FAILED
    changes[ENDPOINT_ANNOTATION] = shown(settings.token_url)
    try:
        clients.store.update_annotations(account.access_token_secret, changes, current=current)
    except Exception as write_error:  # noqa: BLE001 - the status is a report; the run goes on
        log.error(
            "account %s: could not record its status on %s (%s)",
            account_id,
            account.access_token_secret,
            type(write_error).__name__,
        )
    return result


def _prune(settings: Settings, clients: Clients, secret_id: str, newest: int) -> None:
    """Destroy the version that just left the kept window: one write, no listing (a read).

    Destroyed versions cost nothing; every live one is billed monthly.
    """
    oldest_kept = newest - settings.versions_to_keep + 1
    try:
        if newest % FULL_PRUNE_EVERY == 0:
            clients.store.prune(secret_id, keep=settings.versions_to_keep)
        elif oldest_kept > 1:
            clients.store.client.destroy_secret_version(
                request={"name": f"{clients.store.path(secret_id)}/versions/{oldest_kept - 1}"}
            )
    except (gexc.NotFound, gexc.FailedPrecondition):
        pass  # already destroyed (or never existed): nothing to do
    except Exception as error:  # noqa: BLE001 - old versions cost cents; the run succeeded
        log.warning("could not prune old versions of %s: %s", secret_id, error)


def _retrying(operation: Callable[[], T], deadline: float, what: str) -> T:
    """A Secret Manager read, retried when throttled or unavailable, for at most a minute."""
    return with_retry(operation, deadline=min(deadline, time.monotonic() + 60), what=what)
