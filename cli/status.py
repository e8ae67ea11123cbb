"""``python -m cli status``: every credential and subscription in one table, in the spirit of
``kubectl get certificates``; ``--json`` for scripts. The exit status is 1 when anything needs
attention (needs re-authorisation, expired, failing, in backoff, about to expire), so it can
run from cron or CI; 0 otherwise. Integrations that are not deployed or have no credentials
yet show as "not configured" and need no attention.

Where each row comes from:
- Bitrix24: the status annotations on the access-token secret.
- HubSpot: every account secret labelled ``integration=hubspot`` and its status annotations;
  a ``token endpoint`` row while the endpoint the function last used awaits its retirement.
- Microsoft Graph: the subscriptions Graph lists for the app (credentials from Secret Manager).
- Cegid: by the deployed ``CEGID_MODE`` (the ``cegid-transfer`` function's environment, read
  through the Cloud Functions API): the expiry (``se``) of the SAS URL in ``sas_url`` mode, the
  API key's presence in ``api`` mode; and the last successful transfer, a status object the
  function writes in its state bucket.
- Universign: the transaction documents in its state bucket.

Below the rows, every Cloud Scheduler job of the deployment (Cloud Scheduler API): schedule,
time zone, state, last attempt and its result, next run. A job that is not enabled or whose
last attempt failed needs attention. On the local stack there is no Cloud Scheduler: see
``python -m devtools.scheduler list``.

Values of secrets are read only where needed (Graph credentials, the SAS URL) and never shown.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cli._functions import GoogleApiError, Settings, api_url, get_json, region, use_function_folder
from shared import clock
from shared.errors import ProviderError
from shared.http import HttpClient
from shared.redact import redact
from shared.secrets import SecretStore
from shared.status import CredentialStatus

ATTENTION = frozenset(
    {"needs-reauth", "expired", "failing", "backoff", "expiring", "error", "missing"}
)
NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class Row:
    integration: str
    item: str
    state: str
    expires_at: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    detail: str = ""

    @property
    def attention(self) -> bool:
        return self.state in ATTENTION

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "integration": self.integration,
            "item": self.item,
            "state": self.state,
            "attention": self.attention,
            "expires_at": clock.format_time(self.expires_at) if self.expires_at else None,
            "expires_in_seconds": (
                int((self.expires_at - now).total_seconds()) if self.expires_at else None
            ),
            "last_success": clock.format_time(self.last_success) if self.last_success else None,
            "last_error": self.last_error,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Context:
    project: str
    store: SecretStore
    now: datetime
    universign_bucket: str
    b24_access_token_secret: str
    b24_refresh_token_secret: str
    graph_secrets: tuple[str, str, str]
    graph_login_url: str
    graph_api_url: str
    graph_warn: timedelta
    region: str
    state_bucket: str | None
    cegid_sas_warn: timedelta


# --------------------------------------------------------------------------- registration


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="every credential and subscription; exit 1 when something needs attention",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    env = os.environ.get
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--project", help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT)")
    parser.add_argument(
        "--universign-bucket",
        help="Universign's state bucket (default: UNIVERSIGN_STATE_BUCKET or "
        "<project>-universign-state, as Terraform names it)",
    )
    parser.add_argument(
        "--b24-access-token-secret", default=env("B24_ACCESS_TOKEN_SECRET", "b24-access-token")
    )
    parser.add_argument(
        "--b24-refresh-token-secret", default=env("B24_REFRESH_TOKEN_SECRET", "b24-refresh-token")
    )
    parser.add_argument(
        "--graph-warn-hours",
        type=float,
        default=12.0,
        help="a Graph subscription expiring sooner needs attention (default 12)",
    )
    parser.add_argument("--region", help="region of the jobs and functions (default REGION)")
    parser.add_argument(
        "--state-bucket",
        help="the functions' state bucket (default: STATE_BUCKET, else the deployed "
        "cegid-transfer function's, else <project>-keepalive-state, as Terraform names it)",
    )
    warn = parser.add_mutually_exclusive_group()
    warn.add_argument(
        "--cegid-warn-hours",
        type=float,
        default=6.0,
        help="in sas_url mode, a SAS URL expiring sooner needs attention (default 6; the "
        "portal's SAS URLs last 24 h)",
    )
    warn.add_argument("--cegid-warn-days", type=float, help="the same in days")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    project = args.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        print("status: give --project or set GOOGLE_CLOUD_PROJECT", file=sys.stderr)
        return 2
    env = os.environ.get
    ctx = Context(
        project=project,
        store=SecretStore(project),
        now=clock.now(),
        universign_bucket=args.universign_bucket
        or env("UNIVERSIGN_STATE_BUCKET")
        or f"{project}-universign-state",
        b24_access_token_secret=args.b24_access_token_secret,
        b24_refresh_token_secret=args.b24_refresh_token_secret,
        graph_secrets=(
            env("GRAPH_TENANT_ID_SECRET", "graph-tenant-id"),
            env("GRAPH_CLIENT_ID_SECRET", "graph-client-id"),
            env("GRAPH_CLIENT_SECRET_SECRET", "graph-client-secret"),
        ),
        graph_login_url=env("GRAPH_LOGIN_URL", "https://login.microsoftonline.com"),
        graph_api_url=env("GRAPH_API_URL", "https://graph.microsoft.com"),
        graph_warn=timedelta(hours=args.graph_warn_hours),
        region=region(args.region),
        state_bucket=args.state_bucket,
        cegid_sas_warn=(
            timedelta(days=args.cegid_warn_days)
            if args.cegid_warn_days is not None
            else timedelta(hours=args.cegid_warn_hours)
        ),
    )
    rows = collect(ctx)
    jobs = scheduler_jobs(ctx)
    attention = sum(r.attention for r in rows) + jobs.attention
    if args.json:
        report = {
            "items": [r.to_json(ctx.now) for r in rows],
            "jobs": [job.to_json() for job in jobs.rows],
            "jobs_error": jobs.error,
            "attention": attention,
        }
        print(json.dumps(report, indent=2))
    else:
        print(render(rows, ctx.now, jobs))
    return 1 if attention else 0


Collector = Callable[[Context], list[Row]]


def collect(ctx: Context) -> list[Row]:
    collectors: list[tuple[str, Collector]] = [
        ("bitrix24", bitrix24_rows),
        ("hubspot", hubspot_rows),
        ("graph", graph_rows),
        ("cegid", cegid_rows),
        ("universign", universign_rows),
    ]
    rows: list[Row] = []
    for integration, collector in collectors:
        try:
            rows += collector(ctx)
        except Exception as error:  # noqa: BLE001 - one integration must not hide the others
            rows.append(Row(integration, "-", "error", last_error=_error_text(error)))
    return rows


def _error_text(error: BaseException) -> str:
    return redact(f"{type(error).__name__}: {error}")[:300]


# --------------------------------------------------------------------------- credentials


def credential_row(integration: str, item: str, status: CredentialStatus, now: datetime) -> Row:
    """The state a person reads: needs-reauth, expired, backoff and failing need attention."""
    if status.state == "needs-reauth":
        state = "needs-reauth"
    elif status.expires_at is not None and status.expires_at <= now:
        state = "expired"
    elif status.state == "backoff":
        state = "backoff"
    elif status.last_error_at is not None and (
        status.refreshed_at is None or status.last_error_at > status.refreshed_at
    ):
        state = "failing"
    elif status.state == "unknown" and status.refreshed_at is None:
        state = "pending"  # deployed, not refreshed yet
    else:
        state = "ok"
    error = None
    if status.last_error:
        when = clock.format_time(status.last_error_at) if status.last_error_at else "?"
        error = f"{when} {status.last_error}"
    return Row(integration, item, state, status.expires_at, status.refreshed_at, error)


def bitrix24_rows(ctx: Context) -> list[Row]:
    info = ctx.store.info_optional(ctx.b24_access_token_secret)
    if info is None:
        return [Row("bitrix24", ctx.b24_access_token_secret, NOT_CONFIGURED)]
    status = CredentialStatus.from_annotations(info.annotations)
    if status.state == "unknown" and ctx.store.latest_version(ctx.b24_refresh_token_secret) is None:
        return [
            Row(
                "bitrix24",
                ctx.b24_access_token_secret,
                NOT_CONFIGURED,
                detail=f"add a version of {ctx.b24_refresh_token_secret}",
            )
        ]
    return [credential_row("bitrix24", ctx.b24_access_token_secret, status, ctx.now)]


def hubspot_rows(ctx: Context) -> list[Row]:
    use_function_folder("hubspot_refresh")
    # A function-folder module, outside mypy's search path here: imported by name.
    hubspot_accounts: Any = importlib.import_module("hubspot_accounts")
    hubspot_endpoint: Any = importlib.import_module("hubspot_endpoint")
    accounts = hubspot_accounts.discover(ctx.store)
    if not accounts:
        return [Row("hubspot", "accounts", NOT_CONFIGURED)]
    rows = []
    # The endpoint the function used last (recorded on the accounts), while HubSpot retires it.
    endpoint = hubspot_endpoint.last_used_endpoint(a.status_annotations or {} for a in accounts)
    notice = hubspot_endpoint.endpoint_notice(endpoint, ctx.now.date()) if endpoint else None
    if notice is not None:
        retires_at = clock.parse_time(f"{notice.retires_on}T00:00:00Z")
        item = f"token endpoint {urlsplit(notice.endpoint).path}"
        fix = f"set HUBSPOT_TOKEN_URL to {notice.replacement}"
        rows.append(Row("hubspot", item, notice.state, expires_at=retires_at, detail=fix))
    for account in accounts:
        item = f"account {account.account_id}"
        if not account.enabled:
            rows.append(Row("hubspot", item, "disabled"))
            continue
        status = CredentialStatus.from_annotations(account.status_annotations or {})
        rows.append(credential_row("hubspot", item, status, ctx.now))
    return rows


# --------------------------------------------------------------------------- Graph


def graph_rows(ctx: Context) -> list[Row]:
    if any(ctx.store.latest_version(s) is None for s in ctx.graph_secrets):
        return [Row("graph", "subscriptions", NOT_CONFIGURED)]
    use_function_folder("graph_webhook_renew")
    graph_api: Any = importlib.import_module("graph_api")

    tenant, client, secret = ctx.graph_secrets

    def credentials() -> Any:
        return graph_api.AppCredentials(
            ctx.store.read(tenant).value, ctx.store.read(client).value, ctx.store.read(secret).value
        )

    http = HttpClient(timeout=15)
    token = graph_api.AppToken(http, ctx.graph_login_url, credentials)
    graph = graph_api.GraphClient(http, ctx.graph_api_url, token)
    try:
        subscriptions = graph.list_subscriptions(deadline=time.monotonic() + 60)
    except ProviderError as error:
        state = "needs-reauth" if error.terminal else "error"
        return [Row("graph", "subscriptions", state, last_error=_error_text(error))]
    if not subscriptions:
        return [Row("graph", "subscriptions", "missing", detail="Graph lists no subscription")]
    rows = []
    for sub in sorted(subscriptions, key=lambda s: (s.expires_at is None, s.expires_at, s.id)):
        if sub.expires_at is None:
            state = "ok"
        elif sub.expires_at <= ctx.now:
            state = "expired"
        elif sub.expires_at - ctx.now <= ctx.graph_warn:
            state = "expiring"
        else:
            state = "ok"
        item = f"{sub.resource} ({sub.change_type})"
        rows.append(Row("graph", item, state, sub.expires_at, detail=f"id {sub.id}"))
    return rows


# --------------------------------------------------------------------------- Cegid


CEGID_FUNCTION = "cegid-transfer"  # terraform/cegid.tf


def cegid_rows(ctx: Context) -> list[Row]:
    """One row, by the deployed CEGID_MODE: only the credential that mode uses is reported."""
    settings = Settings(ctx.project, ctx.region, CEGID_FUNCTION, {"STATE_BUCKET": ctx.state_bucket})
    mode = settings.get("CEGID_MODE", "api")  # the function's default
    source = settings.sources["CEGID_MODE"]
    shown_mode = f"mode {mode}" + (
        "" if source in ("environment", f"deployed function {CEGID_FUNCTION}") else " (default)"
    )
    if mode not in ("api", "sas_url"):
        return [Row("cegid", "mode", "error", last_error=f"CEGID_MODE={mode!r}: api or sas_url")]
    state_bucket = settings.get("STATE_BUCKET") or f"{ctx.project}-keepalive-state"
    last_success, last_run = last_transfer(ctx, state_bucket)
    if mode == "sas_url":
        secret = settings.get("CEGID_SAS_URL_SECRET") or "cegid-sas-url"
        sas = ctx.store.read_optional(secret)
        if sas is None:
            return [
                Row(
                    "cegid",
                    "sas url",
                    NOT_CONFIGURED,
                    detail=f"{shown_mode}: add a version of {secret}",
                )
            ]
        expiry_text = (parse_qs(urlsplit(sas.value).query).get("se") or [""])[0]
        expires_at = clock.parse_time(expiry_text)
        if expires_at is None:
            state = "ok"
        elif expires_at <= ctx.now:
            state = "expired"
        elif expires_at - ctx.now <= ctx.cegid_sas_warn:
            state = "expiring"
        else:
            state = "ok"
        detail = f"{shown_mode}, secret {sas.version}{last_run}"
        return [Row("cegid", "sas url", state, expires_at, last_success, detail=detail)]
    key_secret = settings.get("CEGID_API_KEY_SECRET_SECRET") or "cegid-api-key-secret"
    if ctx.store.latest_version(key_secret) is None:
        return [
            Row(
                "cegid",
                "api key",
                NOT_CONFIGURED,
                detail=f"{shown_mode}: add a version of {key_secret}",
            )
        ]
    detail = f"{shown_mode}, no expiry recorded{last_run}"
    return [Row("cegid", "api key", "ok", last_success=last_success, detail=detail)]


def last_transfer(ctx: Context, state_bucket: str) -> tuple[datetime | None, str]:
    """When the last successful transfer ended, and what it moved (from the status object
    cegid_transfer writes in its state bucket); (None, "") before the first one."""
    from google.api_core import exceptions as gexc
    from google.cloud import storage  # type: ignore[attr-defined]

    use_function_folder("cegid_transfer")
    cegid_plan: Any = importlib.import_module("cegid_plan")
    blob = storage.Client(project=ctx.project).bucket(state_bucket).blob(cegid_plan.STATUS_OBJECT)
    try:
        document = json.loads(blob.download_as_bytes())
    except (gexc.NotFound, ValueError):
        return None, ""
    if not isinstance(document, dict):
        return None, ""
    finished = clock.parse_time(document.get("last_success_at"))
    files, size = document.get("files"), document.get("bytes")
    return finished, f"; last transfer moved {files} files ({size} bytes)" if finished else ""


# --------------------------------------------------------------------------- Universign

UNIVERSIGN_DOCS = "universign/transactions/"
# Universign's final statuses (functions/universign_webhook/universign_state.py).
FINAL = frozenset({"SIGNE", "REFUSE", "EXPIRE", "ANNULE"})
MAX_DOCUMENTS = 1000
MAX_ERROR_ROWS = 10


def universign_rows(ctx: Context) -> list[Row]:
    from google.api_core import exceptions as gexc
    from google.cloud import storage  # type: ignore[attr-defined]

    client = storage.Client(project=ctx.project)
    try:
        blobs = list(
            client.list_blobs(
                ctx.universign_bucket, prefix=UNIVERSIGN_DOCS, max_results=MAX_DOCUMENTS
            )
        )
    except gexc.NotFound:
        return [Row("universign", "transactions", NOT_CONFIGURED)]
    if not blobs:
        return [Row("universign", "transactions", NOT_CONFIGURED)]
    counts: dict[str, int] = {}
    last_sync: datetime | None = None
    failing: list[Row] = []
    for blob in blobs:
        try:
            doc = json.loads(blob.download_as_bytes())
        except (ValueError, gexc.NotFound):
            continue
        status = str(doc.get("status") or "unknown")
        counts[status] = counts.get(status, 0) + 1
        synced = clock.parse_time(doc.get("last_sync_at"))
        if synced and (last_sync is None or synced > last_sync):
            last_sync = synced
        error = doc.get("last_error")
        if error and status not in FINAL and len(failing) < MAX_ERROR_ROWS:
            failing.append(
                Row(
                    "universign",
                    f"transaction {doc.get('transaction_id', blob.name)}",
                    "failing",
                    last_success=synced,
                    last_error=redact(str(error))[:200],
                    detail=f"{doc.get('sync_attempts', 0)} attempts",
                )
            )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    more = " (first 1000)" if len(blobs) >= MAX_DOCUMENTS else ""
    return [
        Row("universign", "transactions", "ok", last_success=last_sync, detail=summary + more),
        *failing,
    ]


# --------------------------------------------------------------------------- Scheduler jobs

# The deployment's Cloud Scheduler jobs (terraform/*.tf; tests/cli holds them together).
JOB_NAMES = (
    "b24-token-refresh-job",
    "hubspot-token-refresh-job",
    "graph-webhook-renew-job",
    "cegid-transfer-job",
    "universign-poll-job",
)
LOCAL_JOBS = "the local stack has no Cloud Scheduler: python -m devtools.scheduler list"


@dataclass(frozen=True)
class Job:
    """One Cloud Scheduler job as the API describes it (REST v1 ``Job``)."""

    name: str
    schedule: str
    time_zone: str
    state: str  # enabled, paused, disabled, update failed
    last_attempt: datetime | None
    result: str  # ok, "failed: <code> <message>", or "-" before the first attempt
    next_run: datetime | None

    @property
    def attention(self) -> bool:
        return self.state != "enabled" or self.result.startswith("failed")

    @classmethod
    def from_api(cls, job: dict[str, Any]) -> Job:
        last_attempt = clock.parse_time(job.get("lastAttemptTime"))
        status = job.get("status") or {}
        code = status.get("code", 0) if isinstance(status, dict) else 0
        if code:
            message = redact(str(status.get("message") or ""))[:120]
            result = f"failed: code {code} {message}".rstrip()
        else:
            result = "ok" if last_attempt else "-"
        return cls(
            name=str(job.get("name", "")).rsplit("/", 1)[-1],
            schedule=str(job.get("schedule", "")),
            time_zone=str(job.get("timeZone") or "Etc/UTC"),  # the API's default is UTC
            state=str(job.get("state") or "STATE_UNSPECIFIED").lower().replace("_", " "),
            last_attempt=last_attempt,
            result=result,
            next_run=clock.parse_time(job.get("scheduleTime")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.name,
            "schedule": self.schedule,
            "time_zone": self.time_zone,
            "state": self.state,
            "last_attempt": clock.format_time(self.last_attempt) if self.last_attempt else None,
            "result": self.result,
            "next_run": clock.format_time(self.next_run) if self.next_run else None,
            "attention": self.attention,
        }


@dataclass(frozen=True)
class Jobs:
    rows: list[Job]
    error: str | None = None  # the jobs could not be read (needs attention)
    note: str | None = None  # nothing to read here (the local stack)

    @property
    def attention(self) -> int:
        return sum(job.attention for job in self.rows) + (1 if self.error else 0)


def scheduler_jobs(ctx: Context) -> Jobs:
    """The deployment's jobs in the region, from the Cloud Scheduler API (every page)."""
    base = api_url("CLOUD_SCHEDULER_API_URL", "https://cloudscheduler.googleapis.com")
    if base is None:
        return Jobs([], note=LOCAL_JOBS)
    path = f"/v1/projects/{ctx.project}/locations/{ctx.region}/jobs"
    found: dict[str, Job] = {}
    params = {"pageSize": "500"}
    try:
        for _page in range(100):
            body = get_json(base, path, params)
            for item in body.get("jobs") or []:
                job = Job.from_api(item)
                if job.name in JOB_NAMES:
                    found[job.name] = job
            token = body.get("nextPageToken")
            if not token:
                break
            params = {"pageSize": "500", "pageToken": str(token)}
    except GoogleApiError as error:
        return Jobs([], error=f"Cloud Scheduler jobs in {ctx.region}: {error}")
    return Jobs([found[name] for name in JOB_NAMES if name in found])


