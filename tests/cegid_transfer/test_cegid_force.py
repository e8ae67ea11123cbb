"""cegid_force and the scheduler calls of cegid_api: discover, list and force from the CLI, and
force by a Pub/Sub message."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import cegid_api
import pytest
from alerting import feeds
from cegid_testlib import World, cloud_event, load_function

from cli.__main__ import main as cli_main
from shared import clock

NOW = datetime(2026, 3, 10, 13, 0, 30, tzinfo=UTC)


@pytest.fixture
def cli_env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(clock, "now", lambda: NOW)
    return world


def without_next(schedulers: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in s.items() if k != "nextExecution"} for s in schedulers]


def test_discover_prints_the_provider_id(cli_env: World, capsys) -> None:
    assert cli_main(["cegid", "discover"]) == 0
    assert cli_env.fake.provider_id in capsys.readouterr().out


def test_list_shows_name_enabled_cron_and_runs(cli_env: World, capsys) -> None:
    assert cli_main(["cegid", "list"]) == 0
    out = capsys.readouterr().out
    for scheduler in cli_env.fake.schedulers:
        line = next(x for x in out.splitlines() if x.startswith(scheduler["query"]["name"] + " "))
        assert scheduler["cron"] in line and scheduler["nextExecution"] in line
        assert scheduler["lastExecution"] in line and " yes " in line
    assert cli_env.fake.api_key_secret not in out


def test_force_all_at_a_time_changes_only_next_execution(cli_env: World, capsys) -> None:
    before = copy.deepcopy(cli_env.fake.schedulers)

    assert cli_main(["cegid", "force", "--time", "14:30"]) == 0

    after = cli_env.fake.schedulers
    assert without_next(after) == without_next(before)  # cron, enable, query untouched
    assert {s["nextExecution"] for s in after} == {"2026-03-10T14:30:00.000Z"}
    assert capsys.readouterr().out.count("forced ") == len(before)


def test_force_by_partial_name_and_past_time_means_tomorrow(cli_env: World) -> None:
    before = copy.deepcopy(cli_env.fake.schedulers)

    assert cli_main(["cegid", "force", "--name", "ecrit", "--time", "06:00"]) == 0

    after = {s["query"]["name"]: s for s in cli_env.fake.schedulers}
    assert after["ECRITURES"]["nextExecution"] == "2026-03-11T06:00:00.000Z"
    others = [s for s in before if s["query"]["name"] != "ECRITURES"]
    assert [after[s["query"]["name"]] for s in others] == others
    assert without_next(cli_env.fake.schedulers) == without_next(before)


def test_force_defaults_to_setting_else_fifteen_minutes(cli_env: World, monkeypatch) -> None:
    assert cli_main(["cegid", "force", "--name", "TIERS"]) == 0
    tiers = next(s for s in cli_env.fake.schedulers if s["query"]["name"] == "TIERS")
    assert tiers["nextExecution"] == "2026-03-10T13:15:00.000Z"

    monkeypatch.setenv("CEGID_FORCE_TIME", "23:05")
    assert cli_main(["cegid", "force", "--name", "TIERS"]) == 0
    tiers = next(s for s in cli_env.fake.schedulers if s["query"]["name"] == "TIERS")
    assert tiers["nextExecution"] == "2026-03-10T23:05:00.000Z"


def test_force_refuses_a_bad_time_and_an_unknown_name(cli_env: World, capsys) -> None:
    before = copy.deepcopy(cli_env.fake.schedulers)
    assert cli_main(["cegid", "force", "--time", "25:99"]) == 1
    assert cli_main(["cegid", "force", "--name", "NO SUCH QUERY"]) == 1
    assert cli_env.fake.schedulers == before
    assert "HH:MM" in capsys.readouterr().err


def test_force_time_rules() -> None:
    assert cegid_api.force_time("14:30", None, NOW) == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    assert cegid_api.force_time(None, "13:00", NOW) == datetime(2026, 3, 11, 13, 0, tzinfo=UTC)
    assert cegid_api.force_time(None, None, NOW) == datetime(2026, 3, 10, 13, 15, tzinfo=UTC)
    with pytest.raises(cegid_api.BadForceRequest):
        cegid_api.force_time("1430", None, NOW)


def test_force_message_in_process(world: World, monkeypatch, capsys) -> None:
    module = load_function(monkeypatch, world.env, target="cegid_queries")
    monkeypatch.setattr(clock, "now", lambda: NOW)
    before = copy.deepcopy(world.fake.schedulers)

    module.cegid_queries(cloud_event({"action": "force", "name": "BALANCE", "time": "14:30"}))

    after = {s["query"]["name"]: s for s in world.fake.schedulers}
    assert after["BALANCE_ANALYTIQUE"]["nextExecution"] == "2026-03-10T14:30:00.000Z"
    assert without_next(world.fake.schedulers) == without_next(before)
    assert after["TIERS"] == next(s for s in before if s["query"]["name"] == "TIERS")
    out = capsys.readouterr().out
    summary = [json.loads(x) for x in out.splitlines() if "run_summary" in x]
    assert summary[-1]["forced"] == 1 and summary[-1]["action"] == "force"
    # A forced query is on demand, not the scheduled transfer: it counts as no run at all
    # (its success must not hide a transfer that stopped), only its duration is kept.
    assert summary[-1]["entry_point"] == "cegid_queries"
    assert feeds(out, entry_point="cegid_queries") == {"keepalive_run_duration_seconds": 1}

    # Bad requests are logged and acknowledged, never raised, and change nothing.
    for bad in ({"action": "delete"}, {"action": "force", "time": "noon"}, {"x": 1}):
        module.cegid_queries(cloud_event(bad))
    assert world.fake.schedulers == list(after.values())
