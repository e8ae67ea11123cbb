"""b24_plan: message parsing and the refresh decision, with no environment, no framework and
no service (the module promises all three)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from b24_plan import Outcome, judge, not_called, parse_request

from shared import events
from shared.status import CredentialStatus
from tests.b24_token_refresh.b24_support import bare_import

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MARGIN = timedelta(minutes=35)


def test_imports_without_environment_framework_or_clients() -> None:
    assert (
        bare_import(
            "b24_plan",
            absent=("main", "requests", "google.cloud.secretmanager", "google.cloud.storage"),
        )
        == ""
    )


@pytest.mark.parametrize(
    ("data", "force"), [({}, False), ({"force": True}, True), ({"force": False}, False)]
)
def test_trigger_and_force_are_read(data: dict[str, Any], force: bool) -> None:
    assert parse_request(data) is force


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"force": "yes"}, "force must be true or false"),
        ({"force": 1}, "force must be true or false"),
        ({"force": True, "extra": 1}, "unknown fields ['extra']"),
        ({"accounts": []}, "unknown fields ['accounts']"),
    ],
)
def test_anything_else_is_refused(data: dict[str, Any], says: str) -> None:
    with pytest.raises(
        events.BadMessage, match=r"^" + says.replace("[", r"\[").replace("]", r"\]")
    ):
        parse_request(data)


def _judge(status: CredentialStatus, version: int | None = 3, **kwargs: Any) -> tuple[bool, str]:
    arguments: dict[str, Any] = {"force": False, "requested_at": None, **kwargs}
    decision = judge(status, version, now=NOW, margin=MARGIN, **arguments)
    return decision.refresh, decision.reason


def test_unknown_expiry_refreshes() -> None:
    assert _judge(CredentialStatus()) == (True, "expiry unknown")


def test_fresh_token_is_left_alone_and_margin_is_inclusive() -> None:
    fresh = CredentialStatus(
        state="ok", expires_at=NOW + timedelta(minutes=36), refresh_token_version=3
    )
    assert _judge(fresh) == (False, "fresh")
    due = CredentialStatus(state="ok", expires_at=NOW + MARGIN, refresh_token_version=3)
    assert _judge(due) == (True, "expires within margin")
    gone = CredentialStatus(
        state="ok", expires_at=NOW - timedelta(seconds=1), refresh_token_version=3
    )
    assert _judge(gone) == (True, "expired")


def test_new_refresh_token_version_refreshes_even_when_fresh_or_refused() -> None:
    fresh = CredentialStatus(
        state="ok", expires_at=NOW + timedelta(hours=1), refresh_token_version=3
    )
    assert _judge(fresh, 4) == (True, "refresh token changed")
    refused = CredentialStatus(state="needs-reauth", refresh_token_version=3)
    assert _judge(refused, 3) == (False, "needs-reauth")
    assert _judge(refused, 3, force=True) == (False, "needs-reauth")
    assert _judge(refused, 4) == (True, "refresh token changed")


def test_force_refreshes_unless_the_request_was_already_served() -> None:
    fresh = CredentialStatus(
        state="ok",
        expires_at=NOW + timedelta(hours=1),
        refreshed_at=NOW - timedelta(minutes=5),
        refresh_token_version=3,
    )
    assert _judge(fresh, force=True) == (True, "forced")
    assert _judge(fresh, force=True, requested_at=NOW - timedelta(minutes=1)) == (True, "forced")
    # Redelivery of a request published before the last refresh.
    served = _judge(fresh, force=True, requested_at=NOW - timedelta(minutes=10))
    assert served == (False, "already refreshed since the request")


def test_outcome_defaults_to_no_versions_and_no_expiry() -> None:
    outcome = Outcome("skipped", "fresh")
    assert (outcome.expires_at, outcome.refresh_token_version, outcome.access_token_version) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("reason", "result"),
    [
        ("fresh", "skipped"),
        ("already refreshed since the request", "skipped"),
        ("needs-reauth", "needs-reauth"),
    ],
)
def test_a_run_waiting_for_a_person_is_not_a_skip(reason: str, result: str) -> None:
    """Monitoring counts "skipped" as a success: waiting for re-authorisation must not be one."""
    assert not_called(reason, None).result == result
