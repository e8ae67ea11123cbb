"""What a function's real log lines do to monitoring: which log-based metric of terraform/ each
line increments (filters as Terraform evaluated them, read by tools/logfilter.py) and which
alert policy condition that increment can feed.

A scenario test captures the JSON lines a function wrote (capsys), then asserts

    assert feeds(captured.out, entry_point="b24_token_refresh") == {
        "keepalive_runs": 1, "keepalive_run_ok": 1, ...
    }

so turning a failure into a success in monitoring.tf, or a result the code reports into one
the filters do not know, fails the scenario that writes it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from shared.logs import CloudLoggingFormatter
from tools.logfilter import Entry, compile_filter, entry_from_stdout_line, extract

_TERRAFORM_TESTS = Path(__file__).resolve().parent / "terraform"
if str(_TERRAFORM_TESTS) not in sys.path:
    sys.path.insert(0, str(_TERRAFORM_TESTS))

from tf_agreement import REPO_ROOT, load_inventory  # noqa: E402

PROJECT = "gate-project"  # the plan gate's project id, as in the log names it plans
# What one scheduled run summary feeds besides its outcome; a scenario adds its own metrics.
ONE_RUN = {
    "keepalive_run_duration_seconds": 1,
    "keepalive_runs": 1,
    "keepalive_secret_reads": 1,
}
ONE_RUN_OK = {**ONE_RUN, "keepalive_run_ok": 1}
ONE_RUN_FAILED = {**ONE_RUN, "keepalive_run_failed": 1}

_LABEL = re.compile(r'metric\.label\.(\w+)=(?:"([^"]*)"|one_of\(([^)]*)\))')
_METRIC = re.compile(r'metric\.type="logging\.googleapis\.com/user/([^"]+)"')


def inventory() -> dict[str, Any]:
    """The real tree's inventory (one plan and apply per session, shared with tests/terraform)."""
    found: dict[str, Any] = load_inventory(REPO_ROOT / "terraform")
    return found


def service_of(entry_point: str) -> str:
    """The Cloud Run service (function name) Terraform deploys ``entry_point`` as."""
    names = [f["name"] for f in inventory()["functions"] if f["entry_point"] == entry_point]
    assert len(names) == 1, f"{entry_point}: {names}"
    return str(names[0])


def entries(stdout: str, *, entry_point: str) -> list[Entry]:
    """The log entries Cloud Logging would store for the JSON lines in ``stdout``."""
    service = service_of(entry_point)
    return [
        entry_from_stdout_line(line, project=PROJECT, service=service)
        for line in stdout.splitlines()
        if line.startswith("{")
    ]


def increments(entry: Entry) -> list[tuple[str, dict[str, Any]]]:
    """(metric name, label values) for each log-based metric ``entry`` increments."""
    found = []
    for metric in inventory()["log_metrics"]:
        if compile_filter(metric["filter"])(entry):
            labels = {k: extract(v, entry) for k, v in sorted(metric["label_extractors"].items())}
            found.append((metric["name"], labels))
    return found


def alerts_fed(metric: str, labels: dict[str, Any]) -> set[str]:
    """Alert policies with a condition whose (numerator) filter reads ``metric`` and whose
    label constraints ``labels`` meet."""
    fed = set()
    for policy in inventory()["alert_policies"]:
        for condition in policy["conditions"]:
            text = condition.get("filter") or ""
            names = _METRIC.findall(text)
            if metric not in names:
                continue
            if all(
                _label_allows(name, one, many, labels) for name, one, many in _LABEL.findall(text)
            ):
                fed.add(policy["address"].removeprefix("google_monitoring_alert_policy."))
    return fed


def _label_allows(name: str, one: str, many: str, labels: dict[str, Any]) -> bool:
    allowed = {one} if not many else set(re.findall(r'"([^"]*)"', many))
    return str(labels.get(name)) in allowed


def written(records: list[logging.LogRecord]) -> str:
    """The lines the function's stdout handler writes for ``records`` (caplog's), for tests
    that capture records rather than stdout: the same formatter, so the same JSON."""
    formatter = CloudLoggingFormatter()
    return "".join(formatter.format(record) + "\n" for record in records)


def feeds(stdout: str, *, entry_point: str) -> dict[str, int]:
    """How many times the lines in ``stdout`` increment each metric."""
    counts: Counter[str] = Counter()
    for entry in entries(stdout, entry_point=entry_point):
        counts.update(name for name, _ in increments(entry))
    return dict(sorted(counts.items()))


def alerts(stdout: str, *, entry_point: str) -> set[str]:
    """The alert policies the lines in ``stdout`` can feed."""
    fed: set[str] = set()
    for entry in entries(stdout, entry_point=entry_point):
        for name, labels in increments(entry):
            fed |= alerts_fed(name, labels)
    return fed
