"""Conformance table of tools/logfilter.py: the Cloud Logging query subset monitoring.tf uses."""

from __future__ import annotations

import json

import pytest

from tools.logfilter import (
    UnsupportedFilter,
    compile_filter,
    entry_from_stdout_line,
    extract,
)

ENTRY = {
    "logName": "projects/p/logs/run.googleapis.com%2Fstdout",
    "resource": {"type": "cloud_run_revision", "labels": {"service_name": "b24-token-refresh"}},
    "severity": "WARNING",
    "labels": {"integration": "bitrix24", "function": "b24_token_refresh"},
    "jsonPayload": {
        "event": "run_summary",
        "provider": "bitrix24",
        "result": "refreshed",
        "failed": 0,
        "bytes": 2048,
        "duration_seconds": 12.5,
        "ratio": "7",
        "stopped": None,
        "forced": True,
        "nested": {"depth": {"value": "x"}},
    },
}

# (filter, whether ENTRY matches it)
TABLE = [
    ('jsonPayload.event="run_summary"', True),
    ('jsonPayload.event="run_summaryX"', False),
    ("jsonPayload.event=run_summary", True),  # a bare word is a string value
    ('jsonPayload.result=("failed" OR "refreshed")', True),
    ('jsonPayload.result=("failed" OR "skipped")', False),
    ('resource.type=("cloud_run_revision" OR "cloud_function")', True),
    ('resource.labels.service_name="b24-token-refresh"', True),
    ('labels.integration="bitrix24"', True),
    ('logName="projects/p/logs/run.googleapis.com%2Fstdout"', True),
    ('jsonPayload.nested.depth.value="x"', True),
    # numbers compare as numbers, not text ("2048" < "300" as text)
    ("jsonPayload.bytes>300", True),
    ("jsonPayload.bytes>=2048", True),
    ("jsonPayload.bytes>2048", False),
    ("jsonPayload.duration_seconds<12.6", True),
    ("jsonPayload.duration_seconds<=12.4", False),
    ("jsonPayload.failed>0", False),
    ("jsonPayload.failed=0", True),
    ("jsonPayload.ratio>10", False),  # a numeric string compares as a number
    # severity by rank
    ("severity>=WARNING", True),
    ("severity>=ERROR", False),
    ("severity<ERROR", True),
    ("severity=warning", True),
    # a missing or null field matches no comparison, and NOT of it does
    ("jsonPayload.absent>0", False),
    ("jsonPayload.absent<0", False),
    ('jsonPayload.absent="x"', False),
    ("NOT jsonPayload.absent>0", True),
    ("jsonPayload.stopped=none", False),
    ("NOT jsonPayload.stopped=none", True),
    ("jsonPayload.nested>0", False),  # an object compares with nothing
    ("jsonPayload.forced=true", True),
    ("jsonPayload.forced=false", False),
    # boolean structure
    ('NOT jsonPayload.result="refreshed"', False),
    ('NOT NOT jsonPayload.result="refreshed"', True),
    ('jsonPayload.event="run_summary" AND jsonPayload.provider="hubspot"', False),
    ('jsonPayload.event="run_summary" jsonPayload.provider="bitrix24"', True),  # juxtaposed: AND
    ('jsonPayload.provider="hubspot" OR jsonPayload.provider="bitrix24"', True),
    # OR binds tighter than AND: a AND b OR c is a AND (b OR c)
    ('jsonPayload.provider="hubspot" AND jsonPayload.failed=0 OR jsonPayload.bytes>0', False),
    ('(jsonPayload.provider="hubspot" AND jsonPayload.failed=0) OR jsonPayload.bytes>0', True),
    ('jsonPayload.provider="bitrix24" AND jsonPayload.failed=1 OR jsonPayload.bytes>0', True),
    ("NOT (jsonPayload.failed>0 OR severity>=ERROR)", True),
    ("NOT jsonPayload.failed=0 OR jsonPayload.bytes>0", True),  # NOT binds tightest
    ('jsonPayload.result="a\\"b"', False),
]

REFUSED = [
    'jsonPayload.result!="x"',
    'jsonPayload.message:"token"',
    'jsonPayload.message=~"tok.*"',
    'log_id("run.googleapis.com/requests")',
    'textPayload="x"',
    "jsonPayload.*=1",
    'jsonPayload.result="x" AND',
    'jsonPayload.result=("x" OR',
    "(jsonPayload.failed>0",
    "jsonPayload.failed>(1 OR 2)",
    "severity>=LOUD",
    'jsonPayload.result="x")',
    "jsonPayload.result=*",
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_filter_matches_as_cloud_logging_does(text: str, expected: bool) -> None:
    assert compile_filter(text)(ENTRY) is expected


@pytest.mark.parametrize("text", REFUSED)
def test_filters_outside_the_subset_are_refused(text: str) -> None:
    with pytest.raises(UnsupportedFilter):
        compile_filter(text)(ENTRY)


def test_extract_reads_a_field_or_nothing() -> None:
    assert extract("EXTRACT(jsonPayload.provider)", ENTRY) == "bitrix24"
    assert extract(" EXTRACT( jsonPayload.bytes ) ", ENTRY) == 2048
    assert extract("EXTRACT(jsonPayload.absent)", ENTRY) is None
    with pytest.raises(UnsupportedFilter):
        extract('REGEXP_EXTRACT(jsonPayload.result, "(.*)")', ENTRY)


def test_a_stdout_line_becomes_the_entry_cloud_logging_stores() -> None:
    line = json.dumps(
        {
            "severity": "error",
            "message": "m",
            "time": "2026-12-03T10:00:00+00:00",
            "logging.googleapis.com/labels": {"integration": "graph"},
            "logging.googleapis.com/trace": "projects/p/traces/abc",
            "event": "run_summary",
        }
    )
    entry = entry_from_stdout_line(line, project="p", service="graph-webhook-renew")
    assert entry == {
        "logName": "projects/p/logs/run.googleapis.com%2Fstdout",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"service_name": "graph-webhook-renew"},
        },
        "severity": "ERROR",
        "labels": {"integration": "graph"},
        "jsonPayload": {"message": "m", "event": "run_summary"},
    }
    assert compile_filter("severity>=ERROR")(entry)
