"""The last successful transfer: cegid_transfer writes it in its state bucket, through Pub/Sub,
and ``python -m cli status`` shows it on the Cegid row."""

from __future__ import annotations

import json
import os
import time

import cegid_run
import pytest
from cegid_testlib import World, load_function, run_once

from cli.__main__ import main
from devtools import gcp
from shared import clock

STATUS_OBJECT = "status/cegid-transfer.json"


def status_document(world: World) -> dict[str, object] | None:
    blob = world.state_bucket.get_blob(STATUS_OBJECT)
    return None if blob is None else dict(json.loads(blob.download_as_bytes()))


@pytest.mark.e2e
def test_a_transfer_through_pubsub_is_shown_by_cli_status(
    world: World, function_server, monkeypatch, capsys
) -> None:
    world.put("e2e/a.csv", b"a;b\n1;2\n")
    world.put("e2e/b.csv", b"c;d\n3;4\n")
    server = function_server(
        "cegid_transfer", "cegid_transfer", signature_type="cloudevent", env=world.env
    )
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    topic = f"cegid-transfer-trigger-{world.suffix}"
    gcp.create_push_subscription(project, topic, f"push-status-{world.suffix}", server.url)
    publisher = gcp.publisher()
    try:
        publisher.publish(gcp.topic_path(project, topic), b"{}").result(30)
    finally:
        publisher.transport.close()
    end = time.monotonic() + 60
    while status_document(world) is None and time.monotonic() < end:
        time.sleep(0.2)

    document = status_document(world)
    assert document is not None, server.log_text()[-2000:]
    assert (document["files"], document["bytes"]) == (2, 16)
    assert "sig=" not in json.dumps(document)

    for name in ("CEGID_MODE", "CEGID_API_KEY_SECRET_SECRET"):
        monkeypatch.setenv(name, world.env[name])
    main(["status", "--project", project, "--json", "--state-bucket", world.state_bucket.name])
    report = json.loads(capsys.readouterr().out)
    (row,) = [r for r in report["items"] if r["integration"] == "cegid"]
    assert (row["item"], row["state"]) == ("api key", "ok")
    assert row["last_success"] == document["last_success_at"]
    assert "last transfer moved 2 files (16 bytes)" in row["detail"]


def test_a_run_with_a_failed_file_is_not_recorded_as_a_success(world: World, monkeypatch) -> None:
    world.put("first.csv", b"1")
    module = load_function(monkeypatch, world.env)
    assert run_once(module).failed == 0
    first = status_document(world)
    assert first is not None and first["files"] == 1
    assert clock.parse_time(str(first["last_success_at"])) is not None

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Azure hung up")

    world.put("second.csv", b"2")
    monkeypatch.setattr(cegid_run, "transfer_one", broken)
    summary = run_once(module)
    assert (summary.result, summary.failed) == ("done", 1)
    assert status_document(world) == first  # still the last success


def test_a_refused_sas_is_not_recorded_as_a_success(world: World, monkeypatch) -> None:
    world.fake.mode = "expired_sas"
    module = load_function(monkeypatch, world.env)
    assert run_once(module).result == "sas_invalid"
    assert status_document(world) is None
