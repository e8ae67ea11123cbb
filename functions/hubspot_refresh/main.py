"""HubSpot OAuth access tokens of every account, refreshed before they expire.

The story of one run:
  1. Trigger: Cloud Scheduler publishes ``{}`` to ``hubspot-token-refresh-trigger`` every 15
     minutes; a person may publish ``{"force": true}`` (every account) or
     ``{"force": true, "accounts": ["62515"]}`` (some). With sharding on, the scheduled run only
     plans and publishes one work message per shard to ``HUBSPOT_WORK_TOPIC``; this same
     function consumes them (they carry ``"shard"``).
  2. Discover: one filtered List of Secret Manager returns every account
     (``hubspot-<account>-refresh-token``, label ``integration=hubspot``) and its status (the
     annotations of ``hubspot-<account>-access-token``). ``enabled=false`` skips an account.
  3. Decide per account: refresh when the access token expires within the margin, has
     expired or its expiry is unknown; not while in backoff; never again after a terminal
     refusal until the refresh token (or the app's client credentials) gets a new version.
  4. Refresh the due accounts concurrently (``HUBSPOT_CONCURRENCY`` threads), each under its
     own lease lock and re-reading its status after taking it: POST the form to the token URL.
  5. Persist: a rotated refresh token first, then the access token and the status annotations.
     One account's failure is recorded on that account and never stops the others.
  6. Report: one summary log line per run; a refused account is an ERROR saying what to do.

When to turn sharding on (``HUBSPOT_SHARD_SIZE`` > 0 with ``HUBSPOT_WORK_TOPIC``): two limits
bound one run. (1) Time: one instance refreshes ``HUBSPOT_CONCURRENCY`` accounts at a time, each
about one HubSpot round trip plus seven Secret Manager and Cloud Storage calls (0.3-1 s), within
``RUN_DEADLINE_SECONDS``; accounts that do not fit are counted as ``deferred`` in the summary.
(2) Secret Manager's project quota: 600 writes and 600 reads per minute, shared by every
instance and integration; a refresh costs 3 writes and 2 reads, so about 200 refreshes a minute
per project (throttled calls wait and retry). Sharding spreads (1) over instances and does
nothing for (2). Turn it on when runs report ``deferred`` > 0 although Secret Manager is not
throttling (its quota was raised, or runs are short of time for another reason, such as a slow
HubSpot); in practice from about 1,500 accounts. Below that, or when the quota is the limit,
leave it off: one instance is simpler and cheaper. To lower the quota use, run more often with
a smaller margin (every 5 minutes with a 7-minute margin refreshes each account about every 25
minutes instead of 15).

HubSpot deprecates the v1 token endpoint on 2027-02-16. Switching to v3 is one setting:
``HUBSPOT_TOKEN_URL=https://api.hubapi.com/oauth/v3/token`` (same form fields, in the body).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import functions_framework
import requests
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc
from hubspot_accounts import (
    CLIENT_ID_ANNOTATION,
    CLIENT_SECRET_ANNOTATION,
    Account,
    account_labels,
    discover,
)

from shared import clock, events, logs
from shared.errors import ProviderError, TerminalError, TransientError
from shared.http import HttpClient, RetryPolicy, form_headers, json_body
from shared.lock import LeaseLock, LockBusy, storage_client
from shared.redact import redact, register
from shared.secrets import SecretStore, SecretValue, with_retry
from shared.settings import ConfigError, env_int, env_optional, env_str, project_id
from shared.status import Backoff, CredentialStatus, Decision, decide

# Error codes after which waiting does not help: the refresh token was revoked, the portal
# was deleted, or the client id and secret are not the app that issued the token (HubSpot
# answers BAD_REFRESH_TOKEN for that too). HubSpot puts its own code in "status" and, since
# the v3 error format, an OAuth code in "error"; both are looked at.
TERMINAL_CODES = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "access_denied",
        "BAD_REFRESH_TOKEN",
        "BAD_HUB",
        "BAD_CLIENT_ID",
    }
)

# Annotation, besides the shared status keys, recording which versions of the app's client
# credentials a terminal refusal happened with: new versions there (a fixed client secret)
# bring the account back just like a new refresh-token version does.
CLIENT_VERSIONS_ANNOTATION = "client-credentials-versions"

T = TypeVar("T")

TRIGGER_FIELDS = frozenset({"force", "accounts"})
WORK_FIELDS = frozenset({"force", "accounts", "shard", "requested_at"})


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
            # v1 until HubSpot retires it on 2027-02-16; .../oauth/v3/token takes the same form.
            token_url=env_str("HUBSPOT_TOKEN_URL", "https://api.hubapi.com/oauth/v1/token"),
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
log = logs.setup("hubspot", "hubspot_refresh", project=SETTINGS.project)


class _Clients:
    """Created on first use and kept for the life of the instance.

    The Secret Manager client (gRPC) is shared by all threads; the HTTP session and the
    Cloud Storage client (both built on a requests session with a small connection pool) are
    one per worker thread.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = SecretStore(settings.project)
        self._local = threading.local()
        self._publisher: Any = None

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
        if self._publisher is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            self._publisher = pubsub_v1.PublisherClient()
        return self._publisher


