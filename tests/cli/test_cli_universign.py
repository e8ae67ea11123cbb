"""``python -m cli universign track|show|sync`` against the emulators: the command publishes to
the poll's trigger topic, the Pub/Sub emulator pushes to universign_poll served in its own
process, and the command reads what the function wrote to the state bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools import gcp
from devtools.fakes.universign import TRANSACTION_ROUTE, UniversignFake
from tests.universign_webhook.universign_testkit import (  # noqa: F401 - fixture
    Kit,
    fake_fixture,
    make_kit,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def cli(kit: Kit, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **kit.env, "PYTHONPATH": str(REPO)}
    env.pop("UNIVERSIGN_STATE_BUCKET", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "universign",
            "--project",
            kit.project,
            "--bucket",
            kit.env["STATE_BUCKET"],
            "--topic",
            topic,
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def served(stack: Any, fake: UniversignFake, function_server: Any) -> tuple[Kit, str]:
    """The poll function behind a push subscription on its own trigger topic."""
    kit = make_kit(stack, fake)
    poll = function_server(
        "universign_webhook", "universign_poll", signature_type="cloudevent", env=kit.env
    )
    topic = f"universign-poll-trigger-{kit.subscription[-8:]}"
    gcp.create_push_subscription(kit.project, topic, f"push-{kit.subscription[-8:]}", poll.url)
    return kit, topic


def test_track_show_and_sync(served: tuple[Kit, str]) -> None:
    kit, topic = served
    tx = kit.fake.create_transaction(state="started", signers=["ann@example.com"]).id
    tracked = cli(kit, topic, "track", tx, "--reference", "DEV-0042")
    assert tracked.returncode == 0, tracked.stderr
    assert f"{tx}: EN_COURS (Universign: started)" in tracked.stdout
    assert kit.must(tx)["reference"] == "DEV-0042"

    shown = cli(kit, topic, "show", tx)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "status        EN_COURS (Universign: started)" in out
    assert "reference     DEV-0042" in out
    assert "1. ann@example.com  waiting  viewed -  signed -" in out
    assert "sync log (last 1 of 1, oldest first)" in out and "  track  new -> EN_COURS" in out

    # Final, and already re-checked by the poll's rules: sync re-reads it all the same.
    kit.fake.set_state(tx, "cancelled")
    synced = cli(kit, topic, "sync", tx)
    assert synced.returncode == 0, synced.stderr
    assert f"{tx}: ANNULE (Universign: cancelled)" in synced.stdout
    kit.fake.set_state(tx, "expired")
    before = kit.fake.count(TRANSACTION_ROUTE)
    assert cli(kit, topic, "sync", tx).returncode == 0
    assert kit.fake.count(TRANSACTION_ROUTE) == before + 1
    doc = kit.must(tx)
    assert doc["status"] == "ANNULE" and doc["reference"] == "DEV-0042"  # never regresses

    as_json = json.loads(cli(kit, topic, "show", tx, "--json").stdout)
    assert as_json["document"]["transaction_id"] == tx
    assert [e["source"] for e in as_json["sync_log"]] == ["track", "track", "track"]
    assert [m["reference"] for m in kit.messages(2)] == ["DEV-0042", "DEV-0042"]


def test_mistakes_are_refused_before_anything_is_published(served: tuple[Kit, str]) -> None:
    kit, topic = served
    assert cli(kit, topic, "track", "not a tx").returncode == 2
    assert cli(kit, topic, "track", "tx_1", "--reference", "a\tb").returncode == 2
    assert cli(kit, topic, "show", "tx_never_tracked").returncode == 1
    assert kit.fake.count(TRANSACTION_ROUTE) == 0
