"""b24_run: one run's sequence (decide, lock and re-read, call, persist, report) on the main.py
Settings and clients, against the Secret Manager stand-in, fake-gcs-server and the Bitrix24
fake. Driven through ``run`` directly, so its Outcome and what it raises are seen as is."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from functools import partial
from types import ModuleType
from typing import Any

import b24_run
import pytest
from alerting import ONE_RUN, ONE_RUN_FAILED, alerts, feeds
from b24_plan import Outcome

from devtools.fakes.bitrix24 import TOKEN_ROUTE
from shared.errors import TransientError
from shared.lock import LeaseLock, LeaseLost, LockBusy
from tests.b24_token_refresh.b24_support import B24, boot


@pytest.fixture
def main(b24: B24, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    b24.apply_env(monkeypatch)
    monkeypatch.setenv("LOCK_WAIT_SECONDS", "0")
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "2")
    return boot()


ENTRY = "b24_token_refresh"


def run(main: ModuleType, *, force: bool = False) -> Outcome:
    outcome: Outcome = b24_run.run(
        main.SETTINGS,
        main.clients(),
        force=force,
        requested_at=None,
        deadline=time.monotonic() + 120,
    )
    return outcome


def summaries(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "run_summary"]


def test_refresh_then_skip_while_fresh(b24: B24, main: ModuleType, capsys) -> None:
    first = run(main)
    assert first.result == "refreshed" and first.reason == "expiry unknown"
    assert first.refresh_token_version == b24.store.read(b24.refresh_secret).version
    assert first.access_token_version == b24.store.read(b24.access_secret).version
    second = run(main)
    # The status keeps the expiry to the second.
    assert second == Outcome("skipped", "fresh", b24.status().expires_at)
    assert first.expires_at is not None and second.expires_at is not None
    assert abs(first.expires_at - second.expires_at) < timedelta(seconds=1)
    assert b24.fake.refreshes == 1
    out = capsys.readouterr().out
    reported = summaries(out)
    assert [(s["result"], s["reason"]) for s in reported] == [
        ("refreshed", "expiry unknown"),
        ("skipped", "fresh"),
    ]
    # Client id, client secret and refresh token when it refreshes; no value when it skips.
    assert [s["secret_reads"] for s in reported] == [3, 0]
    # Both are successful runs in monitoring, and feed no alert but the absence one.
    assert feeds(out, entry_point=ENTRY) == {
        "keepalive_run_duration_seconds": 2,
        "keepalive_run_ok": 2,
        "keepalive_runs": 2,
        "keepalive_secret_reads": 2,
    }
    assert alerts(out, entry_point=ENTRY) == {'no_success["60"]'}
    assert reported[0]["refresh_token_version"] == first.refresh_token_version
    assert 59 <= reported[0]["expires_in_minutes"] <= 60


def test_a_held_lock_is_raised_and_reported(b24: B24, main: ModuleType, capsys) -> None:
    settings = main.SETTINGS
    lock = LeaseLock(
        main.clients().bucket, f"b24-{settings.refresh_token_secret}", lease=settings.lock_lease
    )
    with lock.held(0), pytest.raises(LockBusy):
        run(main)
    assert b24.fake.count(TOKEN_ROUTE) == 0
    out = capsys.readouterr().out
    (summary,) = summaries(out)
    assert (summary["result"], summary["reason"]) == ("busy", "lock_busy")
    # Another run does the work: neither a success nor a failure.
    assert feeds(out, entry_point=ENTRY) == ONE_RUN
    assert alerts(out, entry_point=ENTRY) == set()


def test_a_transient_provider_failure_is_raised_and_reported(
    b24: B24, main: ModuleType, capsys
) -> None:
    b24.fake.inject(TOKEN_ROUTE, 503, count=4)
    with pytest.raises(TransientError):
        run(main)
    assert b24.store.read(b24.refresh_secret).value == b24.initial_refresh_token
    out = capsys.readouterr().out
    (summary,) = summaries(out)
    assert (summary["result"], summary["reason"]) == ("failed", "http_503")
    assert b24.status().failure_count == 1
    assert feeds(out, entry_point=ENTRY) == ONE_RUN_FAILED
    assert alerts(out, entry_point=ENTRY) == {"failing[0]"}


def test_a_refusal_is_an_outcome_not_an_exception(b24: B24, main: ModuleType, capsys) -> None:
    b24.fake.mode = "invalid_client"
    assert run(main) == Outcome("needs-reauth", "invalid_client")
    refused = capsys.readouterr().out
    assert run(main, force=True) == Outcome("needs-reauth", "needs-reauth")
    waiting = capsys.readouterr().out
    assert b24.fake.count(TOKEN_ROUTE) == 1
    # The refusal is a failed run and a person-must-act line.
    assert feeds(refused, entry_point=ENTRY) == {**ONE_RUN_FAILED, "keepalive_needs_reauth": 1}
    assert alerts(refused, entry_point=ENTRY) == {"needs_reauth[0]", "failing[0]"}
    # Every run after it, until someone re-authorises, is a failed run too (no Bitrix24 call,
    # no secret value read): the integration never looks healthy while it waits for a person.
    assert feeds(waiting, entry_point=ENTRY) == ONE_RUN_FAILED
    assert [s["secret_reads"] for s in summaries(waiting)] == [0]


# --- a run that stalls past its lease (shared.lock fencing) ----------------------------------


class Stall:
    """The lock's monotonic clock, which a test moves a whole lease ahead at some step: the
    run stalled there (a paused process, code Cloud Run kept running after a timeout)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def past_the_lease(self, lease: timedelta) -> None:
        self.offset += lease.total_seconds()


