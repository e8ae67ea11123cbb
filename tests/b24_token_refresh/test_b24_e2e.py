"""End to end, as in production: a message published to the trigger topic on the Pub/Sub
emulator is pushed to b24_token_refresh running under functions-framework, which calls the
Bitrix24 fake and writes to the Secret Manager stand-in."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devtools import gcp
from tests.b24_token_refresh.b24_support import B24

pytestmark = pytest.mark.e2e


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_summaries(*servers: Any) -> list[dict[str, Any]]:
    found = []
    for server in servers:
        for line in server.log_text().splitlines():
            if line.startswith("{") and '"run_summary"' in line:
                found.append(json.loads(line))
    return found


def serve(b24: B24, function_server: Any, topic: str) -> Any:
    server = function_server(
        "b24_token_refresh", "b24_token_refresh", signature_type="cloudevent", env=b24.env
    )
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    gcp.create_push_subscription(project, topic, f"push-{uuid.uuid4().hex[:8]}", server.url)
    return server


def publish(topic: str, data: dict[str, Any], count: int = 1) -> None:
    client = gcp.publisher()
    path = gcp.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], topic)
    futures = [client.publish(path, json.dumps(data).encode()) for _ in range(count)]
    for future in futures:
        future.result(timeout=30)


def test_scheduled_message_refreshes_then_second_run_skips(b24: B24, function_server) -> None:
    topic = f"b24-token-refresh-trigger-{uuid.uuid4().hex[:6]}"
    server = serve(b24, function_server, topic)

    publish(topic, {})
    wait_for(lambda: len(run_summaries(server)) >= 1, what="the first run")
    assert b24.fake.refreshes == 1
    first = b24.store.read(b24.access_secret)
    assert first.value in b24.fake.live_access_tokens
    assert b24.status().state == "ok"

    publish(topic, {})
    wait_for(lambda: len(run_summaries(server)) >= 2, what="the second run")
    summary = run_summaries(server)[-1]
    assert summary["result"] == "skipped" and summary["reason"] == "fresh"
    assert b24.fake.refreshes == 1
    assert b24.store.read(b24.access_secret).version == first.version
    assert b24.fake.reused == 0
    assert "client_secret" not in server.log_text()
    assert b24.fake.client_secret not in server.log_text()


def test_concurrent_deliveries_refresh_exactly_once(b24: B24, function_server) -> None:
    """Ten messages, each delivered to two function processes: twenty concurrent runs."""
    topic = f"b24-token-refresh-trigger-{uuid.uuid4().hex[:6]}"
    servers = [serve(b24, function_server, topic) for _ in range(2)]

    publish(topic, {}, count=10)
    wait_for(lambda: len(run_summaries(*servers)) >= 20, timeout=120, what="twenty runs")
    assert b24.fake.refreshes == 1
    assert b24.fake.reused == 0
    results = [s["result"] for s in run_summaries(*servers)]
    assert results.count("refreshed") == 1
    assert b24.store.read(b24.access_secret).value in b24.fake.live_access_tokens
