"""The monitoring Terraform as Terraform evaluated it: alert conditions read metrics that exist,
the rules are grouped into a handful of conditions, the dashboard has a row per integration,
and the Universign URL token is kept out of request logs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tf_agreement import REPO_ROOT, copy_terraform, load_inventory

from tools.logfilter import compile_filter

USER_METRIC = re.compile(r'metric\.type="logging\.googleapis\.com/user/([^"]+)"')
BUILT_IN = {
    "run.googleapis.com/request_count",
    # Dead-lettered messages (universign-sync-push, and the consumers' subscriptions).
    "pubsub.googleapis.com/subscription/dead_letter_message_count",
}


@pytest.fixture(scope="module")
def inventory() -> Any:
    return load_inventory(REPO_ROOT / "terraform")


def metric_types(text: str) -> list[str]:
    return re.findall(r'metric\.type="([^"]+)"', text)


def test_every_condition_reads_a_metric_that_exists(inventory) -> None:
    defined = {m["name"] for m in inventory["log_metrics"]}
    conditions = [c for p in inventory["alert_policies"] for c in p["conditions"]]
    assert conditions
    for condition in conditions:
        for text in (condition["filter"], condition["denominator_filter"] or ""):
            for metric in metric_types(text):
                name = metric.removeprefix("logging.googleapis.com/user/")
                assert name in defined or metric in BUILT_IN, (condition["display_name"], metric)


def test_the_whole_project_needs_a_handful_of_conditions(inventory) -> None:
    """Each rule is one condition across the integrations (docs/costs.md prices them)."""
    conditions = [c for p in inventory["alert_policies"] for c in p["conditions"]]
    assert len(conditions) == 9, [c["display_name"] for c in conditions]
    costs = (REPO_ROOT / "docs" / "costs.md").read_text()
    assert "9 conditions" in costs


def test_failure_ratios_compare_like_with_like(inventory) -> None:
    """A ratio condition groups numerator and denominator the same way, over one window."""
    ratios = [
        c
        for p in inventory["alert_policies"]
        for c in p["conditions"]
        if c.get("denominator_filter")
    ]
    assert len(ratios) == 2
    for condition in ratios:
        assert condition["group_by"], condition["display_name"]
        assert 0.9 < condition["threshold"] < 1, "every run failed, not most"


def test_dashboard_has_a_row_per_integration_of_existing_metrics(inventory) -> None:
    (dashboard,) = inventory["dashboards"]
    tiles = dashboard["dashboard"]["mosaicLayout"]["tiles"]
    deployed = {f["entry_point"] for f in inventory["functions"]}
    assert len(deployed) == 9
    assert len(tiles) == 5 * 4
    rows = {tile["yPos"] for tile in tiles}
    assert len(rows) == 5
    defined = {m["name"] for m in inventory["log_metrics"]}
    for tile in tiles:
        for data_set in tile["widget"]["xyChart"]["dataSets"]:
            text = data_set["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
            (name,) = USER_METRIC.findall(text)
            assert name in defined, (tile["widget"]["title"], name)
    titles = " ".join(tile["widget"]["title"] for tile in tiles)
    assert "Nearest subscription expiry" in titles and "Run and request duration" in titles


def _request_log(service: str, url: str) -> dict[str, Any]:
    return {
        "logName": "projects/gate-project/logs/run.googleapis.com%2Frequests",
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}},
        "severity": "INFO",
        "httpRequest": {"requestMethod": "POST", "requestUrl": url, "status": 200},
    }


def test_universign_url_token_is_kept_out_of_request_logs(tmp_path) -> None:
    """With the URL token on, the webhook's request logs (which carry ?token=) are excluded,
    and nothing else is: not its own structured lines, not another service's requests."""
    copy = copy_terraform(tmp_path)
    variables = copy / "variables_universign.tf"
    text = variables.read_text()
    start = text.index('variable "universign_webhook_token_enabled" {')
    end = text.index("}", start)
    block = text[start:end]
    assert "default     = false" in block
    variables.write_text(text[:start] + block.replace("false", "true") + text[end:])
    inventory = load_inventory(copy)
    (exclusion,) = inventory["log_exclusions"]
    excluded = compile_filter(exclusion["filter"])
    webhook = "https://universign-webhook-x.a.run.app/?token=s3cret"
    assert excluded(_request_log("universign-webhook", webhook))
    assert not excluded(
        _request_log("graph-webhook-notify", "https://g.a.run.app/?validationToken=v")
    )
    own_line = _request_log("universign-webhook", webhook)
    own_line["logName"] = "projects/gate-project/logs/run.googleapis.com%2Fstdout"
    assert not excluded(own_line)


def test_no_exclusion_without_the_url_token(inventory) -> None:
    assert inventory["log_exclusions"] == []