def render_jobs(jobs: Jobs, now: datetime) -> list[str]:
    if jobs.note:
        return [f"Scheduler jobs: {jobs.note}"]
    if jobs.error:
        return [f"Scheduler jobs: error: {jobs.error}"]
    if not jobs.rows:
        return ["Scheduler jobs: none of this deployment in this region"]
    header = ("JOB", "SCHEDULE", "TIME ZONE", "STATE", "LAST ATTEMPT", "NEXT RUN", "RESULT")
    table = [header]
    for job in jobs.rows:
        table.append(
            (
                job.name,
                job.schedule,
                job.time_zone,
                job.state,
                f"{human_delta(now - job.last_attempt)} ago" if job.last_attempt else "-",
                f"in {human_delta(job.next_run - now)}" if job.next_run else "-",
                _shorten(job.result, 70),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(r[:-1], widths, strict=True))
        + "  "
        + r[-1]
        for r in table
    ]


# --------------------------------------------------------------------------- rendering


def human_delta(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{sign}{days}d{hours}h"
    if hours:
        return f"{sign}{hours}h{minutes}m"
    return f"{sign}{minutes}m"


def render(rows: list[Row], now: datetime, jobs: Jobs | None = None) -> str:
    header = ("INTEGRATION", "ITEM", "STATE", "EXPIRES IN", "LAST SUCCESS", "LAST ERROR")
    table = [header]
    for row in rows:
        table.append(
            (
                row.integration,
                row.item,
                row.state,
                human_delta(row.expires_at - now) if row.expires_at else "-",
                f"{human_delta(now - row.last_success)} ago" if row.last_success else "-",
                _shorten(row.last_error or row.detail or "-", 70),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r[:-1], widths, strict=True))
        + "  "
        + r[-1]
        for r in table
    ]
    attention = sum(r.attention for r in rows)
    if jobs is not None:
        lines += ["", *render_jobs(jobs, now)]
        attention += jobs.attention
    lines.append("")
    lines.append(
        f"{attention} item(s) need attention; see docs/runbooks/"
        if attention
        else "nothing needs attention"
    )
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
