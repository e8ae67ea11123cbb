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
from shared.errors import TerminalError, TransientError
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


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


TOKENS = Tokens("new-access", "new-refresh", NOW + timedelta(hours=1))


def _store(clients: Clients, status: CredentialStatus | None = None) -> Outcome:
    return store_tokens(
        Settings(),
        clients,
        status or CredentialStatus(),
        5,
        TOKENS,
        "expiry unknown",
        time.monotonic() + 30,
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
        outcome = record_failure(Settings(), clients, CredentialStatus(), 5, error)
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
        record_failure(Settings(), clients, CredentialStatus(), 5, error)
    assert raised.value is error  # the status could not be written: the run still goes on
    clients = Clients()
    with pytest.raises(TransientError):
        record_failure(Settings(), clients, CredentialStatus(), 5, error)
    status = CredentialStatus.from_annotations(clients.store.annotations[AT])  # type: ignore[arg-type]
    assert status.failure_count == 1 and status.last_error == str(error)


def test_best_effort_writes_never_raise() -> None:
    clients = Clients()
    clients.store.fail[f"update_annotations {AT}"] = [RuntimeError("x")]
    clients.store.fail[f"prune {RT}"] = [RuntimeError("x")]
    annotate_best_effort(Settings(), clients, CredentialStatus())
    prune(Settings(), clients)
    assert clients.store.calls == [f"update_annotations {AT}", f"prune {RT}", f"prune {AT}"]
