"""End to end: Pub/Sub emulator -> push -> functions-framework -> Cegid fake, Azurite, GCS."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import pytest
from cegid_testlib import World

from devtools import gcp

pytestmark = pytest.mark.e2e


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def publish(topic: str, data: dict[str, object]) -> None:
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    client = gcp.publisher()
    try:
        client.publish(gcp.topic_path(project, topic), json.dumps(data).encode()).result(30)
    finally:
        client.transport.close()


def test_scheduled_message_moves_the_files(world: World, function_server) -> None:
    files = {"e2e/a.csv": b"a;b\n1;2\n", "e2e/deep/er/b.csv": os.urandom(1_500_000)}
    for name, data in files.items():
        world.put(name, data)
    server = function_server(
        "cegid_transfer", "cegid_transfer", signature_type="cloudevent", env=world.env
    )
    topic = f"cegid-transfer-trigger-{world.suffix}"
    gcp.create_push_subscription(
        os.environ["GOOGLE_CLOUD_PROJECT"], topic, f"push-{world.suffix}", server.url
    )

    publish(topic, {})

    wait_for(lambda: '"run_summary"' in server.log_text())
    assert world.landed() == {f"cegid/{n}": d for n, d in files.items()}
    assert world.source_names() == []
    summary = next(
        json.loads(line) for line in server.log_text().splitlines() if '"run_summary"' in line
    )
    assert (summary["files"], summary["failed"], summary["already_present"]) == (2, 0, 0)
    assert "sig=" not in server.log_text().replace("sig=[REDACTED]", "")


def test_force_message_moves_next_execution(world: World, function_server) -> None:
    before = {s["query"]["name"]: dict(s) for s in world.fake.schedulers}
    server = function_server(
        "cegid_transfer", "cegid_queries", signature_type="cloudevent", env=world.env
    )
    topic = f"cegid-queries-{world.suffix}"
    gcp.create_push_subscription(
        os.environ["GOOGLE_CLOUD_PROJECT"], topic, f"push-q-{world.suffix}", server.url
    )

    publish(topic, {"action": "force", "name": "TIERS", "time": "06:00"})

    def tiers() -> dict[str, object]:
        return next(s for s in world.fake.schedulers if s["query"]["name"] == "TIERS")

    wait_for(lambda: tiers()["nextExecution"] != before["TIERS"]["nextExecution"])
    assert str(tiers()["nextExecution"]).endswith("T06:00:00.000Z")
    assert {k: v for k, v in tiers().items() if k != "nextExecution"} == {
        k: v for k, v in before["TIERS"].items() if k != "nextExecution"
    }
    others = {s["query"]["name"]: s for s in world.fake.schedulers if s["query"]["name"] != "TIERS"}
    assert others == {k: v for k, v in before.items() if k != "TIERS"}
