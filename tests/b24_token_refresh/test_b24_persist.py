"""b24_persist: the order of the writes after a refresh and what a refusal leaves behind,
against an in-memory Secret Manager (no emulator: the order is the point here; the emulator
runs are in test_b24_main.py and the fault tests in tests/hardening)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from b24_api import Tokens
from b24_persist import annotate_best_effort, prune, record_failure, store_tokens
from b24_plan import Outcome
from google.api_core import exceptions as gexc

from shared import clock
from shared.errors import ProviderError, TerminalError, TransientError
from shared.lock import LeaseLost
from shared.status import CredentialStatus

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RT, AT = "b24-refresh-token", "b24-access-token"


@dataclass(frozen=True)
class Settings:
    refresh_token_secret: str = RT
    access_token_secret: str = AT
    versions_to_keep: int = 2


@dataclass
class Store:
    """Secret Manager as b24_persist uses it; ``fail`` maps "method secret" to errors to raise,
    one per call, before the call succeeds."""

    calls: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=lambda: {RT: 5, AT: 4})
    annotations: dict[str, dict[str, str | None]] = field(default_factory=dict)
    fail: dict[str, list[Exception]] = field(default_factory=dict)

    def _call(self, what: str) -> None:
        self.calls.append(what)
        errors = self.fail.get(what)
        if errors:
            raise errors.pop(0)

    def add_version(self, secret_id: str, value: str) -> int:
        self._call(f"add_version {secret_id}")
        self.versions[secret_id] += 1
        return self.versions[secret_id]

    def update_annotations(self, secret_id: str, annotations: dict[str, str | None]) -> None:
        self._call(f"update_annotations {secret_id}")
        self.annotations[secret_id] = annotations

    def prune(self, secret_id: str, *, keep: int) -> None:
        self._call(f"prune {secret_id}")


@dataclass
class Clients:
    store: Store = field(default_factory=Store)


@dataclass
class Lease:
    """The lock as b24_persist uses it: ``short`` once the lease has run short (the run
    stalled), from then on every fence raises as shared.lock.LeaseLock's does."""

    short: bool = False
    fenced: list[str] = field(default_factory=list)

    def fence(self, step: str) -> None:
        self.fenced.append(step)
        if self.short:
            raise LeaseLost(f"lease ran short before {step}", code="lease_lost")


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


TOKENS = Tokens("new-access", "new-refresh", NOW + timedelta(hours=1))


def _store(
    clients: Clients, status: CredentialStatus | None = None, lease: Lease | None = None
) -> Outcome:
    return store_tokens(
        Settings(),
        clients,
        status or CredentialStatus(),
        5,
        TOKENS,
        "expiry unknown",
        time.monotonic() + 30,
        lock=lease or Lease(),
    )


def test_refresh_token_first_then_access_token_then_status_then_prune() -> None:
    clients = Clients()
    outcome = _store(clients)
    assert clients.store.calls == [
        f"add_version {RT}",
        f"add_version {AT}",
        f"update_annotations {AT}",
        f"prune {RT}",
        f"prune {AT}",
    ]
    assert outcome == Outcome("refreshed", "expiry unknown", TOKENS.expires_at, 6, 5)
    status = CredentialStatus.from_annotations(clients.store.annotations[AT])  # type: ignore[arg-type]
    assert status.state == "ok" and status.refresh_token_version == 6
    assert status.expires_at == TOKENS.expires_at


def test_a_transient_outage_storing_the_refresh_token_is_ridden_out() -> None:
    clients = Clients()
    clients.store.fail[f"add_version {RT}"] = [gexc.ServiceUnavailable("down")]
    assert _store(clients).result == "refreshed"
    assert clients.store.calls[:2] == [f"add_version {RT}", f"add_version {RT}"]


def test_a_refresh_token_that_cannot_be_stored_is_needs_reauth_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clients = Clients()
    clients.store.fail[f"add_version {RT}"] = [gexc.PermissionDenied("no")]
    with caplog.at_level(logging.ERROR):
        outcome = _store(clients)
    assert outcome == Outcome("needs-reauth", "rotated refresh token could not be stored")
    assert clients.store.calls == [f"add_version {RT}", f"update_annotations {AT}"]
    status = CredentialStatus.from_annotations(clients.store.annotations[AT])  # type: ignore[arg-type]
    assert status.state == "needs-reauth" and status.refresh_token_version == 5
    assert "PermissionDenied" in (status.last_error or "")
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "Re-authorise" in record.getMessage() and RT in record.getMessage()
    assert record.json_fields["event"] == "needs_reauth"  # type: ignore[attr-defined]
    assert record.json_fields["error_code"] == "lost"  # type: ignore[attr-defined]


