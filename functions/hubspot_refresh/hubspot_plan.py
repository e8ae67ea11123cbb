"""What a HubSpot run decides: which message it got, which accounts are due, what each counts as.

Pure: no environment variables, no framework, no I/O of its own. What a decision needs from
Secret Manager (a refresh-token version, the app's client-credential versions) comes in as an
argument shaped by the small protocols below, so these rules are tested without any service.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared import clock, events
from shared.status import CredentialStatus, Decision, decide

if TYPE_CHECKING:
    # Only the type: importing hubspot_accounts at run time would load the Secret Manager
    # client into a module that promises not to talk to it.
    from hubspot_accounts import Account

log = logging.getLogger("hubspot_refresh")  # the function's logger: see main.log

# Annotation, besides the shared status keys, recording which versions of the app's client
# credentials a terminal refusal happened with: new versions there (a fixed client secret)
# bring the account back just like a new refresh-token version does.
CLIENT_VERSIONS_ANNOTATION = "client-credentials-versions"

TRIGGER_FIELDS = frozenset({"force", "accounts"})
WORK_FIELDS = frozenset({"force", "accounts", "shard", "requested_at", "apps"})
# What a work message may say of an account's app: the annotations of its refresh-token
# secret naming another app's client id and secret (hubspot_accounts), each a secret id.
APP_KEYS = frozenset({"client-id-secret", "client-secret-secret"})
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")

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


class PlanSettings(Protocol):
    """The settings a decision reads (main.Settings has them, among others)."""

    @property
    def margin(self) -> timedelta: ...

    @property
    def client_id_secret(self) -> str: ...

    @property
    def client_secret_secret(self) -> str: ...


class CredentialVersions(Protocol):
    """Latest versions of the app's client-credential secrets, read at most once per run."""

    def version(self, secret_id: str) -> int | None: ...


class VersionLookup(Protocol):
    """The latest version of a secret (SecretStore has it)."""

    def latest_version(self, secret_id: str) -> int | None: ...


# 1. Trigger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    force: bool = False
    accounts: tuple[str, ...] | None = None  # None: every account
    shard: str | None = None  # set on work messages ("3/10")
    requested_at: datetime | None = None  # work messages carry the trigger's publish time
    # Work messages of a fan-out that planned from its own listing: account -> the secret ids
    # of its other app's credentials (accounts of the default app are absent). Set, the shard
    # refreshes its accounts without listing every account again; None (a trigger, or a work
    # message of an earlier version) lists and plans as before.
    apps: dict[str, dict[str, str]] | None = None


def parse_request(data: dict[str, Any]) -> RunRequest:
    """``{}``, ``{"force": true}``, ``{"force": true, "accounts": ["62515"]}``, or a work
    message this function published (``"shard"``). Anything else is refused."""
    allowed = WORK_FIELDS if "shard" in data else TRIGGER_FIELDS
    events.refuse_unknown_fields(data, allowed, "{}, force, or force with accounts")
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
    apps = _parse_apps(data["apps"]) if "apps" in data else None
    return RunRequest(force, accounts, shard, requested_at, apps)


def _parse_apps(raw: object) -> dict[str, dict[str, str]]:
    problem = events.BadMessage(
        "apps must map account ids to {client-id-secret, client-secret-secret} secret ids"
    )
    if not isinstance(raw, dict):
        raise problem
    apps: dict[str, dict[str, str]] = {}
    for account, app in raw.items():
        if not isinstance(app, dict) or not set(app) <= APP_KEYS:
            raise problem
        if not all(isinstance(v, str) and _SECRET_ID.fullmatch(v) for v in app.values()):
            raise problem
        apps[str(account)] = dict(app)
    return apps


# 2. Select and 3. decide -----------------------------------------------------------------


@dataclass
class RunSummary:
    """The counters of one run (or one fan-out), reported by hubspot_report."""

    mode: str
    counts: Counter[str] = field(default_factory=Counter)
    shards: int = 0

    def add(self, result: str) -> None:
        self.counts[result] += 1


def run_result(summary: RunSummary, *, error: str | None) -> str:
    """How a run (or a fan-out) ended, as monitoring counts it.

    ``completed`` (a success) needs at least one account that is refreshed or still fresh, or
    only accounts another run or the next run handles (busy, deferred). A run where every
    account it looked at waits for a person or fails is ``unhealthy``, and one that found no
    enabled account is ``no_accounts``: monitoring must not count either as a success, or an
    integration whose every account is refused would look healthy after the first alert.
    A fan-out that sent shards is ``dispatched``: the shards report how it went.
    """
    n = summary.counts
    if error:
        return "failed"
    if summary.mode == "fan_out" and n["dispatched"]:
        return "dispatched"
    if n[REFRESHED] + n[FRESH]:
        return "completed"
    if n[FAILED] + n[NEEDS_REAUTH] + n[BACKOFF]:
        return "unhealthy"
    if n[BUSY] + n[DEFERRED]:
        return "completed"
    return "no_accounts"


def client_secret_ids(settings: PlanSettings, account: Account) -> tuple[str, str]:
    return (
        account.client_id_secret or settings.client_id_secret,
        account.client_secret_secret or settings.client_secret_secret,
    )


def _client_versions(settings: PlanSettings, account: Account, creds: CredentialVersions) -> str:
    id_secret, secret_secret = client_secret_ids(settings, account)
    return f"{creds.version(id_secret)}/{creds.version(secret_secret)}"


def judge(
    settings: PlanSettings,
    account: Account,
    status: CredentialStatus,
    annotations: dict[str, str],
    rt_version: int | None,
    request: RunRequest,
    requested_at: datetime | None,
    creds: CredentialVersions,
) -> Decision:
    """``shared.status.decide`` plus two HubSpot-run rules: a message published before the
    account's last refresh needs no second one (duplicate deliveries, shards of the same run),
    and new client-credential versions lift a terminal refusal like a new refresh token."""
    if served_since(status, requested_at):
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


def served_since(status: CredentialStatus, requested_at: datetime | None) -> bool:
    """The account was refreshed after the message was published: nothing left to do."""
    return (
        requested_at is not None
        and status.state == "ok"
        and status.refreshed_at is not None
        and status.refreshed_at >= requested_at
    )


def skip_result(decision: Decision) -> str:
    """The outcome counted for an account the decision leaves alone."""
    if decision.reason == "backoff":
        return BACKOFF
    if decision.reason == "needs-reauth":
        return NEEDS_REAUTH
    return FRESH


def plan(
    settings: PlanSettings,
    store: VersionLookup,
    accounts: list[Account],
    request: RunRequest,
    requested_at: datetime | None,
    creds: CredentialVersions,
    summary: RunSummary,
) -> list[Account]:
    """The accounts worth locking, from the listed status alone (re-checked under the lock).

    A healthy account's refresh-token version is not looked up here, nor that of an account
    whose status records none (new): a new version on it is picked up by its next due
    refresh, which reads the latest version anyway.
    """
    due = []
    for account in accounts:
        if not account.enabled:
            summary.add(DISABLED)
            continue
        annotations = account.status_annotations or {}
        status = CredentialStatus.from_annotations(annotations)
        try:
            # Only a status that recorded the version it failed with can be lifted by a new
            # one; any other decision is the same whatever the latest version is.
            rt_version = (
                status.refresh_token_version
                if status.state == "ok" or status.refresh_token_version is None
                else store.latest_version(account.refresh_token_secret)
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
            summary.add(skip_result(decision))
    return due


def select(accounts: list[Account], request: RunRequest, summary: RunSummary) -> list[Account]:
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