@pytest.fixture
def stall(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Stall:
    clock = Stall()
    monkeypatch.setattr(b24_run, "LeaseLock", partial(LeaseLock, monotonic=clock))
    return clock


def written(b24: B24) -> tuple[list[int], list[int], dict[str, str]]:
    """Everything a run can write: both secrets' live versions and the status annotations."""
    annotations = dict(b24.store.info(b24.access_secret).annotations)
    return b24.live_versions(b24.refresh_secret), b24.live_versions(b24.access_secret), annotations


def test_a_run_stalled_before_the_call_spends_nothing_and_writes_nothing(
    b24: B24, main: ModuleType, stall: Stall, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    store = main.clients().store
    read = store.read

    def read_then_stall(secret_id: str, *args: Any) -> Any:
        value = read(secret_id, *args)
        if secret_id == b24.refresh_secret:
            stall.past_the_lease(main.SETTINGS.lock_lease)
        return value

    monkeypatch.setattr(store, "read", read_then_stall)
    before = written(b24)
    with pytest.raises(LeaseLost):
        run(main)
    assert b24.fake.count(TOKEN_ROUTE) == 0
    assert written(b24) == before
    out = capsys.readouterr().out
    (summary,) = summaries(out)
    assert (summary["result"], summary["reason"]) == ("failed", "lease_lost")
    assert "before calling Bitrix24" in out
    assert feeds(out, entry_point=ENTRY) == ONE_RUN_FAILED
    assert alerts(out, entry_point=ENTRY) == {"failing[0]"}


def test_a_run_stalled_during_the_call_keeps_the_rotated_refresh_token_only(
    b24: B24, main: ModuleType, stall: Stall, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Bitrix24 spent the old token: the new one is stored although the lease ran short, and
    nothing after it; the next run refreshes with it (never the spent one)."""
    call = b24_run.call_bitrix24

    def call_then_stall(*args: Any) -> Any:
        tokens = call(*args)
        stall.past_the_lease(main.SETTINGS.lock_lease)
        return tokens

    monkeypatch.setattr(b24_run, "call_bitrix24", call_then_stall)
    before_refresh, before_access, before_status = written(b24)
    with pytest.raises(LeaseLost):
        run(main)
    assert b24.live_versions(b24.refresh_secret) == [*before_refresh, before_refresh[-1] + 1]
    stored_is_live = b24.store.read(b24.refresh_secret).value in b24.fake.grants
    assert stored_is_live
    assert written(b24)[1:] == (before_access, before_status)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    (warning,) = [line for line in lines if "refresh token anyway" in line["message"]]
    assert warning["severity"] == "WARNING"
    (summary,) = summaries(out)
    assert (summary["result"], summary["reason"]) == ("failed", "lease_lost")

    monkeypatch.setattr(b24_run, "call_bitrix24", call)
    assert run(main).result == "refreshed"
    assert b24.fake.refreshes == 2 and b24.fake.reused == 0
    assert b24.status().refresh_token_version == before_refresh[-1] + 2


def test_a_refusal_after_a_stall_is_not_recorded(
    b24: B24, main: ModuleType, stall: Stall, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A refusal that reaches a run stalled past its lease (an invalid_grant may only mean a
    successor spent the token) is not recorded: no needs-reauth, no ERROR telling a person to
    act; the next run finds out for itself."""
    b24.fake.mode = "invalid_client"
    call = b24_run.call_bitrix24

    def call_then_stall(*args: Any) -> Any:
        stall.past_the_lease(main.SETTINGS.lock_lease)
        return call(*args)

    monkeypatch.setattr(b24_run, "call_bitrix24", call_then_stall)
    before = written(b24)
    with pytest.raises(LeaseLost):
        run(main)
    assert b24.fake.count(TOKEN_ROUTE) == 1
    assert written(b24) == before
    out = capsys.readouterr().out
    assert '"needs_reauth"' not in out
    (summary,) = summaries(out)
    assert (summary["result"], summary["reason"]) == ("failed", "lease_lost")
