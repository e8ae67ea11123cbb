"""hubspot_report: the run_summary line log-based metrics read; its field names are contract."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from hubspot_plan import RunSummary
from hubspot_report import report

COUNTERS = (
    "refreshed",
    "skipped_fresh",
    "in_backoff",
    "failed",
    "needs_reauth",
    "disabled",
    "busy",
    "deferred",
)


def meter(seconds: float, secret_reads: int = 0) -> Any:
    """Stands in for shared.runtime.Meter: what the run measured of itself."""
    return SimpleNamespace(seconds=seconds, secret_reads=secret_reads)


def summary_line(caplog: pytest.LogCaptureFixture) -> tuple[logging.LogRecord, dict[str, Any]]:
    (record,) = [r for r in caplog.records if r.name == "hubspot_refresh"]
    fields: dict[str, Any] = record.json_fields  # type: ignore[attr-defined]
    return record, fields


def test_a_run_reports_every_counter(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    summary = RunSummary("shard")
    for outcome in (*COUNTERS, "refreshed", "unknown"):
        summary.add(outcome)

    report(summary, meter(1.23456, secret_reads=7), seen=9, shard="2/3")

    record, fields = summary_line(caplog)
    assert record.levelno == logging.INFO
    assert fields == {
        "event": "run_summary",
        "provider": "hubspot",
        "mode": "shard",
        "result": "completed",
        "accounts_seen": 9,
        **dict.fromkeys(COUNTERS, 1),
        "refreshed": 2,
        "unknown_requested": 1,
        "duration_seconds": 1.235,
        "secret_reads": 7,
        # 7 reads over the 9 accounts the run looked at.
        "secret_reads_per_account": 0.78,
        "shard": "2/3",
    }
    assert record.getMessage() == (
        "HubSpot shard run: 9 accounts, 2 refreshed, 1 fresh, 1 in backoff, 1 failed, "
        "1 need re-authorisation"
    )


def test_a_fan_out_reports_its_shards(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    summary = RunSummary("fan_out", shards=3)
    summary.counts["dispatched"] = 5

    report(summary, meter(0.5), seen=6)

    _, fields = summary_line(caplog)
    assert (fields["shards"], fields["dispatched"]) == (3, 5)
    assert "shard" not in fields and "error" not in fields


def test_a_failed_run_is_an_error_saying_why(caplog: pytest.LogCaptureFixture) -> None:
    report(RunSummary("scheduled"), meter(0.1), seen=0, error="discovery_failed")

    record, fields = summary_line(caplog)
    assert record.levelno == logging.ERROR
    assert (fields["result"], fields["error"]) == ("failed", "discovery_failed")
