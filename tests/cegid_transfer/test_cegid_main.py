"""main.py: the settings, the clients, the entry points and the message prologue; the sibling
modules leave the environment and the framework to it."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cegid_testlib import FOLDER, bare_import, cloud_event, load_function

SIBLINGS = sorted(p.stem for p in Path(FOLDER).glob("*.py") if p.stem != "main")
UNIT_ENV = {
    "GOOGLE_CLOUD_PROJECT": "unit-project",
    "STATE_BUCKET": "unit-state",
    "CEGID_BUCKET": "unit-export",
}


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module: ModuleType = load_function(monkeypatch, UNIT_ENV)
    return module


@pytest.fixture
def calls(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What the entry points handed on (the run and the force are replaced)."""
    seen: list[tuple[str, Any]] = []
    monkeypatch.setattr(main, "clients", lambda: "clients")
    monkeypatch.setattr(
        main, "run", lambda settings, holder, *, deadline: seen.append(("run", holder))
    )
    monkeypatch.setattr(
        main,
        "run_force",
        lambda settings, holder, name, when, *, started: seen.append(("force", (name, when))),
    )
    return seen


def test_main_keeps_the_names_its_callers_use(main: ModuleType) -> None:
    """cegid_testlib.run_once and the hardening tests drive runs through the module."""
    assert callable(main.cegid_transfer) and callable(main.cegid_queries)
    assert main.SETTINGS.project == "unit-project" and main.SETTINGS.mode == "api"
    assert main.SETTINGS.copy.chunk_bytes == 4 * 1024 * 1024
    for name in ("run", "clients", "Clients", "Settings"):
        assert getattr(main, name) is not None, name


@pytest.mark.parametrize("module", SIBLINGS)
def test_siblings_import_without_environment_or_framework(module: str) -> None:
    """Only main.py reads the environment and needs functions_framework."""
    assert bare_import(module) == ""


def test_the_plan_loads_no_client_library() -> None:
    absent = ("azure.storage.blob", "google.cloud.storage", "requests", "cegid_api")
    assert bare_import("cegid_plan", absent=absent) == ""


def test_the_trigger_runs_on_an_empty_message(main: ModuleType, calls: list[Any]) -> None:
    main.cegid_transfer(cloud_event({}))
    assert calls == [("run", "clients")]


def test_the_trigger_ignores_anything_else(
    main: ModuleType, calls: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    main.cegid_transfer(cloud_event({"action": "force"}, "m-7"))
    assert calls == []
    assert (
        "ignoring message m-7: the transfer takes {} (force requests go to cegid-queries)"
        in caplog.text
    )


def test_a_force_request_is_parsed_then_handed_on(main: ModuleType, calls: list[Any]) -> None:
    main.cegid_queries(cloud_event({"action": "force", "name": "TIERS", "time": "06:00"}))
    [(kind, (name, when))] = calls
    assert (kind, name, (when.hour, when.minute)) == ("force", "TIERS", (6, 0))


def test_a_bad_force_request_is_logged_and_acknowledged(
    main: ModuleType, calls: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    main.cegid_queries(cloud_event({"action": "force", "time": "noon"}, "m-8"))
    main.cegid_queries(cloud_event({"action": "delete"}, "m-9"))
    assert calls == []
    assert "ignoring message m-8: time must be HH:MM (UTC), got 'noon'" in caplog.text
    assert 'ignoring message m-9: action must be "force"' in caplog.text