_clients: _Clients | None = None


def clients() -> _Clients:
    global _clients
    if _clients is None:
        _clients = _Clients(SETTINGS)
    return _clients


# 1. Trigger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    force: bool = False
    accounts: tuple[str, ...] | None = None  # None: every account
    shard: str | None = None  # set on work messages ("3/10")
    requested_at: datetime | None = None  # work messages carry the trigger's publish time


@functions_framework.cloud_event
def hubspot_refresh(cloud_event: CloudEvent) -> None:
    message = events.receive(cloud_event, max_age=SETTINGS.event_max_age)
    if message is None:
        return
    try:
        request = parse_request(message.data)
    except events.BadMessage as error:
        log.warning("ignoring message %s: %s", message.message_id, error)
        return
    requested_at = request.requested_at or message.published_at
    deadline = time.monotonic() + SETTINGS.run_seconds
    if request.shard is None and SETTINGS.shard_size > 0:
        fan_out(SETTINGS, clients(), request, requested_at=requested_at)
        return
    run(SETTINGS, clients(), request, requested_at=requested_at, deadline=deadline)


def parse_request(data: dict[str, Any]) -> RunRequest:
    """``{}``, ``{"force": true}``, ``{"force": true, "accounts": ["62515"]}``, or a work
    message this function published (``"shard"``). Anything else is refused."""
    allowed = WORK_FIELDS if "shard" in data else TRIGGER_FIELDS
    unknown = set(data) - allowed
    if unknown:
        raise events.BadMessage(
            f"unknown fields {sorted(unknown)}; expected {{}}, force, or force with accounts"
        )
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise events.BadMessage("force must be true or false")
    accounts: tuple[str, ...] | None = None
    if "accounts" in data:
        raw = data["accounts"]
        if not isinstance(raw, list) or not raw:
            raise events.BadMessage("accounts must be a non-empty list of account ids")
        if not all(isinstance(a, str | int) and not isinstance(a, bool) for a in raw):
            raise events.BadMessage("accounts must be account ids (strings or numbers)")
        accounts = tuple(dict.fromkeys(str(a).strip() for a in raw))
        if "shard" not in data and not force:
            raise events.BadMessage('accounts only goes with "force": true')
    shard = data.get("shard")
    if shard is not None and (not isinstance(shard, str) or accounts is None):
        raise events.BadMessage("a work message needs shard (text) and accounts")
    requested_at = None
    if "requested_at" in data:
        requested_at = clock.parse_time(str(data["requested_at"]))
        if requested_at is None:
            raise events.BadMessage("requested_at must be an RFC 3339 time")
    return RunRequest(force, accounts, shard, requested_at)


# 2. Discover and 3. decide ---------------------------------------------------------------


@dataclass
class Summary:
    mode: str
    counts: Counter[str] = field(default_factory=Counter)
    shards: int = 0

    def add(self, result: str) -> None:
        self.counts[result] += 1


# Outcome of one account; the summary counts these.
REFRESHED = "refreshed"
FRESH = "skipped_fresh"
BACKOFF = "in_backoff"
FAILED = "failed"
NEEDS_REAUTH = "needs_reauth"
DISABLED = "disabled"
BUSY = "busy"
DEFERRED = "deferred"
UNKNOWN = "unknown"


class _Credentials:
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


def client_secret_ids(settings: Settings, account: Account) -> tuple[str, str]:
    return (
        account.client_id_secret or settings.client_id_secret,
        account.client_secret_secret or settings.client_secret_secret,
    )


