"""hubspot_plan: message parsing and the per-account decisions, with no environment, no
framework and no service (the module promises all three)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hubspot_plan
import pytest
from hubspot_accounts import Account
from hubspot_plan import RunRequest, RunSummary, judge, parse_request, plan, run_result, select

from shared import clock, events
from shared.status import CredentialStatus, Decision
from tests.hubspot_refresh.hubspot_testkit import bare_import

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class PlanSettings:
    margin: timedelta = timedelta(minutes=20)
    client_id_secret: str = "hubspot-client-id"
    client_secret_secret: str = "hubspot-client-secret"


class Versions:
    """Client-credential versions and refresh-token versions, as Secret Manager would tell."""

    def __init__(self, versions: dict[str, int | None] | None = None) -> None:
        self.versions = versions or {}
        self.asked: list[str] = []

    def version(self, secret_id: str) -> int | None:
        self.asked.append(secret_id)
        return self.versions.get(secret_id, 1)

    def latest_version(self, secret_id: str) -> int | None:
        return self.version(secret_id)


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


def ok(expires_in: timedelta, **extra: str) -> dict[str, str]:
    return {"state": "ok", "expires-at": clock.format_time(NOW + expires_in), **extra}


# --- messages ---------------------------------------------------------------------------


def test_parse_request_shapes() -> None:
    assert parse_request({}) == RunRequest()
    assert parse_request({"force": True}).force is True
    forced = parse_request({"force": True, "accounts": ["62515", 62516, "62515"]})
    assert forced.accounts == ("62515", "62516")
    work = parse_request(
        {"accounts": ["1"], "shard": "1/2", "force": False, "requested_at": "2026-01-01T00:00:00Z"}
    )
    assert work.shard == "1/2" and work.requested_at is not None


@pytest.mark.parametrize(
    "data",
    [
        {"force": 1},
        {"accounts": ["1"]},
        {"force": True, "accounts": "1"},
        {"force": True, "accounts": [True]},
        {"shard": 3, "accounts": ["1"]},
        {"shard": "1/1"},
        {"shard": "1/1", "accounts": ["1"], "requested_at": "yesterday"},
        {"force": True, "extra": 1},
    ],
)
def test_parse_request_refuses(data: dict[str, Any]) -> None:
    with pytest.raises(events.BadMessage):
        parse_request(data)


# --- one account ------------------------------------------------------------------------------


def test_a_message_older_than_the_last_refresh_needs_no_second_one() -> None:
    refreshed = NOW - timedelta(minutes=1)
    annotations = ok(timedelta(minutes=5), **{"refreshed-at": clock.format_precise_time(refreshed)})
    status = CredentialStatus.from_annotations(annotations)
    account = Account("1")

    def decision(requested_at: datetime) -> Decision:
        decided: Decision = judge(
            PlanSettings(),
            account,
            status,
            annotations,
            None,
            RunRequest(force=True),
            requested_at,
            Versions(),
        )
        return decided

    assert decision(refreshed - timedelta(seconds=1)) == Decision(
        False, "already refreshed since the request"
    )
    # Published after that refresh: a new request, served (here: forced).
    assert decision(refreshed + timedelta(milliseconds=1)).refresh is True


def test_new_client_credential_versions_lift_a_terminal_refusal() -> None:
    annotations = {"state": "needs-reauth", hubspot_plan.CLIENT_VERSIONS_ANNOTATION: "3/4"}
    status = CredentialStatus.from_annotations(annotations)
    # The account names another app's pair: those are the versions compared.
    account = Account("1", client_id_secret="app2-id", client_secret_secret="app2-secret")
    same = Versions({"app2-id": 3, "app2-secret": 4})
    changed = Versions({"app2-id": 3, "app2-secret": 5})

    def decision(versions: Versions) -> Decision:
        decided: Decision = judge(
            PlanSettings(), account, status, annotations, None, RunRequest(), None, versions
        )
        return decided

    assert decision(same) == Decision(False, "needs-reauth")
    assert same.asked == ["app2-id", "app2-secret"]
    assert decision(changed) == Decision(True, "client credentials changed")
    # Without recorded versions (refused before they were recorded) the rule does not apply.
    plain = {"state": "needs-reauth"}
    assert not judge(
        PlanSettings(),
        account,
        CredentialStatus.from_annotations(plain),
        plain,
        None,
        RunRequest(),
        None,
        changed,
    ).refresh


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("backoff", "in_backoff"),
        ("needs-reauth", "needs_reauth"),
        ("fresh", "skipped_fresh"),
        ("already refreshed since the request", "skipped_fresh"),
    ],
)
def test_skipped_accounts_count_as_their_reason(reason: str, outcome: str) -> None:
    assert hubspot_plan.skip_result(Decision(False, reason)) == outcome


# --- the whole list ---------------------------------------------------------------------------


def test_plan_keeps_the_due_accounts_and_counts_the_rest() -> None:
    class Store(Versions):
        def latest_version(self, secret_id: str) -> int | None:
            if secret_id == "hubspot-5-refresh-token":
                raise RuntimeError("Secret Manager unavailable")
            return super().latest_version(secret_id)

    backoff = {
        "state": "backoff",
        "next-attempt-at": clock.format_time(NOW + timedelta(minutes=3)),
        "expires-at": clock.format_time(NOW - timedelta(hours=1)),
    }
    accounts = [
        Account("1", status_annotations=ok(timedelta(minutes=50))),  # fresh
        Account("2", status_annotations=ok(timedelta(minutes=10))),  # within the margin
        Account("3"),  # never refreshed: expiry unknown
        Account("4", enabled=False),
        # Its version lookup fails: the locked re-read decides.
        Account("5", status_annotations={**backoff, "refresh-token-version": "1"}),
        Account("6", status_annotations={**backoff, "refresh-token-version": "1"}),
        Account("7", status_annotations=backoff),  # no version recorded: none to compare
    ]
    store = Store()
    summary = RunSummary("scheduled")

    due = plan(PlanSettings(), store, accounts, RunRequest(), None, Versions(), summary)

    assert [a.account_id for a in due] == ["2", "3", "5"]
    assert summary.counts == {"skipped_fresh": 1, "disabled": 1, "in_backoff": 2}
    # A healthy account's version is taken from its status, not looked up; nor is that of an
    # account whose status records none (a new version could not change its decision).
    assert store.asked == ["hubspot-6-refresh-token"]  # (5 raised before it was recorded)


def test_select_keeps_the_requested_order_and_counts_unknown_accounts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accounts = [Account("1"), Account("2"), Account("3")]
    summary = RunSummary("forced")
    assert select(accounts, RunRequest(force=True), summary) == accounts

    chosen = select(accounts, RunRequest(force=True, accounts=("3", "9", "1")), summary)

    assert [a.account_id for a in chosen] == ["3", "1"]
    assert summary.counts == {"unknown": 1}
    assert "account 9 was requested" in caplog.text and "add-account" in caplog.text


# --- the promise ------------------------------------------------------------------------------


def test_imports_without_environment_framework_or_service_clients() -> None:
    """Nothing that talks to Secret Manager or over HTTP is loaded either."""
    problem = bare_import("hubspot_plan", absent=("google.cloud.secretmanager", "requests"))
    assert problem == ""


@pytest.mark.parametrize(
    ("mode", "counts", "error", "result"),
    [
        ("scheduled", {"refreshed": 1, "needs_reauth": 3}, None, "completed"),
        ("scheduled", {"skipped_fresh": 2, "failed": 1}, None, "completed"),
        ("scheduled", {"needs_reauth": 2}, None, "unhealthy"),
        ("scheduled", {"in_backoff": 1}, None, "unhealthy"),
        ("shard", {"failed": 1, "busy": 1}, None, "unhealthy"),
        ("shard", {"busy": 1}, None, "completed"),
        ("scheduled", {"deferred": 4}, None, "completed"),
        ("scheduled", {}, None, "no_accounts"),
        ("forced", {"unknown_requested": 1}, None, "no_accounts"),
        ("scheduled", {"refreshed": 5}, "discovery_failed", "failed"),
        ("fan_out", {"dispatched": 3, "skipped_fresh": 1}, None, "dispatched"),
        ("fan_out", {"skipped_fresh": 1}, None, "completed"),
        ("fan_out", {"needs_reauth": 1}, None, "unhealthy"),
    ],
)
def test_run_result_is_a_success_only_with_a_healthy_account(
    mode: str, counts: dict[str, int], error: str | None, result: str
) -> None:
    """Monitoring counts "completed" as a success: a run where every account waits for a
    person or fails must not say it."""
    summary = RunSummary(mode)
    summary.counts.update(counts)
    assert run_result(summary, error=error) == result
