"""universign_alerts: the ERROR lines that tell a person what to fix, on main.py's logger.
No environment, no emulator: the settings are the few fields the alerts read."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from google.api_core import exceptions as gexc
from universign_alerts import config_problem, needs_reauth

from shared.errors import TerminalError

SETTINGS = SimpleNamespace(
    entry_point="universign_poll",
    api_key_secret="universign-api-key",
    state_bucket="uni-state",
    archive_bucket="uni-archive",
)


def test_a_refused_key_asks_for_a_new_key(caplog: pytest.LogCaptureFixture) -> None:
    error = TerminalError("refused", code="http_401", status=401)
    with caplog.at_level(logging.ERROR):
        needs_reauth(SETTINGS, error)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.name == "universign_poll"  # main.py's logger, whichever module writes
    assert record.json_fields == {  # type: ignore[attr-defined]
        "event": "needs_reauth",
        "provider": "universign",
        "error_code": "http_401",
    }
    message = record.getMessage()
    assert "universign-api-key" in message
    # The webhook answers once the event is queued: Pub/Sub, not Universign, redelivers it to
    # the worker, and what it gave up on waits in the dead-letter subscription.
    assert "Universign redelivers" not in message
    assert "Pub/Sub redelivers the queued webhook events" in message
    assert "universign-sync-dead-letter" in message


@pytest.mark.parametrize(
    "error",
    [gexc.NotFound("no"), gexc.FailedPrecondition("no"), gexc.PermissionDenied("no")],
)
def test_a_google_refusal_says_what_to_check(
    caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    with caplog.at_level(logging.ERROR):
        assert config_problem(SETTINGS, error) is True
    (record,) = caplog.records
    assert record.name == "universign_poll"
    assert record.json_fields == {  # type: ignore[attr-defined]
        "event": "needs_config",
        "provider": "universign",
        "error_code": type(error).__name__,
    }
    message = record.getMessage()
    assert all(name in message for name in ("universign-api-key", "uni-state", "uni-archive"))


@pytest.mark.parametrize(
    "error",
    [
        gexc.ServiceUnavailable("later"),
        gexc.TooManyRequests("later"),
        TerminalError("x", code="http_400"),
    ],
)
def test_what_waiting_cures_is_no_configuration_problem(
    caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert config_problem(SETTINGS, error) is False
    assert caplog.records == []