def _client_versions(settings: Settings, account: Account, creds: _Credentials) -> str:
    id_secret, secret_secret = client_secret_ids(settings, account)
    return f"{creds.version(id_secret)}/{creds.version(secret_secret)}"


def judge(
    settings: Settings,
    account: Account,
    status: CredentialStatus,
    annotations: dict[str, str],
    rt_version: int | None,
    request: RunRequest,
    requested_at: datetime | None,
    creds: _Credentials,
) -> Decision:
    """``shared.status.decide`` plus two HubSpot-run rules: a message published before the
    account's last refresh needs no second one (duplicate deliveries, shards of the same run),
    and new client-credential versions lift a terminal refusal like a new refresh token."""
    if (
        requested_at is not None
        and status.state == "ok"
        and status.refreshed_at is not None
        and status.refreshed_at >= requested_at
    ):
        return Decision(False, "already refreshed since the request")
    if status.state == "needs-reauth":
        recorded = annotations.get(CLIENT_VERSIONS_ANNOTATION)
        if recorded and recorded != _client_versions(settings, account, creds):
            return Decision(True, "client credentials changed")
    return decide(
        status,
        now=clock.now(),
        margin=settings.margin,
        refresh_token_version=rt_version,
        force=request.force,
        requested_at=requested_at,
    )


def _skip_result(decision: Decision) -> str:
    if decision.reason == "backoff":
        return BACKOFF
    if decision.reason == "needs-reauth":
        return NEEDS_REAUTH
    return FRESH


def plan(
    settings: Settings,
    c: _Clients,
    accounts: list[Account],
    request: RunRequest,
    requested_at: datetime | None,
    creds: _Credentials,
    summary: Summary,
) -> list[Account]:
    """The accounts worth locking, from the listed status alone (re-checked under the lock).

    A healthy account's refresh-token version is not looked up here: a new version on it is
    picked up by its next due refresh, which reads the latest version anyway.
    """
    due = []
    for account in accounts:
        if not account.enabled:
            summary.add(DISABLED)
            continue
        annotations = account.status_annotations or {}
        status = CredentialStatus.from_annotations(annotations)
        try:
            rt_version = (
                status.refresh_token_version
                if status.state == "ok"
                else c.store.latest_version(account.refresh_token_secret)
            )
            decision = judge(
                settings, account, status, annotations, rt_version, request, requested_at, creds
            )
        except Exception as error:  # noqa: BLE001 - the locked re-read decides, or fails alone
            log.warning("account %s: could not pre-check (%s)", account.account_id, error)
            due.append(account)
            continue
        if decision.refresh:
            due.append(account)
        else:
            summary.add(_skip_result(decision))
    return due


def select(accounts: list[Account], request: RunRequest, summary: Summary) -> list[Account]:
    if request.accounts is None:
        return accounts
    by_id = {a.account_id: a for a in accounts}
    missing = [a for a in request.accounts if a not in by_id]
    for account_id in missing:
        summary.add(UNKNOWN)
        log.warning(
            "account %s was requested but no secret hubspot-%s-refresh-token labelled "
            "integration=hubspot exists; add it with `python -m cli hubspot add-account`",
            account_id,
            account_id,
        )
    return [by_id[a] for a in request.accounts if a in by_id]


def run(
    settings: Settings,
    c: _Clients,
    request: RunRequest,
    *,
    requested_at: datetime | None,
    deadline: float,
) -> Summary:
    started = time.monotonic()
    mode = "shard" if request.shard else ("forced" if request.force else "scheduled")
    summary = Summary(mode)
    try:
        accounts = select(discover(c.store), request, summary)
        creds = _Credentials(c.store)
        due = plan(settings, c, accounts, request, requested_at, creds, summary)
    except Exception:
        # Without the account list nothing can be decided: Pub/Sub delivers again.
        log.exception("could not list HubSpot accounts; Pub/Sub will deliver the run again")
        report(summary, time.monotonic() - started, seen=0, error="discovery_failed")
        raise

    # 4. Refresh the due accounts, a bounded number at a time ------------------------------
    def one(account: Account) -> str:
        if time.monotonic() >= deadline:
            return DEFERRED
        try:
            return refresh_account(settings, c, account, request, requested_at, creds, deadline)
        except Exception as error:  # noqa: BLE001 - one account never stops the others
            log.error(
                "account %s: refresh failed unexpectedly (%s: %s); the next run tries again",
                account.account_id,
                type(error).__name__,
                redact(str(error))[:300],
                extra=logs.fields(account=account.account_id, outcome=FAILED),
            )
            return FAILED

    if due:
        with ThreadPoolExecutor(
            max_workers=min(settings.concurrency, len(due)), thread_name_prefix="hubspot"
        ) as pool:
            for result in pool.map(one, due):
                summary.add(result)
    if summary.counts[DEFERRED]:
        log.warning(
            "%d due accounts did not fit in this run's %ds; raise HUBSPOT_CONCURRENCY or turn "
            "on sharding (HUBSPOT_SHARD_SIZE, HUBSPOT_WORK_TOPIC)",
            summary.counts[DEFERRED],
            settings.run_seconds,
        )
    report(summary, time.monotonic() - started, seen=len(accounts), shard=request.shard)
    return summary


