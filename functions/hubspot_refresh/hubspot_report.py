"""The one summary log line of every run (and of every fan-out): what log-based metrics and
alerts read, so its event name and field names are part of the contract."""

from __future__ import annotations

import logging
from typing import Any

from hubspot_plan import (
    BACKOFF,
    BUSY,
    DEFERRED,
    DISABLED,
    FAILED,
    FRESH,
    NEEDS_REAUTH,
    REFRESHED,
    UNKNOWN,
    RunSummary,
    run_result,
)

from shared import logs, runtime

log = logging.getLogger("hubspot_refresh")  # the function's logger: see main.log


def report(
    summary: RunSummary,
    meter: runtime.Meter,
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
        # "failed" when the run itself failed; see hubspot_plan.run_result for the others.
        "result": run_result(summary, error=error),
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
        "duration_seconds": round(meter.seconds, 3),
        "secret_reads": meter.secret_reads,
        # Per account the run looked at: what "reads too often" is measured by, since a run's
        # reads grow with its accounts.
        "secret_reads_per_account": round(meter.secret_reads / max(1, seen), 2),
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
