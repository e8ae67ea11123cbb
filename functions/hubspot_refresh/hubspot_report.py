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
)

from shared import logs

log = logging.getLogger("hubspot_refresh")  # the function's logger: see main.log


def report(
    summary: RunSummary,
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
