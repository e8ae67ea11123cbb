"""Fixtures for the hubspot_refresh tests (helpers live in hubspot_testkit)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.hubspot_refresh.hubspot_testkit import HubSpotSetup, make_setup


@pytest.fixture
def hs(stack: Any) -> Iterator[HubSpotSetup]:
    setup, fake = make_setup(stack)
    try:
        yield setup
    finally:
        fake.stop()
