"""b24_run: one run's sequence (decide, lock and re-read, call, persist, report) on the main.py
Settings and clients, against the Secret Manager stand-in, fake-gcs-server and the Bitrix24
fake. Driven through ``run`` directly, so its Outcome and what it raises are seen as is."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from types import ModuleType
from typing import Any

import b24_run
import pytest
from b24_plan import Outcome

from devtools.fakes.bitrix24 import TOKEN_ROUTE
from shared.errors import TransientError
from shared.lock import LeaseLock, LockBusy
from tests.b24_token_refresh.b24_support import B24, boot


@pytest.fixture
def main(b24: B24, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    b24.apply_env(monkeypatch)
    monkeypatch.setenv("LOCK_WAIT_SECONDS", "0")
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "2")
    return boot()


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
    reported = summaries(capsys.readouterr().out)
    assert [(s["result"], s["reason"]) for s in reported] == [
        ("refreshed", "expiry unknown"),
        ("skipped", "fresh"),
    ]
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
    (summary,) = summaries(capsys.readouterr().out)
    assert (summary["result"], summary["reason"]) == ("failed", "lock_busy")


def test_a_transient_provider_failure_is_raised_and_reported(
    b24: B24, main: ModuleType, capsys
) -> None:
    b24.fake.inject(TOKEN_ROUTE, 503, count=4)
    with pytest.raises(TransientError):
        run(main)
    assert b24.store.read(b24.refresh_secret).value == b24.initial_refresh_token
    (summary,) = summaries(capsys.readouterr().out)
    assert (summary["result"], summary["reason"]) == ("failed", "http_503")
    assert b24.status().failure_count == 1


def test_a_refusal_is_an_outcome_not_an_exception(b24: B24, main: ModuleType) -> None:
    b24.fake.mode = "invalid_client"
    assert run(main) == Outcome("needs-reauth", "invalid_client")
    assert run(main, force=True) == Outcome("skipped", "needs-reauth")
    assert b24.fake.count(TOKEN_ROUTE) == 1
