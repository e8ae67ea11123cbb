"""hubspot_run: one run over the accounts, a bounded number refreshed at a time until the
deadline, one account's surprise never stopping the others."""

from __future__ import annotations

import time

import hubspot_run
import pytest
from hubspot_plan import RunRequest

from shared import clock
from tests.hubspot_refresh.hubspot_testkit import HubSpotSetup, load_main, run_once


@pytest.mark.parametrize("cap", [1, 4])
def test_concurrency_never_exceeds_the_cap(hs: HubSpotSetup, monkeypatch, cap: int) -> None:
    accounts = [str(1000 + i) for i in range(12)]
    for account in accounts:
        hs.add_account(account)
    hs.fake.latency = 0.15
    main = load_main(hs, monkeypatch, HUBSPOT_CONCURRENCY=str(cap))
    summary = run_once(main)
    assert summary.counts["refreshed"] == 12
    assert hs.fake.max_in_flight <= cap
    if cap > 1:
        assert hs.fake.max_in_flight >= 2  # the pool does run in parallel


def test_accounts_past_the_deadline_are_deferred_to_the_next_run(
    hs: HubSpotSetup, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    hs.add_account("1601")
    hs.add_account("1602")
    main = load_main(hs, monkeypatch)

    summary = hubspot_run.run(
        main.SETTINGS,
        main.clients(),
        RunRequest(),
        requested_at=clock.now(),
        deadline=time.monotonic() - 1,
    )

    assert summary.counts["deferred"] == 2 and summary.counts["refreshed"] == 0
    assert hs.token_calls() == 0
    assert "2 due accounts did not fit" in caplog.text and "HUBSPOT_SHARD_SIZE" in caplog.text


def test_an_unexpected_error_fails_that_account_only(
    hs: HubSpotSetup, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    hs.add_account("1611")
    hs.add_account("1612")
    main = load_main(hs, monkeypatch)
    refresh_account = hubspot_run.refresh_account

    def surprising(settings, clients, account, *args):
        if account.account_id == "1611":
            raise KeyError("a bug")
        return refresh_account(settings, clients, account, *args)

    monkeypatch.setattr(hubspot_run, "refresh_account", surprising)
    summary = run_once(main)

    assert summary.counts["failed"] == 1 and summary.counts["refreshed"] == 1
    assert dict(hs.fake.refreshes) == {1612: 1}
    assert "account 1611: refresh failed unexpectedly (KeyError" in caplog.text
