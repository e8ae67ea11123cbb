"""main.py: the settings, the entry point, and what others reach through the module; the
sibling modules leave the environment and the framework to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import ConfigError
from tests.hubspot_refresh.hubspot_testkit import FUNCTION_DIR, bare_import, boot

SIBLINGS = sorted(p.stem for p in Path(FUNCTION_DIR).glob("*.py") if p.stem != "main")


@pytest.fixture
def unit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "unit-project")
    monkeypatch.setenv("STATE_BUCKET", "unit-bucket")


def test_sharding_needs_a_work_topic(unit_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_SHARD_SIZE", "100")
    with pytest.raises(ConfigError, match="HUBSPOT_WORK_TOPIC"):
        boot()


def test_main_keeps_the_names_its_callers_use(unit_env: None) -> None:
    """benchmarks/hubspot_refresh.py and hubspot_testkit drive runs through the module."""
    main = boot()
    assert callable(main.hubspot_refresh)
    assert main.SETTINGS.project == "unit-project"
    assert main.clients() is main.clients()  # one holder per instance
    for name in ("run", "fan_out", "RunRequest", "parse_request"):
        assert callable(getattr(main, name)), name


@pytest.mark.parametrize("module", SIBLINGS)
def test_siblings_import_without_environment_or_framework(module: str) -> None:
    """Only main.py reads the environment and needs functions_framework."""
    assert bare_import(module) == ""
