"""hubspot_refresh_account: one account under its lock: re-read, decide again, call HubSpot,
store a rotated refresh token first, prune old versions; a failure is recorded, not raised."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import hubspot_refresh_account
import pytest
from hubspot_accounts import Account
from hubspot_plan import RunRequest
from hubspot_refresh_account import ClientCredentials, refresh_account

from shared import clock
from shared.lock import LeaseLock, LeaseLost
from shared.secrets import SecretValue
from tests.hubspot_refresh.hubspot_testkit import (
    Clock,
    HubSpotSetup,
    load_main,
    log_events,
    run_once,
    summaries,
)


def test_rotated_refresh_token_is_stored_and_used_next(
    hs: HubSpotSetup, monkeypatch, fixed_clock: Clock
) -> None:
    first = hs.add_account("901")
    hs.fake.rotation = "always"
    hs.fake.old_token_survives_rotation = False
    main = load_main(hs, monkeypatch)

    run_once(main)
    stored = hs.refresh_token("901")
    assert stored != first and stored in hs.fake.grants
    status = hs.status("901")
    assert status.refresh_token_version == 2

    fixed_clock.advance(minutes=1)
    run_once(main, force=True)
    assert hs.fake.refreshes[901] == 2  # the old token is dead: only the new one works
    assert hs.status("901").state == "ok"

    # Unchanged refresh token: no new version.
    hs.fake.rotation = "never"
    before = hs.store.latest_version("hubspot-901-refresh-token")
    fixed_clock.advance(minutes=1)
    run_once(main, force=True)
    assert hs.store.latest_version("hubspot-901-refresh-token") == before
    # Old versions are destroyed as new ones arrive: two of each stay live.
    assert hs.live_versions("hubspot-901-access-token") == [2, 3]
    assert hs.live_versions("hubspot-901-refresh-token") == [2, 3]


def refresh_one(main, account: str) -> str:
    clients = main.clients()
    outcome: str = refresh_account(
        main.SETTINGS,
        clients,
        Account(account),
        RunRequest(force=True),
        clock.now(),
        ClientCredentials(clients.store),
        time.monotonic() + 60,
    )
    return outcome


def test_an_account_another_run_holds_is_left_to_it(
    hs: HubSpotSetup, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    hs.add_account("921")
    main = load_main(hs, monkeypatch, LOCK_WAIT_SECONDS="0")
    other_run = LeaseLock(main.clients().bucket(), "hubspot-921", lease=main.SETTINGS.lock_lease)

    with other_run.held(0):
        assert refresh_one(main, "921") == "busy"

    assert hs.token_calls() == 0
    assert "account 921: another run holds its refresh lock" in caplog.text
    assert refresh_one(main, "921") == "refreshed"  # once released


def test_a_refresh_token_secret_without_a_version_fails_with_what_to_do(
    hs: HubSpotSetup, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    hs.store.create(
        "hubspot-931-refresh-token", labels={"integration": "hubspot", "hubspot-account": "931"}
    )
    main = load_main(hs, monkeypatch)

    assert refresh_one(main, "931") == "failed"

    assert hs.token_calls() == 0
    assert "secret hubspot-931-refresh-token has no enabled version" in caplog.text
    assert "add-account 931" in caplog.text


def test_client_credentials_are_read_once_per_run() -> None:
    class Store:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def read(self, secret_id: str) -> SecretValue:
            self.calls.append(("read", secret_id))
            return SecretValue(f"value-of-{secret_id}", 7)

        def latest_version(self, secret_id: str) -> int | None:
            self.calls.append(("latest_version", secret_id))
            return 7

    store = Store()
    creds = ClientCredentials(store)
    for _ in range(3):
        assert creds.value("hubspot-client-id") == ("value-of-hubspot-client-id", 7)
        assert creds.version("hubspot-client-id") == 7
    assert store.calls == [("read", "hubspot-client-id"), ("latest_version", "hubspot-client-id")]


# --- a run that stalls past an account's lease (shared.lock fencing) -------------------------


class Stalls:
    """Each lock's monotonic clock, which a test moves a whole lease ahead at some step: the
    run stalled there, holding that account's lock."""

    def __init__(self) -> None:
        self.offsets: dict[str, float] = {}
        self.fenced: list[str] = []  # the steps fenced, in order

    def lock(self, bucket: Any, name: str, **kwargs: Any) -> LeaseLock:
        def monotonic() -> float:
            return time.monotonic() + self.offsets.get(name, 0.0)

        stalls = self

        class Recorded(LeaseLock):
            def fence(self, step: str) -> None:
                stalls.fenced.append(step)
                super().fence(step)

        return Recorded(bucket, name, monotonic=monotonic, **kwargs)

    def past_the_lease(self, account: str, lease: timedelta) -> None:
        name = f"hubspot-{account}"
        self.offsets[name] = self.offsets.get(name, 0.0) + lease.total_seconds()


@pytest.fixture
def stalls(monkeypatch: pytest.MonkeyPatch) -> Stalls:
    found = Stalls()
    monkeypatch.setattr(hubspot_refresh_account, "LeaseLock", found.lock)
    return found