def refresh_account(
    settings: Settings,
    c: _Clients,
    account: Account,
    request: RunRequest,
    requested_at: datetime | None,
    creds: _Credentials,
    deadline: float,
) -> str:
    """Lock the account, re-read its status, and refresh it if still due.

    Secret Manager allows 600 read and 600 write requests per minute per project (access
    requests: 90,000), so each refresh costs 2 reads, 3 writes and 1 access, and a throttled
    call (429) waits and retries: the quota then paces the pool instead of failing accounts.
    """
    lock = LeaseLock(c.bucket(), f"hubspot-{account.account_id}", lease=settings.lock_lease)
    wait = max(0.0, min(settings.lock_wait_seconds, deadline - time.monotonic()))
    try:
        with lock.held(wait):
            # Re-read: a run that held the lock before us may have done the work.
            info = _retrying(
                lambda: c.store.info_optional(account.access_token_secret), deadline, "status"
            )
            annotations = dict(info.annotations) if info else {}
            status = CredentialStatus.from_annotations(annotations)
            try:
                # An access request (generous quota) that also tells the latest version.
                refresh_token = _retrying(
                    lambda: c.store.read(account.refresh_token_secret), deadline, "refresh token"
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
                return _skip_result(decision)
            return _refresh(
                settings,
                c,
                account,
                status,
                info is not None,
                refresh_token,
                decision,
                creds,
                deadline,
            )
    except LockBusy:
        log.warning(
            "account %s: another run holds its refresh lock; leaving it to that run",
            account.account_id,
            extra=logs.fields(account=account.account_id, outcome=BUSY),
        )
        return BUSY


# 4. Call HubSpot -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None


def call_hubspot(
    settings: Settings,
    http: HttpClient,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    *,
    deadline: float | None = None,
) -> Tokens:
    """POST the refresh form. Everything travels in the body, so the URL is safe to log."""
    response = http.request(
        "POST",
        settings.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
        headers=form_headers(),
        deadline=deadline,
    )
    if response.status_code != 200:
        raise token_error(response)
    body = json_body(response)
    access_token = body.get("access_token")
    new_refresh_token = body.get("refresh_token")
    if not isinstance(access_token, str) or not access_token:
        # HubSpot refresh tokens are reusable, so the stored one still works: try again later.
        raise TransientError(
            "HubSpot token endpoint answered 200 without an access_token",
            code="malformed_response",
        )
    register(access_token, new_refresh_token if isinstance(new_refresh_token, str) else None)
    expires_in = body.get("expires_in")
    expires_at = (
        clock.now() + timedelta(seconds=int(expires_in))
        if isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and expires_in > 0
        else None  # unknown: the next run refreshes
    )
    return Tokens(
        access_token,
        new_refresh_token if isinstance(new_refresh_token, str) and new_refresh_token else None,
        expires_at,
    )


def token_error(response: requests.Response) -> ProviderError:
    """A refused refresh as TERMINAL (a person must act) or TRANSIENT (wait and retry).

    Only codes that mean "this refresh token or client is refused" are terminal: a
    misconfigured URL (404) or a proxy's 403 must not lock every account into needs-reauth.
    """
    body = json_body(response)
    candidates = [body.get("status"), body.get("error"), body.get("category")]
    codes = [c for c in candidates if isinstance(c, str) and c and c.lower() != "error"]
    code = next((c for c in codes if c in TERMINAL_CODES), codes[0] if codes else "")
    code = code or f"http_{response.status_code}"
    description = str(body.get("error_description") or body.get("message") or "")[:200]
    message = f"HubSpot token endpoint: HTTP {response.status_code} {code}"
    if description:
        message += f" ({redact(description)})"
    if code in TERMINAL_CODES and 400 <= response.status_code < 500:
        return TerminalError(message, code=code, status=response.status_code)
    return TransientError(message, code=code, status=response.status_code)


# 5. Persist ------------------------------------------------------------------------------


def _refresh(
    settings: Settings,
    c: _Clients,
    account: Account,
    status: CredentialStatus,
    access_secret_exists: bool,
    refresh_token: SecretValue,
    decision: Decision,
    creds: _Credentials,
    deadline: float,
) -> str:
    account_id = account.account_id
    fields = logs.fields(account=account_id)
    log.info("account %s: refreshing (%s)", account_id, decision.reason, extra=fields)
    if not access_secret_exists:
        # Before calling HubSpot, so a missing permission costs no token. `hubspot
        # add-account` creates it up front; this covers accounts added by hand.
        c.store.create(account.access_token_secret, labels=account_labels(account_id))
    id_secret, secret_secret = client_secret_ids(settings, account)
    try:
        client_id, id_version = creds.value(id_secret)
        client_secret, secret_version = creds.value(secret_secret)
    except (gexc.NotFound, gexc.FailedPrecondition, gexc.PermissionDenied) as error:
        # A configuration problem, not the account's: back off and say which secret.
        return _failed(
            settings,
            c,
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
        )
    client_versions = f"{id_version}/{secret_version}"
    try:
        tokens = call_hubspot(
            settings, c.http, client_id, client_secret, refresh_token.value, deadline=deadline
        )
    except ProviderError as error:
        return _failed(
            settings,
            c,
            account,
            status,
            error,
            rt_version=refresh_token.version,
            client_versions=client_versions,
        )

    rt_version = refresh_token.version
    if tokens.refresh_token is not None and tokens.refresh_token != refresh_token.value:
        # Rotated: store it before anything else ("always use the latest one").
        try:
            rt_version = with_retry(
                lambda: c.store.add_version(
                    account.refresh_token_secret, tokens.refresh_token or ""
                ),
                deadline=deadline,
                what=f"storing {account.refresh_token_secret}",
            )
        except Exception as error:  # noqa: BLE001 - recorded; the previous token is kept
            return _failed(
                settings,
                c,
                account,
                status,
                TransientError(
                    f"HubSpot returned a new refresh token that could not be stored "
                    f"({type(error).__name__}); the previous one is kept",
                    code="refresh_token_not_stored",
                ),
                rt_version=refresh_token.version,
                client_versions=client_versions,
            )
    at_version = with_retry(
        lambda: c.store.add_version(account.access_token_secret, tokens.access_token),
        deadline=deadline,
        what=f"storing {account.access_token_secret}",
    )
    changes = status.succeeded(
        now=clock.now(), expires_at=tokens.expires_at, refresh_token_version=rt_version
    ).to_annotations()
    changes[CLIENT_VERSIONS_ANNOTATION] = None
    with_retry(
        lambda: c.store.update_annotations(account.access_token_secret, changes),
        deadline=deadline,
        what=f"annotating {account.access_token_secret}",
    )
    _prune(settings, c, account.access_token_secret, at_version)
    if rt_version != refresh_token.version:
        _prune(settings, c, account.refresh_token_secret, rt_version)
    return REFRESHED


def _failed(
    settings: Settings,
    c: _Clients,
    account: Account,
    status: CredentialStatus,
    error: ProviderError,
    *,
    rt_version: int | None,
    client_versions: str | None,
) -> str:
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
    try:
        c.store.update_annotations(account.access_token_secret, changes)
    except Exception as write_error:  # noqa: BLE001 - the status is a report; the run goes on
        log.error(
            "account %s: could not record its status on %s (%s)",
            account_id,
            account.access_token_secret,
            type(write_error).__name__,
        )
    return result


# A full listing-based prune every this many versions catches up on any destroy that failed.
FULL_PRUNE_EVERY = 50


def _prune(settings: Settings, c: _Clients, secret_id: str, newest: int) -> None:
    """Destroy the version that just left the kept window: one write, no listing (a read).

    Destroyed versions cost nothing; every live one is billed monthly.
    """
    oldest_kept = newest - settings.versions_to_keep + 1
    try:
        if newest % FULL_PRUNE_EVERY == 0:
            c.store.prune(secret_id, keep=settings.versions_to_keep)
        elif oldest_kept > 1:
            c.store.client.destroy_secret_version(
                request={"name": f"{c.store.path(secret_id)}/versions/{oldest_kept - 1}"}
            )
    except (gexc.NotFound, gexc.FailedPrecondition):
        pass  # already destroyed (or never existed): nothing to do
    except Exception as error:  # noqa: BLE001 - old versions cost cents; the run succeeded
        log.warning("could not prune old versions of %s: %s", secret_id, error)


def _retrying(operation: Callable[[], T], deadline: float, what: str) -> T:
    """A Secret Manager read, retried when throttled or unavailable, for at most a minute."""
    return with_retry(operation, deadline=min(deadline, time.monotonic() + 60), what=what)


# Sharding --------------------------------------------------------------------------------


def fan_out(
    settings: Settings,
    c: _Clients,
    request: RunRequest,
    *,
    requested_at: datetime | None,
    publish: Callable[[bytes], None] | None = None,
) -> Summary:
    """Plan the run and publish the due accounts as shards to the work topic.

    Each shard is one message; this same function consumes it and refreshes those accounts
    (under their locks, with the re-read), so a redelivered trigger only costs a re-plan.
    """
    started = time.monotonic()
    summary = Summary("fan_out")
    try:
        accounts = select(discover(c.store), request, summary)
        due = plan(settings, c, accounts, request, requested_at, _Credentials(c.store), summary)
        chunks = list(_chunks([a.account_id for a in due], settings.shard_size))
        send = publish or _publisher(settings, c)
        for index, chunk in enumerate(chunks, start=1):
            payload: dict[str, Any] = {
                "accounts": chunk,
                "force": request.force,
                "shard": f"{index}/{len(chunks)}",
            }
            if requested_at is not None:
                payload["requested_at"] = clock.format_precise_time(requested_at)
            send(json.dumps(payload).encode("utf-8"))
    except Exception:
        log.exception("could not plan or publish the HubSpot shards; Pub/Sub delivers again")
        report(summary, time.monotonic() - started, seen=0, error="fan_out_failed")
        raise
    summary.shards = len(chunks)
    summary.counts["dispatched"] = len(due)
    report(summary, time.monotonic() - started, seen=len(accounts))
    return summary


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _publisher(settings: Settings, c: _Clients) -> Callable[[bytes], None]:
    topic = settings.work_topic or ""
    if not topic.startswith("projects/"):
        topic = f"projects/{settings.project}/topics/{topic}"
    publisher = c.publisher()

    def send(data: bytes) -> None:
        publisher.publish(topic, data).result(timeout=60)

    return send


# 6. Report -------------------------------------------------------------------------------


def report(
    summary: Summary,
    seconds: float,
    *,
    seen: int,
    shard: str | None = None,
    error: str | None = None,
) -> None:
    n = summary.counts
    values: dict[str, Any] = {
        "event": "run_summary",
        "provider": "hubspot",
        "mode": summary.mode,
        # "failed" only when the run itself failed; account failures are in the counters.
        "result": "failed" if error else "completed",
        "accounts_seen": seen,
        "refreshed": n[REFRESHED],
        "skipped_fresh": n[FRESH],
        "in_backoff": n[BACKOFF],
        "failed": n[FAILED],
        "needs_reauth": n[NEEDS_REAUTH],
        "disabled": n[DISABLED],
        "busy": n[BUSY],
        "deferred": n[DEFERRED],
        "unknown_requested": n[UNKNOWN],
        "duration_seconds": round(seconds, 3),
    }
    if summary.mode == "fan_out":
        values.update(shards=summary.shards, dispatched=n["dispatched"])
    if shard:
        values["shard"] = shard
    if error:
        values["error"] = error
    log.log(
        40 if error else 20,
        "HubSpot %s run: %d accounts, %d refreshed, %d fresh, %d in backoff, %d failed, "
        "%d need re-authorisation",
        summary.mode,
        seen,
        n[REFRESHED],
        n[FRESH],
        n[BACKOFF],
        n[FAILED],
        n[NEEDS_REAUTH],
        extra=logs.fields(**values),
    )
