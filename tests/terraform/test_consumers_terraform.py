"""Consumers of the output topics (terraform/consumers.tf) as Terraform evaluated them: with
none configured (the default) nothing is created; with one consumer of each kind, every
subscription agrees with what Pub/Sub needs to deliver, retry and dead-letter (tf_agreement
``check_consumers``), and the checks notice when a piece is missing.

The consumers are set by an override file in a copy of terraform/ (Terraform merges
``*_override.tf`` into the variable's block), the plan gate's ``consumers`` scenario sets the
same through ``-var``.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tf_agreement import (
    DEAD_LETTER_METRIC,
    GATE_PYTHON,
    OUTPUT_TOPICS,
    REPO_ROOT,
    check_consumers,
    copy_terraform,
    load_inventory,
    require_tfgate,
)

CONSUMERS = textwrap.dedent(
    """
    variable "consumers" {
      default = {
        "graph-notifications" = [{ name = "nova-graph", push_endpoint = "https://nova.example.com/graph" }]
        "cegid-files" = [{
          name                       = "odoo-cegid"
          push_endpoint              = "https://odoo.example.com/cegid"
          oidc_audience              = "odoo-cegid"
          oidc_service_account_email = "odoo@other.iam.gserviceaccount.com"
        }]
        "universign-status-changes" = [{ name = "sage-universign" }]
      }
    }
    """
)


def with_consumers(tmp_path: Path, replace: tuple[str, str] | None = None) -> Path:
    copy: Path = copy_terraform(tmp_path)
    (copy / "variables_consumers_override.tf").write_text(CONSUMERS)
    if replace is not None:
        old, new = replace
        text = (copy / "consumers.tf").read_text()
        assert old in text, f"mutation target {old!r} not in consumers.tf"
        (copy / "consumers.tf").write_text(text.replace(old, new, 1))
    return copy


@pytest.fixture(scope="module")
def consumers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_inventory(with_consumers(tmp_path_factory.mktemp("consumers")))


UNIVERSIGN_DEAD_LETTER = "universign-sync-dead-letter"
UNIVERSIGN_PUSH = "universign-sync-push"


def test_no_consumer_by_default() -> None:
    inventory = load_inventory(REPO_ROOT / "terraform")
    # Universign's own work topic is delivered and keeps its dead letters whatever the consumers.
    own = {UNIVERSIGN_DEAD_LETTER}
    assert sorted(s["name"] for s in inventory["pubsub"]["subscriptions"]) == [
        UNIVERSIGN_DEAD_LETTER,
        UNIVERSIGN_PUSH,
    ]
    assert not [
        t
        for t in inventory["topics"]
        if str(t["name"]).endswith("-dead-letter") and t["name"] not in own
    ]
    assert "keepalive-consumer-push" not in {a["account_id"] for a in inventory["service_accounts"]}
    assert inventory["variables"]["consumers"]["has_default"]
    assert check_consumers(inventory) == []


def test_every_consumer_agrees_with_what_pubsub_needs(consumers) -> None:
    assert check_consumers(consumers) == []
    subs = {s["name"]: s for s in consumers["pubsub"]["subscriptions"]}
    assert set(subs) == {
        "nova-graph",
        "odoo-cegid",
        "sage-universign",
        "nova-graph-dead-letter",
        "odoo-cegid-dead-letter",
        "sage-universign-dead-letter",
        UNIVERSIGN_DEAD_LETTER,
        UNIVERSIGN_PUSH,
    }
    assert {subs[n]["topic"] for n in ("nova-graph", "odoo-cegid", "sage-universign")} == set(
        OUTPUT_TOPICS
    )
    # Push with the identity created here, its audience the endpoint (what NOVA verifies).
    nova = subs["nova-graph"]
    assert nova["oidc_service_account"].startswith("keepalive-consumer-push@")
    assert nova["oidc_audience"] == "https://nova.example.com/graph"
    assert (nova["retry"], nova["max_delivery_attempts"]) == (("10s", "600s"), 10)
    # Push with the consumer's own identity and audience; pull for the third.
    odoo = subs["odoo-cegid"]
    assert (odoo["oidc_service_account"], odoo["oidc_audience"]) == (
        "odoo@other.iam.gserviceaccount.com",
        "odoo-cegid",
    )
    assert subs["sage-universign"]["push_endpoint"] is None
    # One alert condition for all consumers, split by subscription.
    # (Universign's own work queue has its alert on the same metric, its own subscription.)
    (policy,) = [
        p
        for p in consumers["alert_policies"]
        if any(DEAD_LETTER_METRIC in str(c["filter"]) for c in p["conditions"])
        and p["display_name"] == "Consumers: messages dead-lettered"
    ]
    (condition,) = policy["conditions"]
    assert condition["group_by"] == ["resource.label.subscription_id"]
    (runbook,) = re.findall(r"docs/runbooks/[\w.-]+\.md", policy["documentation"])
    assert (REPO_ROOT / runbook).is_file(), runbook
    assert "consumers" in consumers["outputs"]


# (what is broken in consumers.tf, the problem check_consumers must report)
MUTATIONS = {
    "agent cannot acknowledge": (
        ('role         = "roles/pubsub.subscriber"', 'role         = "roles/pubsub.viewer"'),
        "the Pub/Sub service agent cannot acknowledge on it",
    ),
    "subscription expires when idle": (
        (
            '  expiration_policy {\n    ttl = "" # an idle consumer (a quiet month) must not lose'
            " its subscription\n  }\n",
            "",
        ),
        "expires after 31 idle days",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_broken_consumer_is_noticed(tmp_path, name) -> None:
    (old, new), expected = MUTATIONS[name]
    problems = check_consumers(load_inventory(with_consumers(tmp_path, (old, new))))
    assert any(expected in p for p in problems), problems


def test_a_consumer_of_an_integration_not_deployed_fails_the_plan(tmp_path) -> None:
    require_tfgate()
    copy = with_consumers(tmp_path)
    result = subprocess.run(
        [str(GATE_PYTHON), "-m", "tools.tfstandin.gate", "--terraform-dir", str(copy),
         "--scenario", "bitrix24-only", "--plan-only"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    flat = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(
        r"consumers: nova-graph subscribes to graph-notifications, whose integration is not in"
        r" var\.integrations",
        flat,
    ), flat
