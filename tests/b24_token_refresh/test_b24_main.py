"""main.py: b24_token_refresh served in-process by functions-framework (loaded by
b24_support.boot), against the Secret Manager stand-in, fake-gcs-server (lock) and the Bitrix24
fake."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.fakes.bitrix24 import TOKEN_ROUTE
from shared import clock
from tests.b24_token_refresh.b24_support import B24, boot, post_event, pubsub_cloud_event


@pytest.fixture
def client(b24: B24, monkeypatch: pytest.MonkeyPatch) -> Any:
    b24.apply_env(monkeypatch)
    return boot().app.test_client()


def deliver(client: Any, data: Any = None, **kwargs: Any) -> int:
    return int(
        post_event(client, pubsub_cloud_event({} if data is None else data, **kwargs)).status_code
    )


def summaries(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "run_summary"]


def test_first_run_refreshes_and_stores_both_tokens(b24: B24, client, capsys) -> None:
    assert deliver(client) == 200
    assert b24.fake.refreshes == 1
    access = b24.store.read(b24.access_secret).value
    assert access in b24.fake.live_access_tokens
    refresh = b24.store.read(b24.refresh_secret)
    assert refresh.value != b24.initial_refresh_token
    assert refresh.value in b24.fake.grants and not b24.fake.grants[refresh.value].used
    status = b24.status()
    assert status.state == "ok"
    assert status.refresh_token_version == refresh.version
    assert status.expires_at is not None
    assert timedelta(minutes=59) < status.expires_at - clock.now() <= timedelta(minutes=60)
    assert status.refreshed_at is not None and clock.now() - status.refreshed_at < timedelta(
        minutes=1
    )
    (summary,) = summaries(capsys.readouterr().out)
    assert summary["result"] == "refreshed" and summary["reason"] == "expiry unknown"
    assert summary["logging.googleapis.com/labels"]["function"] == "b24_token_refresh"


def test_second_run_inside_the_margin_does_not_call_bitrix24(b24: B24, client) -> None:
    assert deliver(client) == 200
    assert deliver(client) == 200
    assert b24.fake.refreshes == 1


def test_run_refreshes_when_expiry_enters_the_margin(b24: B24, client, monkeypatch) -> None:
    assert deliver(client) == 200
    expires_at = b24.status().expires_at
    assert expires_at is not None
    monkeypatch.setattr(clock, "now", lambda: expires_at - timedelta(minutes=34))
    assert deliver(client, time=expires_at - timedelta(minutes=34)) == 200
    assert b24.fake.refreshes == 2


def test_force_refreshes_now_and_old_versions_are_destroyed(b24: B24, client) -> None:
    for n in range(4):
        # Each request published after the previous refresh: each one is a new request.
        asked = datetime.now(UTC) + timedelta(seconds=2 * (n + 1))
        assert deliver(client, {"force": True}, time=asked) == 200
    assert b24.fake.refreshes == 4
    assert b24.fake.reused == 0
    # The seed version plus four refreshes exist; only the two newest are still alive.
    assert b24.live_versions(b24.refresh_secret) == [4, 5]
    assert b24.live_versions(b24.access_secret) == [3, 4]


@pytest.mark.parametrize("mode", ["invalid_client", "PAYMENT_REQUIRED"])
def test_terminal_error_marks_needs_reauth_and_stops_calling(
    b24: B24, client, capsys, mode
) -> None:
    b24.fake.mode = mode
    assert deliver(client) == 200  # acknowledged: retrying cannot help
    status = b24.status()
    assert status.state == "needs-reauth"
    assert status.last_error is not None and mode in status.last_error
    assert status.last_error_at is not None
    out = capsys.readouterr().out
    errors = [json.loads(line) for line in out.splitlines() if '"severity": "ERROR"' in line]
    assert errors and mode in errors[0]["message"]
    assert "Re-authorise" in errors[0]["message"] and b24.refresh_secret in errors[0]["message"]
    calls = b24.fake.count(TOKEN_ROUTE)
    assert deliver(client, {"force": True}) == 200
    assert b24.fake.count(TOKEN_ROUTE) == calls  # no provider call until someone re-authorises


def test_reauthorisation_brings_the_credential_back(b24: B24, client) -> None:
    b24.fake.mode = "invalid_client"
    assert deliver(client) == 200
    assert b24.status().state == "needs-reauth"
    b24.fake.mode = None
    b24.store.add_version(b24.refresh_secret, b24.fake.new_refresh_token())  # the operator's fix
    assert deliver(client) == 200
    assert b24.status().state == "ok"
    assert b24.store.read(b24.access_secret).value in b24.fake.live_access_tokens


def test_spent_refresh_token_is_invalid_grant(b24: B24, client) -> None:
    b24.fake.grants[b24.initial_refresh_token].used = True  # someone else spent it
    assert deliver(client) == 200
    status = b24.status()
    assert status.state == "needs-reauth" and "invalid_grant" in (status.last_error or "")


def test_transient_error_is_raised_for_pubsub_retry(b24: B24, client, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "2")
    b24.fake.inject(TOKEN_ROUTE, 503, count=4)
    assert deliver(client) == 500  # Pub/Sub redelivers
    assert b24.store.read(b24.refresh_secret).value == b24.initial_refresh_token
    status = b24.status()
    assert status.failure_count == 1 and "503" in (status.last_error or "")
    assert deliver(client) == 200  # the outage is over
    assert b24.status().state == "ok" and b24.status().failure_count == 0


@pytest.mark.parametrize(
    "data", ["not json", '"text"', '{"force": "yes"}', '{"force": true, "extra": 1}', "[1]"]
)
def test_bad_messages_are_acknowledged_without_calling(b24: B24, client, data: str) -> None:
    assert deliver(client, data) == 200
    assert b24.fake.count(TOKEN_ROUTE) == 0


def test_message_older_than_the_max_age_is_dropped(b24: B24, client) -> None:
    assert deliver(client, {"force": True}, time=datetime.now(UTC) - timedelta(hours=2)) == 200
    assert b24.fake.count(TOKEN_ROUTE) == 0


def _fault(method: str, count: int, secret: str) -> None:
    import os

    body = {"method": method, "code": "UNAVAILABLE", "count": count, "secret": secret}
    request = urllib.request.Request(
        f"{os.environ['SECRET_MANAGER_EMULATOR_ADMIN']}/faults",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()


def test_rotated_token_survives_secret_manager_outage(b24: B24, client) -> None:
    _fault("AddSecretVersion", 3, b24.refresh_secret)
    assert deliver(client) == 200
    stored = b24.store.read(b24.refresh_secret).value
    assert stored != b24.initial_refresh_token
    assert not b24.fake.grants[stored].used  # the rotated token was kept, usable next time
    assert b24.status().state == "ok"


def test_unstorable_rotated_token_fails_loudly(b24: B24, monkeypatch, capsys) -> None:
    b24.apply_env(monkeypatch)
    monkeypatch.setenv("RUN_DEADLINE_SECONDS", "10")
    client = boot().app.test_client()
    _fault("AddSecretVersion", 10_000, b24.refresh_secret)
    assert deliver(client) == 200
    status = b24.status()
    assert status.state == "needs-reauth"
    assert "could not be stored" in (status.last_error or "")
    out = capsys.readouterr().out
    assert any(
        '"severity": "ERROR"' in line and "Re-authorise" in line for line in out.splitlines()
    )
