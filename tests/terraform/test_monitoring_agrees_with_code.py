"""Monitoring and code agree: metrics read only fields the functions log, every integration
that logs has its alerts, and every alert names a runbook that exists."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tf_agreement import REPO_ROOT, copy_terraform, load_inventory

from tools.function_scan import function_folders

FOLDERS = function_folders()
FIELD = re.compile(r"jsonPayload\.([A-Za-z_][A-Za-z0-9_]*)")
RUNBOOK = re.compile(r"docs/runbooks/[A-Za-z0-9_.\-]+\.md")


@pytest.fixture(scope="module")
def inventory() -> Any:
    return load_inventory(REPO_ROOT / "terraform")


def logged_fields() -> set[str]:
    return set().union(*(f.log_fields for f in FOLDERS))


def metric_fields(metric: dict[str, Any]) -> set[str]:
    texts = [metric["filter"] or "", metric["value_extractor"] or ""]
    texts += list((metric["label_extractors"] or {}).values())
    return {m for text in texts for m in FIELD.findall(text)}


def test_log_metrics_read_only_fields_the_functions_log(inventory) -> None:
    assert inventory["log_metrics"], "no google_logging_metric found"
    known = logged_fields()
    unknown = {
        metric["name"]: sorted(metric_fields(metric) - known) for metric in inventory["log_metrics"]
    }
    assert {name: fields for name, fields in unknown.items() if fields} == {}


def test_event_names_in_metrics_are_logged_by_some_function(inventory) -> None:
    events = set()
    for folder in FOLDERS:
        for path in folder.path.glob("*.py"):
            events |= set(re.findall(r'event="([a-z_]+)"', path.read_text()))
            events |= set(re.findall(r'"event": "([a-z_]+)"', path.read_text()))
    used = {
        e
        for metric in inventory["log_metrics"]
        for group in re.findall(r"jsonPayload\.event=\(?([^)]*?)\)?(?: AND|$|\))", metric["filter"])
        for e in re.findall(r'"([a-z_]+)"', group)
    }
    assert used, "no event names found in metric filters"
    assert sorted(used - events) == []


def test_every_integration_has_its_alerts(inventory) -> None:
    """The grouped policies cover every integration that logs: each is in exactly one
    no-success condition, and the per-label policies exist once."""
    policies = {a["address"]: a for a in inventory["alert_policies"]}
    providers = set().union(*(f.providers for f in FOLDERS))
    assert providers
    for single in ("needs_reauth[0]", "failing[0]", "invocations_failing[0]"):
        assert f"google_monitoring_alert_policy.{single}" in policies, single
    absent = [
        condition["filter"]
        for policy in policies.values()
        for condition in policy["conditions"]
        if condition["kind"] == "absent"
    ]
    for provider in sorted(providers):
        holding = [f for f in absent if f'"{provider}"' in f]
        assert len(holding) == 1, f"{provider}: in {len(holding)} no-success conditions"


def test_every_alert_names_a_runbook_that_exists(inventory) -> None:
    assert inventory["alert_policies"]
    for policy in inventory["alert_policies"]:
        documentation = policy["documentation"] or ""
        runbooks = RUNBOOK.findall(documentation)
        assert runbooks, f"{policy['address']}: documentation names no runbook"
        for runbook in runbooks:
            assert (REPO_ROOT / runbook).is_file(), f"{policy['address']}: {runbook} missing"
        assert policy["notification_channels"] is not None, policy["address"]


def test_alerts_notify_the_email_channel(tmp_path) -> None:
    """With alert_email set, one email channel exists and every alert policy uses it."""
    copy = copy_terraform(tmp_path)
    variables = copy / "variables_monitoring.tf"
    text = variables.read_text()
    default = 'variable "alert_email" {'
    assert default in text
    start = text.index(default)
    end = text.index("}", start)
    variables.write_text(
        text[:start]
        + text[start:end].replace('default     = ""', 'default     = "ops@example.com"')
        + text[end:]
    )
    inventory = load_inventory(copy)
    assert [c["type"] for c in inventory["notification_channels"]] == ["email"]
    for policy in inventory["alert_policies"]:
        assert len(policy["notification_channels"]) == 1, policy["address"]


def test_result_values_in_metrics_are_results_the_code_reports(inventory) -> None:
    literals: set[str] = set()
    for folder in FOLDERS:
        for path in folder.path.glob("*.py"):
            literals |= set(re.findall(r'"([A-Za-z_\-]+)"', path.read_text()))
    used = {
        value
        for metric in inventory["log_metrics"]
        for group in re.findall(r"jsonPayload\.result=(\([^)]*\)|\"[^\"]*\")", metric["filter"])
        for value in re.findall(r'"([^"]+)"', group)
    }
    assert used, "no result values found in metric filters"
    assert sorted(used - literals) == []
