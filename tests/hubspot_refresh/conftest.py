"""Fixtures for the hubspot_refresh tests (helpers live in hubspot_testkit).

Importing hubspot_testkit puts functions/hubspot_refresh on sys.path, before any test module
here is imported: tests import the function's sibling modules by bare name
(``import hubspot_plan``), as main.py does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared import clock
from tests.hubspot_refresh.hubspot_testkit import Clock, HubSpotSetup, make_setup


@pytest.fixture
def hs(stack: Any) -> Iterator[HubSpotSetup]:
    setup, fake = make_setup(stack)
    try:
        yield setup
    finally:
        fake.stop()


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(clock, "now", fake.now)
    return fake