def test_a_refusal_is_recorded_as_needs_reauth(caplog: pytest.LogCaptureFixture) -> None:
    clients = Clients()
    error = TerminalError("Bitrix24 token endpoint: HTTP 400 invalid_grant", code="invalid_grant")
    with caplog.at_level(logging.ERROR):
        outcome = record_failure(Settings(), clients, CredentialStatus(), 5, error, lock=Lease())
    assert outcome == Outcome("needs-reauth", "invalid_grant")
    status = CredentialStatus.from_annotations(clients.store.annotations[AT])  # type: ignore[arg-type]
    assert status.state == "needs-reauth" and status.refresh_token_version == 5
    assert status.last_error == str(error)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.json_fields == {  # type: ignore[attr-defined]
        "event": "needs_reauth",
        "provider": "bitrix24",
        "error_code": "invalid_grant",
    }


def test_a_transient_failure_is_recorded_and_raised_again() -> None:
    clients = Clients()
    clients.store.fail[f"update_annotations {AT}"] = [gexc.ServiceUnavailable("down")]
    error = TransientError("Bitrix24 token endpoint: HTTP 503", code="http_503")
    with pytest.raises(TransientError) as raised:
        record_failure(Settings(), clients, CredentialStatus(), 5, error, lock=Lease())
    assert raised.value is error  # the status could not be written: the run still goes on
    clients = Clients()
    with pytest.raises(TransientError):
        record_failure(Settings(), clients, CredentialStatus(), 5, error, lock=Lease())
    status = CredentialStatus.from_annotations(clients.store.annotations[AT])  # type: ignore[arg-type]
    assert status.failure_count == 1 and status.last_error == str(error)


def test_best_effort_writes_never_raise() -> None:
    clients = Clients()
    clients.store.fail[f"update_annotations {AT}"] = [RuntimeError("x")]
    clients.store.fail[f"prune {RT}"] = [RuntimeError("x")]
    annotate_best_effort(Settings(), clients, CredentialStatus())
    prune(Settings(), clients)
    assert clients.store.calls == [f"update_annotations {AT}", f"prune {RT}", f"prune {AT}"]


# --- a lease that ran short (shared.lock fencing) -------------------------------------------


def test_every_write_is_fenced_first() -> None:
    lease = Lease()
    _store(Clients(), lease=lease)
    assert lease.fenced == [
        f"storing {RT}",
        f"storing {AT}",
        f"annotating {AT}",
        "destroying old versions",
    ]


def test_a_rotated_refresh_token_is_stored_even_when_the_lease_ran_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bitrix24 spent the old token: the new one is the only valid one and must be kept. Then
    the run stops: nothing more is written, and the status still names version 5, so the
    next run refreshes with the token stored here."""
    clients = Clients()
    with caplog.at_level(logging.WARNING), pytest.raises(LeaseLost):
        _store(clients, lease=Lease(short=True))
    assert clients.store.calls == [f"add_version {RT}"]
    assert clients.store.versions[RT] == 6 and clients.store.annotations == {}
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "storing the new refresh token anyway" in warning.getMessage()


def test_a_lease_that_runs_short_after_the_refresh_token_stops_the_writes() -> None:
    clients = Clients()
    lease = Lease()

    def store_then_stall(secret_id: str, value: str) -> int:
        version = Store.add_version(clients.store, secret_id, value)
        lease.short = True  # stalled right after the refresh token was stored
        return version

    clients.store.add_version = store_then_stall  # type: ignore[method-assign]
    with pytest.raises(LeaseLost):
        _store(clients, lease=lease)
    assert clients.store.calls == [f"add_version {RT}"]


def test_a_lost_refresh_token_under_a_short_lease_says_so_and_writes_nothing_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clients = Clients()
    clients.store.fail[f"add_version {RT}"] = [gexc.PermissionDenied("no")]
    with caplog.at_level(logging.ERROR), pytest.raises(LeaseLost):
        _store(clients, lease=Lease(short=True))
    assert clients.store.calls == [f"add_version {RT}"]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.json_fields["event"] == "needs_reauth"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error",
    [
        TerminalError("Bitrix24 token endpoint: HTTP 400 invalid_grant", code="invalid_grant"),
        TransientError("Bitrix24 token endpoint: HTTP 503", code="http_503"),
    ],
)
def test_a_failure_under_a_short_lease_is_not_recorded(
    error: ProviderError, caplog: pytest.LogCaptureFixture
) -> None:
    """Another run may have spent the token this one was refused with: no needs-reauth, no
    failure count, no ERROR telling a person to act."""
    clients = Clients()
    with caplog.at_level(logging.ERROR), pytest.raises(LeaseLost):
        record_failure(Settings(), clients, CredentialStatus(), 5, error, lock=Lease(short=True))
    assert clients.store.calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
