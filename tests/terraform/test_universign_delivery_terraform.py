"""universign_sync's delivery as Terraform evaluated it: `terraform apply` alone makes the push
subscription that feeds the worker, with its backoff, retention and dead-letter policy, the
Pub/Sub service agent's roles that make dead-lettering happen, an OIDC identity that may invoke
the (private) worker and nothing else, and an alert on Pub/Sub's count of dead-lettered messages
of that subscription. The pushed body reaches the entry point as the CloudEvent it expects.

Nothing is left for deploy.sh: a user who deploys with `terraform apply` gets dead letters.
"""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tf_agreement import (
    DEAD_LETTER_METRIC,
    REPO_ROOT,
    check_consumers,
    check_deployed,
    copy_terraform,
    load_inventory,
    push_deliveries,
)

from tools.function_scan import scan_folder

UNIVERSIGN = scan_folder(REPO_ROOT / "functions" / "universign_webhook")
PUSH = "universign-sync-push"
PUSH_IDENTITY = "universign-sync-push"


@pytest.fixture(scope="module")
def inventory() -> Any:
    return load_inventory(REPO_ROOT / "terraform")


def _worker(inventory: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        f for f in inventory["functions"] if f["entry_point"] == "universign_sync"
    ]
    (worker,) = found
    return worker


def test_the_worker_is_fed_by_a_terraform_owned_push_subscription(inventory) -> None:
    worker = _worker(inventory)
    assert worker["trigger"] == "http" and not worker["public"]
    (sub,) = push_deliveries(inventory, worker)
    assert sub["name"] == PUSH and sub["topic"] == "universign-sync"
    assert sub["push_endpoint"].startswith("https://")
    assert sub["oidc_audience"] == sub["push_endpoint"]
    assert sub["oidc_service_account"].startswith(f"{PUSH_IDENTITY}@")
    assert sub["retry"] == ("10s", "600s")
    assert sub["ttl"] == ""
    assert sub["dead_letter_topic"] == "universign-sync-dead-letter"
    # The output users read describes the subscription Terraform made (the variables' values).
    delivery = inventory["output_values"]["universign_sync_delivery"]
    assert delivery["subscription"] == PUSH
    assert delivery["push_endpoint"] == sub["push_endpoint"]
    assert delivery["oidc_service_account"] == sub["oidc_service_account"]
    assert delivery["dead_letter_subscription"] == "universign-sync-dead-letter"
    assert (sub["max_delivery_attempts"], sub["retention"]) == (20, "604800s")
    assert (delivery["max_delivery_attempts"], delivery["retention"]) == (20, "604800s")
    # Never redelivered while the worker still runs (module timeout_seconds = 120).
    assert sub["ack_deadline_seconds"] >= 120
    # Agent roles, token creator, HTTPS + OIDC, the dead letters kept, the alert: all present.
    assert check_consumers(inventory) == []
    assert check_deployed(inventory, UNIVERSIGN) == []


def test_only_the_push_identity_and_nobody_else_may_invoke_the_worker(inventory) -> None:
    invokers = [m for m in inventory["pubsub"]["run_invokers"] if m["service"] == "universign-sync"]
    assert [(m["role"], m["member"].split("@")[0]) for m in invokers] == [
        ("roles/run.invoker", f"serviceAccount:{PUSH_IDENTITY}")
    ]


def test_the_dead_letter_alert_reads_what_the_push_subscription_dead_letters(inventory) -> None:
    (policy,) = [
        p
        for p in inventory["alert_policies"]
        if p["display_name"] == "Universign: queued webhook events dead-lettered"
    ]
    (condition,) = policy["conditions"]
    assert DEAD_LETTER_METRIC in condition["filter"]
    assert f'resource.label.subscription_id="{PUSH}"' in condition["filter"]


def _mutated(tmp_path: Path, old: str, new: str) -> dict[str, Any]:
    copy = copy_terraform(tmp_path)
    path = copy / "universign.tf"
    text = path.read_text()
    assert old in text, f"mutation target {old!r} not in universign.tf"
    path.write_text(text.replace(old, new, 1))
    inventory: dict[str, Any] = load_inventory(copy)
    return inventory


def test_a_push_identity_that_may_not_invoke_the_worker_is_noticed(tmp_path) -> None:
    inventory = _mutated(
        tmp_path,
        "invokers        = { push = google_service_account.universign_sync_push[0].email }",
        "",
    )
    problems = check_deployed(inventory, UNIVERSIGN)
    assert any("pushes as" in p and "which may not invoke it" in p for p in problems), problems


def test_an_agent_that_cannot_acknowledge_on_the_push_subscription_is_noticed(tmp_path) -> None:
    inventory = _mutated(
        tmp_path,
        'role         = "roles/pubsub.subscriber"\n  member       = local.pubsub_agent',
        'role         = "roles/pubsub.viewer"\n  member       = local.pubsub_agent',
    )
    problems = check_consumers(inventory)
    assert any(
        PUSH in p and "the Pub/Sub service agent cannot acknowledge on it" in p for p in problems
    ), problems


def test_a_pushed_message_reaches_the_entry_point_as_the_eventarc_cloud_event(tmp_path) -> None:
    """functions-framework converts a raw Pub/Sub push body for a @cloud_event function: the
    data, attributes, message id and publishTime sit where an Eventarc trigger puts them, and
    shared.events reads them the same way."""
    from cloudevents.http import CloudEvent
    from functions_framework import create_app

    from shared import events

    seen = tmp_path / "seen.json"
    source = tmp_path / "main.py"
    source.write_text(
        textwrap.dedent(
            f"""
            import json
            import pathlib

            import functions_framework

            @functions_framework.cloud_event
            def worker(cloud_event):
                pathlib.Path({str(seen)!r}).write_text(
                    json.dumps({{"attributes": dict(cloud_event.get_attributes()),
                                 "data": cloud_event.data}})
                )
            """
        )
    )
    app = create_app("worker", str(source))
    body = {"event_id": "evt-1", "transaction_id": "tr-1"}
    pushed = {
        "message": {
            "data": base64.b64encode(json.dumps(body).encode()).decode(),
            "attributes": {"transaction_id": "tr-1"},
            "messageId": "4242",
            "publishTime": "2026-12-03T19:00:00.123Z",
        },
        "subscription": f"projects/p/subscriptions/{PUSH}",
        "deliveryAttempt": 3,
    }
    response = app.test_client().post("/", json=pushed)
    assert response.status_code == 200, response.get_data(as_text=True)
    event = CloudEvent(**json.loads(seen.read_text()))
    message = event.data["message"]
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["id"] == "4242"
    assert message["attributes"] == {"transaction_id": "tr-1"}
    assert message["publishTime"] == "2026-12-03T19:00:00.123Z"
    decoded = events.decode(event)
    assert decoded.data == body
    assert decoded.attributes == {"transaction_id": "tr-1"}
    assert decoded.message_id == "4242"
    assert decoded.published_at is not None