def written(hs: HubSpotSetup, account: str) -> tuple[list[int], list[int], dict[str, str]]:
    """What a refresh can write for an account: both secrets' live versions, its status."""
    access = f"hubspot-{account}-access-token"
    versions = hs.live_versions(access) if hs.store.info_optional(access) else []
    refresh = hs.live_versions(f"hubspot-{account}-refresh-token")
    return refresh, versions, hs.annotations(account)


def test_the_call_and_every_write_are_fenced(hs: HubSpotSetup, monkeypatch, stalls: Stalls) -> None:
    hs.add_account("971")
    hs.fake.rotation = "always"
    main = load_main(hs, monkeypatch)
    assert run_once(main).counts["refreshed"] == 1
    assert stalls.fenced == [
        "calling HubSpot",
        "storing hubspot-971-refresh-token",
        "storing hubspot-971-access-token",
        "annotating hubspot-971-access-token",
        "destroying old versions",
    ]


def test_an_account_stalled_before_the_call_is_left_alone_and_fails_the_run(
    hs: HubSpotSetup, monkeypatch, stalls: Stalls, capsys
) -> None:
    """One account's run stalled past its lease after reading the refresh token: no HubSpot
    call, nothing written for it; the other account is refreshed; the run ends failed with
    lease_lost (raised, so Pub/Sub delivers it again)."""
    hs.add_account("941")
    hs.add_account("942")
    main = load_main(hs, monkeypatch)
    store = main.clients().store
    read = store.read

    def read_then_stall(secret_id: str, *args: Any) -> Any:
        value = read(secret_id, *args)
        if secret_id == "hubspot-941-refresh-token":
            stalls.past_the_lease("941", main.SETTINGS.lock_lease)
        return value

    monkeypatch.setattr(store, "read", read_then_stall)
    before = written(hs, "941")
    with pytest.raises(LeaseLost):
        run_once(main)
    assert dict(hs.fake.refreshes) == {942: 1}
    assert written(hs, "941") == before
    out = capsys.readouterr().out
    (summary,) = summaries(out)
    assert (summary["result"], summary["error"]) == ("failed", "lease_lost")
    assert (summary["refreshed"], summary["failed"]) == (1, 1)
    assert "account 941: its lock lease ran short" in out


def test_a_token_rotated_before_the_stall_is_stored_and_nothing_after_it(
    hs: HubSpotSetup, monkeypatch, stalls: Stalls, capsys
) -> None:
    """HubSpot rotated the refresh token (the old one dies) and the run stalled during the
    call: the new token is stored although the lease ran short, nothing after it, and the
    next run refreshes with it."""
    first = hs.add_account("951")
    hs.fake.rotation, hs.fake.old_token_survives_rotation = "always", False
    main = load_main(hs, monkeypatch)
    call = hubspot_refresh_account.call_hubspot

    def call_then_stall(*args: Any, **kwargs: Any) -> Any:
        tokens = call(*args, **kwargs)
        stalls.past_the_lease("951", main.SETTINGS.lock_lease)
        return tokens

    monkeypatch.setattr(hubspot_refresh_account, "call_hubspot", call_then_stall)
    before_refresh, before_access, before_status = written(hs, "951")
    with pytest.raises(LeaseLost):
        run_once(main)
    assert written(hs, "951") == ([*before_refresh, 2], before_access, before_status)
    stored = hs.refresh_token("951")
    usable = stored != first and not hs.fake.grants[stored].revoked
    assert usable
    out = capsys.readouterr().out
    (warning,) = [
        line for line in log_events(out, "lease_lost") if "refresh token anyway" in line["message"]
    ]
    assert warning["severity"] == "WARNING"

    monkeypatch.setattr(hubspot_refresh_account, "call_hubspot", call)
    assert run_once(main).counts["refreshed"] == 1
    assert hs.fake.refreshes[951] == 2 and hs.status("951").state == "ok"
    assert hs.status("951").refresh_token_version == 3


def test_a_refusal_after_a_stall_is_not_recorded(
    hs: HubSpotSetup, monkeypatch, stalls: Stalls, capsys
) -> None:
    """The refusal may be another run's doing (it spent the token): no needs-reauth, no
    ERROR telling a person to act."""
    hs.add_account("961")
    hs.fake.deleted_hubs.add(961)
    main = load_main(hs, monkeypatch)
    call = hubspot_refresh_account.call_hubspot

    def stall_then_call(*args: Any, **kwargs: Any) -> Any:
        stalls.past_the_lease("961", main.SETTINGS.lock_lease)
        return call(*args, **kwargs)

    monkeypatch.setattr(hubspot_refresh_account, "call_hubspot", stall_then_call)
    before = written(hs, "961")
    with pytest.raises(LeaseLost):
        run_once(main)
    assert hs.token_calls() == 1
    assert written(hs, "961") == before
    out = capsys.readouterr().out
    assert not [
        line for line in log_events(out, "needs_reauth") if line.get("event") == "needs_reauth"
    ]
    assert hs.status("961").state != "needs-reauth"
