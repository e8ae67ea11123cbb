"""hubspot_shards: the scheduled run plans and publishes the due accounts in shards; the same
function consumes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import hubspot_shards
import pytest
from alerting import ONE_RUN_FAILED
from hubspot_plan import RunRequest

from shared import clock
from tests.hubspot_refresh.hubspot_testkit import (
    FAILING,
    NO_SUCCESS,
    HubSpotSetup,
    deliver,
    load_main,
    monitored,
    pubsub_cloud_event,
    secret_reads,
    summaries,
)


def test_shard_mode_publishes_due_accounts_and_work_messages_refresh_them(
    hs: HubSpotSetup, monkeypatch, capsys
) -> None:
    for account in ("1201", "1202", "1203", "1204", "1205", "1206"):
        hs.add_account(account)
    fresh = clock.format_time(clock.now() + timedelta(hours=1))
    hs.set_status("1205", **{"state": "ok", "expires-at": fresh})
    main = load_main(hs, monkeypatch, HUBSPOT_SHARD_SIZE="2", HUBSPOT_WORK_TOPIC="hs-work")
    published: list[bytes] = []

    summary = hubspot_shards.fan_out(
        main.SETTINGS,
        main.clients(),
        RunRequest(),
        requested_at=clock.now(),
        publish=published.append,
    )

    assert summary.shards == 3 and summary.counts["skipped_fresh"] == 1
    messages: list[dict[str, Any]] = [json.loads(m) for m in published]
    assert [m["accounts"] for m in messages] == [["1201", "1202"], ["1203", "1204"], ["1206"]]
    assert [m["shard"] for m in messages] == ["1/3", "2/3", "3/3"]
    assert hs.token_calls() == 0  # the planner never calls HubSpot
    planned = capsys.readouterr().out
    # ... nor reads a secret value (versions and statuses are metadata); it is a run of its own.
    assert secret_reads(planned) == [(0, 0.0)]
    # It sent shards ("dispatched"): neither a success nor a failure; the shards report.
    assert [line["result"] for line in summaries(planned)] == ["dispatched"]
    assert monitored(planned) == (
        {
            "keepalive_run_duration_seconds": 1,
            "keepalive_runs": 1,
            "keepalive_secret_reads": 1,
        },
        set(),
    )

    for message in messages:
        assert deliver(main, pubsub_cloud_event(message)) == 200
    assert dict(hs.fake.refreshes) == {1201: 1, 1202: 1, 1203: 1, 1204: 1, 1206: 1}
    # A redelivered shard finds its accounts refreshed since the request.
    assert deliver(main, pubsub_cloud_event(messages[0])) == 200
    assert hs.token_calls() == 5
    worked = capsys.readouterr().out
    assert [s["mode"] for s in summaries(worked)] == ["shard"] * 4
    # Each shard reads the client id and client secret again, then one refresh token per
    # account; the redelivered one reads nothing.
    assert secret_reads(worked) == [(4, 2.0), (4, 2.0), (3, 3.0), (0, 0.0)]
    assert monitored(worked) == (
        {
            "keepalive_run_duration_seconds": 4,
            "keepalive_run_ok": 4,
            "keepalive_runs": 4,
            "keepalive_secret_reads": 4,
        },
        {NO_SUCCESS},
    )


def test_a_failed_publish_is_reported_and_raised_for_pub_sub_to_retry(
    hs: HubSpotSetup, monkeypatch, capsys
) -> None:
    hs.add_account("1211")
    main = load_main(hs, monkeypatch, HUBSPOT_SHARD_SIZE="2", HUBSPOT_WORK_TOPIC="hs-work")

    def unavailable(data: bytes) -> None:
        raise ConnectionError("Pub/Sub unavailable")

    with pytest.raises(ConnectionError):
        hubspot_shards.fan_out(
            main.SETTINGS, main.clients(), RunRequest(), requested_at=None, publish=unavailable
        )
    out = capsys.readouterr().out
    (line,) = summaries(out)
    assert (line["mode"], line["result"], line["error"]) == ("fan_out", "failed", "fan_out_failed")
    assert secret_reads(out) == [(0, 0.0)]
    assert monitored(out) == (ONE_RUN_FAILED, {FAILING})


def test_shards_are_consecutive_slices_of_the_size() -> None:
    ids = [str(i) for i in range(5)]
    assert list(hubspot_shards._chunks(ids, 2)) == [["0", "1"], ["2", "3"], ["4"]]
    assert list(hubspot_shards._chunks([], 2)) == []


@pytest.mark.parametrize(
    ("work_topic", "path"),
    [
        ("hs-work", "projects/p1/topics/hs-work"),
        ("projects/other/topics/hs-work", "projects/other/topics/hs-work"),
    ],
)
def test_the_work_topic_is_named_in_the_functions_project_unless_a_path(
    work_topic: str, path: str
) -> None:
    @dataclass(frozen=True)
    class Settings:
        project: str
        work_topic: str

    class Publisher:
        def __init__(self) -> None:
            self.sent: list[tuple[str, bytes]] = []

        def publish(self, topic: str, data: bytes) -> Any:
            self.sent.append((topic, data))
            return self

        def result(self, timeout: float) -> str:
            return "message-id"

    publisher = Publisher()

    class Clients:
        def publisher(self) -> Publisher:
            return publisher

    send = hubspot_shards._publisher(Settings("p1", work_topic), Clients())
    send(b"{}")
    assert publisher.sent == [(path, b"{}")]
