"""hubspot_refresh_account: one account under its lock: re-read, decide again, call HubSpot,
store a rotated refresh token first, prune old versions; a failure is recorded, not raised."""

from __future__ import annotations

import time

import pytest
from hubspot_accounts import Account
from hubspot_plan import RunRequest
from hubspot_refresh_account import ClientCredentials, refresh_account

from shared import clock
from shared.lock import LeaseLock
from shared.secrets import SecretValue
from tests.hubspot_refresh.hubspot_testkit import Clock, HubSpotSetup, load_main, run_once


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
