"""Fixtures for the universign_webhook tests (helpers live in universign_testkit).

The function folder goes on sys.path before any test module here is imported: tests import the
sibling modules by bare name (``from universign_plan import parse_event``), as main.py does.
The pure ones need no environment; a test that needs the whole function gets main.py freshly
executed with its environment by ``load_main`` (the ``main`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from cli._functions import use_function_folder
from shared import clock
from tests.universign_webhook.universign_testkit import (  # noqa: F401 - fixtures
    Clock,
    Kit,
    fake_fixture,
    kit_fixture,
    load_main,
    pipeline_client,
    webhook_client,
)

use_function_folder("universign_webhook")


@pytest.fixture
def main(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_main(kit.env, monkeypatch)


@pytest.fixture
def client(main: ModuleType) -> Any:
    return webhook_client(main)


@pytest.fixture
def pipeline(main: ModuleType, kit: Kit) -> Any:
    """Deliveries through the webhook and then universign_sync (universign_testkit)."""
    return pipeline_client(main, kit)


@pytest.fixture
def moving_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(clock, "now", c)
    return c
