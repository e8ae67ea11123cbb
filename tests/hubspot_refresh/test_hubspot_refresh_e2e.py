"""End to end, as in production: messages published on the Pub/Sub emulator are pushed to
hubspot_refresh running under functions-framework, which calls the HubSpot fake and writes to
the Secret Manager stand-in, with its locks on fake-gcs-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hubspot_endpoint import endpoint_notice

from devtools import gcp
from shared import clock
from tests.hubspot_refresh.hubspot_testkit import REPO, HubSpotSetup, log_events, summaries

pytestmark = pytest.mark.e2e


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def publish(project: str, topic: str, data: dict[str, Any], count: int = 1) -> None:
    client = gcp.publisher()
    try:
        path = gcp.topic_path(project, topic)
        futures = [client.publish(path, json.dumps(data).encode()) for _ in range(count)]
        for future in futures:
            future.result(timeout=30)
    finally:
        client.transport.close()


def cli_status(hs: HubSpotSetup) -> tuple[int, dict[str, Any]]:
    """``python -m cli status --json`` as an operator runs it, against the same project."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json", "--project", hs.project],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def serve(hs: HubSpotSetup, function_server: Any, **env: str) -> Any:
    return function_server(
        "hubspot_refresh",
        "hubspot_refresh",
        signature_type="cloudevent",
        env={**hs.env, **env},
    )


def test_scheduled_message_refreshes_every_due_account(hs: HubSpotSetup, function_server) -> None:
    tokens = {a: hs.add_account(a) for a in ("62515", "62516", "62517")}
    hs.add_account("62518", enabled=False)
    hs.fake.revoke(tokens["62517"])
    server = serve(hs, function_server)
    topic = f"hubspot-token-refresh-trigger-{uuid.uuid4().hex[:6]}"
    gcp.create_push_subscription(hs.project, topic, f"push-{uuid.uuid4().hex[:8]}", server.url)

    # Delivered twice on purpose: the duplicate finds nothing left to do.
    publish(hs.project, topic, {}, count=1)
    wait_for(lambda: len(summaries(server.log_text())) >= 1, what="the first run")
    publish(hs.project, topic, {})
    wait_for(lambda: len(summaries(server.log_text())) >= 2, what="the second run")

    assert dict(hs.fake.refreshes) == {62515: 1, 62516: 1}
    for account in ("62515", "62516"):
        assert hs.fake.is_live(hs.access_token(account))
        assert hs.status(account).state == "ok"
    assert hs.status("62517").state == "needs-reauth"
    assert hs.fake.refused[62517] == 1  # not called again by the second run
    first, second = summaries(server.log_text())[:2]
    assert (first["accounts_seen"], first["refreshed"], first["needs_reauth"]) == (4, 2, 1)
    assert first["disabled"] == 1
    assert (second["refreshed"], second["skipped_fresh"], second["needs_reauth"]) == (0, 2, 1)

    log = server.log_text()
    for value in hs.secret_values():
        assert value not in log


def test_sharded_run_fans_out_to_the_work_topic_consumed_by_the_same_function(
    hs: HubSpotSetup, function_server
) -> None:
    accounts = [str(70000 + i) for i in range(5)]
    for account in accounts:
        hs.add_account(account)
    trigger = f"hubspot-token-refresh-trigger-{uuid.uuid4().hex[:6]}"
    work = f"hubspot-token-refresh-work-{uuid.uuid4().hex[:6]}"
    server = serve(hs, function_server, HUBSPOT_SHARD_SIZE="2", HUBSPOT_WORK_TOPIC=work)
    gcp.create_push_subscription(hs.project, trigger, f"push-{uuid.uuid4().hex[:8]}", server.url)
    gcp.create_push_subscription(hs.project, work, f"push-{uuid.uuid4().hex[:8]}", server.url)

    publish(hs.project, trigger, {})
    wait_for(
        lambda: sum(s.get("mode") == "shard" for s in summaries(server.log_text())) >= 3,
        what="three shard runs",
    )

    lines = summaries(server.log_text())
    (fan_out,) = [s for s in lines if s["mode"] == "fan_out"]
    assert fan_out["shards"] == 3 and fan_out["dispatched"] == 5
    shards = [s for s in lines if s["mode"] == "shard"]
    assert sorted(s["shard"] for s in shards) == ["1/3", "2/3", "3/3"]
    assert sum(s["refreshed"] for s in shards) == 5
    assert dict(hs.fake.refreshes) == {int(a): 1 for a in accounts}


def test_a_retiring_endpoint_is_a_warning_each_run_and_a_status_row_until_switched(
    hs: HubSpotSetup, function_server
) -> None:
    """Deployed with v1 (still selectable): each run's WARNING and a `cli status` row name the
    setting to change; deployed again with the default path, both are gone."""
    hs.add_account("80001")
    v1 = f"{hs.fake.url}/oauth/v1/token"
    server = serve(hs, function_server, HUBSPOT_TOKEN_URL=v1)
    topic = f"hubspot-token-refresh-trigger-{uuid.uuid4().hex[:6]}"
    gcp.create_push_subscription(hs.project, topic, f"push-{uuid.uuid4().hex[:8]}", server.url)
    publish(hs.project, topic, {"force": True})
    wait_for(lambda: len(summaries(server.log_text())) >= 1, what="the v1 run")
    assert hs.fake.token_paths == {"/oauth/v1/token": 1}
    (warning,) = log_events(server.log_text(), "token_endpoint_retiring")
    notice = endpoint_notice(v1, clock.now().date())
    assert notice is not None
    assert warning["severity"] == ("ERROR" if notice.retired else "WARNING")
    assert warning["endpoint"] == v1 and "HUBSPOT_TOKEN_URL" in warning["message"]

    code, report = cli_status(hs)
    (row,) = [r for r in report["items"] if r["item"].startswith("token endpoint")]
    assert row["item"] == "token endpoint /oauth/v1/token"
    assert row["state"] == notice.state and row["attention"] == (notice.state != "deprecated")
    assert row["expires_at"] == "2027-02-16T00:00:00Z"
    assert row["detail"] == f"set HUBSPOT_TOKEN_URL to {hs.fake.url}/oauth/2026-03/token"
    assert code == (1 if row["attention"] else 0)

    # Switched: the next run uses the default's path and records it; the row is gone.
    switched = serve(hs, function_server)
    topic = f"hubspot-token-refresh-trigger-{uuid.uuid4().hex[:6]}"
    gcp.create_push_subscription(hs.project, topic, f"push-{uuid.uuid4().hex[:8]}", switched.url)
    publish(hs.project, topic, {"force": True})
    wait_for(lambda: len(summaries(switched.log_text())) >= 1, what="the switched run")
    assert hs.fake.token_paths["/oauth/2026-03/token"] == 1
    assert log_events(switched.log_text(), "token_endpoint_retiring") == []
    code, report = cli_status(hs)
    assert [r["item"] for r in report["items"] if r["integration"] == "hubspot"] == [
        "account 80001"
    ]
    assert code == 0
