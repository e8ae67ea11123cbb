"""Bitrix24 refresh under faults: Secret Manager outages right after a rotation, provider
timeouts, 5xx and 429, duplicate, late and out-of-order Pub/Sub deliveries.

Every test ends by checking the stored state is whole (the refresh token stored is the live,
unused one and the access token is the one issued with it) or says needs-reauth: a fault may
cost a person's attention, never a silent loss. Process kills and concurrency are in
test_faults_b24_process.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import functions_framework
import pytest

from devtools.fakes.bitrix24 import TOKEN_ROUTE
from shared import clock
from tests.b24_token_refresh.b24_support import boot
from tests.hardening.hardening_b24 import (
    SOURCE,
    TARGET,
    B24World,
    check_consistent,
    json_lines,
    post_event,
    pubsub_event,
    sm_drain_add_faults,
    sm_drain_update_faults,
    sm_fault,
    summaries,
)


def make_client(world: B24World, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for key, value in {**world.env, **env}.items():
        monkeypatch.setenv(key, value)
    return functions_framework.create_app(TARGET, SOURCE).test_client()


@pytest.fixture
def client(b24_world: B24World, monkeypatch: pytest.MonkeyPatch) -> Any:
    return make_client(b24_world, monkeypatch)


def deliver(client: Any, data: Any = None, **kwargs: Any) -> int:
    return post_event(client, pubsub_event(data, **kwargs))


def stored(value: str | None) -> bool:
    """Whether a value exists, without letting a failing assert print it."""
    return value is not None


def errors_with_event(out: str, event: str) -> list[dict[str, Any]]:
    return [
        line
        for line in json_lines(out)
        if line.get("severity") == "ERROR" and line.get("event") == event
    ]


# --- Secret Manager unavailable right after the provider rotated the token -----------------


@pytest.mark.parametrize(
    "code", ["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "RESOURCE_EXHAUSTED", "ABORTED"]
)
def test_write_outage_after_rotation_is_ridden_out(b24_world: B24World, client, code) -> None:
    w = b24_world
    sm_fault("AddSecretVersion", 3, w.refresh_secret, code)
    sm_fault("AddSecretVersion", 3, w.access_secret, code)
    sm_fault("UpdateSecret", 2, w.access_secret, code)
    assert deliver(client) == 200
    assert w.fake.refreshes == 1 and w.fake.reused == 0
    assert check_consistent(w) == "whole"


@pytest.mark.parametrize("code", ["UNAVAILABLE", "PERMISSION_DENIED"])
def test_refresh_token_that_cannot_be_stored_fails_loudly(
    b24_world: B24World, monkeypatch, capsys, code
) -> None:
    w = b24_world
    client = make_client(w, monkeypatch, RUN_DEADLINE_SECONDS="10")
    sm_fault("AddSecretVersion", 500, w.refresh_secret, code)
    assert deliver(client) == 200  # acknowledged: retrying with a spent token cannot help
    assert w.fake.refreshes == 1
    assert errors_with_event(capsys.readouterr().out, "needs_reauth")
    status = w.status()
    assert status.state == "needs-reauth" and "could not be stored" in (status.last_error or "")
    assert check_consistent(w) == "needs-reauth"
    # No further provider call until a person adds a new refresh token.
    sm_drain_add_faults(w.store, w.refresh_secret)
    assert deliver(client, {"force": True}) == 200
    assert w.fake.count(TOKEN_ROUTE) == 1
    w.store.add_version(w.refresh_secret, w.fake.new_refresh_token())
    assert deliver(client) == 200
    assert check_consistent(w) == "whole"


def test_total_outage_after_rotation_is_still_not_silent(
    b24_world: B24World, monkeypatch, capsys
) -> None:
    """Neither the token nor the status can be written: the ERROR is the only trace, and the
    next run (Secret Manager back) finds the spent token and records needs-reauth."""
    w = b24_world
    client = make_client(w, monkeypatch, RUN_DEADLINE_SECONDS="10")
    sm_fault("AddSecretVersion", 500, w.refresh_secret)
    sm_fault("UpdateSecret", 500, w.access_secret)
    deliver(client)
    assert errors_with_event(capsys.readouterr().out, "needs_reauth")
    sm_drain_add_faults(w.store, w.refresh_secret)
    sm_drain_update_faults(w.store, w.access_secret)
    assert w.status().state != "ok"
    assert deliver(client) == 200
    assert errors_with_event(capsys.readouterr().out, "needs_reauth")
    assert w.status().state == "needs-reauth"
    assert check_consistent(w) == "needs-reauth"


def test_access_token_that_cannot_be_stored_is_repaired_next_run(
    b24_world: B24World, monkeypatch
) -> None:
    """The rotated refresh token is stored, the access token is not: the run fails (Pub/Sub
    retries) and the status makes the next run refresh, spending the stored token once."""
    w = b24_world
    client = make_client(w, monkeypatch, RUN_DEADLINE_SECONDS="10")
    sm_fault("AddSecretVersion", 500, w.access_secret)
    assert deliver(client) >= 500
    has_token = stored(w.access_token())
    assert not has_token, "an access token was stored"
    assert check_consistent(w) == "repair-due"
    sm_drain_add_faults(w.store, w.access_secret)
    assert deliver(client) == 200
    assert w.fake.refreshes == 2 and w.fake.reused == 0
    assert check_consistent(w) == "whole"


def test_half_written_after_a_good_state_is_not_taken_as_fresh(
    b24_world: B24World, monkeypatch
) -> None:
    """Same, after a good refresh: the old access token (now dead at Bitrix24) still looks
    fresh by its expiry, but the refresh-token version on the status gives it away."""
    w = b24_world
    client = make_client(w, monkeypatch, RUN_DEADLINE_SECONDS="10")
    assert deliver(client) == 200
    assert check_consistent(w) == "whole"
    sm_fault("AddSecretVersion", 500, w.access_secret)
    # Published after the first refresh's second: a force from the same second is satisfied.
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert deliver(client, {"force": True}, published=later) >= 500
    old_access = w.access_token()
    dead = old_access is not None and old_access not in w.fake.live_access_tokens
    assert dead, "the old access token should have died with its refresh token"
    assert check_consistent(w) == "repair-due"
    sm_drain_add_faults(w.store, w.access_secret)
    assert deliver(client) == 200  # a plain scheduled run, not forced
    assert w.fake.refreshes == 3 and w.fake.reused == 0
    assert check_consistent(w) == "whole"


# --- provider faults ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_provider_5xx_is_retried_within_the_run(b24_world: B24World, client, status) -> None:
    b24_world.fake.inject(TOKEN_ROUTE, status, count=2)
    assert deliver(client) == 200
    assert b24_world.fake.count(TOKEN_ROUTE) == 3
    assert check_consistent(b24_world) == "whole"


@pytest.mark.parametrize("status", [503, 429])
def test_provider_outage_leaves_tokens_untouched(b24_world: B24World, monkeypatch, status) -> None:
    w = b24_world
    client = make_client(w, monkeypatch)
    w.fake.inject(TOKEN_ROUTE, status, count=4)
    assert deliver(client) >= 500  # transient: Pub/Sub delivers again
    unchanged = w.store.read(w.refresh_secret).value == w.initial_refresh_token
    assert unchanged, "the refresh token changed although Bitrix24 never answered"
    spent = w.fake.grants[w.initial_refresh_token].used
    assert not spent, "the refresh token was spent"
    assert w.status().failure_count == 1
    assert deliver(client) == 200
    assert check_consistent(w) == "whole"


def test_429_retry_after_is_honoured(b24_world: B24World, client, capsys) -> None:
    b24_world.fake.inject(TOKEN_ROUTE, 429, count=1, headers={"Retry-After": "2"})
    assert deliver(client) == 200
    warnings = [
        line["message"]
        for line in json_lines(capsys.readouterr().out)
        if "http_429" in str(line.get("message"))
    ]
    assert any("in 2.0s" in message for message in warnings), warnings
    assert check_consistent(b24_world) == "whole"


def test_429_without_retry_after_backs_off(b24_world: B24World, client) -> None:
    b24_world.fake.inject(TOKEN_ROUTE, 429, count=2)
    assert deliver(client) == 200
    assert b24_world.fake.count(TOKEN_ROUTE) == 3
    assert check_consistent(b24_world) == "whole"


def test_retry_after_waits_stay_inside_the_run_deadline(b24_world: B24World, monkeypatch) -> None:
    for key, value in b24_world.env.items():
        monkeypatch.setenv(key, value)
    main = boot()  # the module behind this client, not whatever sys.modules["main"] holds
    client = main.app.test_client()
    slept: list[float] = []
    # The sleeps are recorded, not slept, and the client's clock moves by what it "slept".
    http = main.clients().http
    start = time.monotonic()
    http._sleep = slept.append
    http._clock = lambda: start + sum(slept)
    b24_world.fake.inject(TOKEN_ROUTE, 429, count=4, headers={"Retry-After": "3600"})
    deliver(client)
    assert sum(slept) <= 240, slept


def test_provider_timeout_is_retried(b24_world: B24World, monkeypatch) -> None:
    w = b24_world
    client = make_client(w, monkeypatch, HTTP_TIMEOUT_SECONDS="1")
    # The fake sits on two requests past the client's timeout without processing them.
    w.fake.inject(TOKEN_ROUTE, 503, count=2, delay=2.5)
    assert deliver(client) == 200
    assert w.fake.refreshes == 1 and w.fake.reused == 0
    assert check_consistent(w) == "whole"


def test_answer_lost_to_a_timeout_ends_in_needs_reauth_not_silence(
    b24_world: B24World, monkeypatch, capsys
) -> None:
    """Bitrix24 spends the token but its answer arrives after the client gave up. The retry
    presents the spent token; the run must end loudly, not store anything made up."""
    w = b24_world
    client = make_client(w, monkeypatch, HTTP_TIMEOUT_SECONDS="1")
    w.fake.slow_answer = 2.5
    assert deliver(client) == 200
    assert w.fake.refreshes == 1 and w.fake.reused >= 1
    assert errors_with_event(capsys.readouterr().out, "needs_reauth")
    assert check_consistent(w) == "needs-reauth"
    has_token = stored(w.access_token())
    assert not has_token, "an access token was stored"


# --- Pub/Sub deliveries ---------------------------------------------------------------------


def test_duplicate_delivery_calls_the_provider_once(b24_world: B24World, client) -> None:
    published = datetime.now(UTC) - timedelta(seconds=2)
    for _ in range(3):
        assert deliver(client, {"force": True}, published=published, message_id="dup-1") == 200
        assert deliver(client, {}, published=published, message_id="dup-2") == 200
    assert b24_world.fake.refreshes == 1
    assert check_consistent(b24_world) == "whole"


def test_force_within_the_same_second_as_a_refresh(
    b24_world: B24World, client, monkeypatch
) -> None:
    """Within one second: a redelivery of the request a refresh served is not repeated, a new
    request published after that refresh is honoured."""
    start = datetime.now(UTC).replace(microsecond=200_000)
    moment = [start]
    monkeypatch.setattr(clock, "now", lambda: moment[0])
    served = start - timedelta(milliseconds=100)
    for _ in range(2):
        assert deliver(client, {"force": True}, published=served, message_id="dup-3") == 200
    assert b24_world.fake.refreshes == 1
    moment[0] = start + timedelta(milliseconds=400)
    newer = start + timedelta(milliseconds=300)
    for _ in range(2):
        assert deliver(client, {"force": True}, published=newer, message_id="new-4") == 200
    assert b24_world.fake.refreshes == 2
    assert check_consistent(b24_world) == "whole"


@pytest.mark.parametrize("data", [{}, {"force": True}])
def test_late_delivery_is_dropped(b24_world: B24World, client, capsys, data) -> None:
    late = datetime.now(UTC) - timedelta(minutes=31)  # EVENT_MAX_AGE_MINUTES defaults to 30
    assert deliver(client, data, published=late) == 200
    assert b24_world.fake.count(TOKEN_ROUTE) == 0
    out = capsys.readouterr().out
    assert any(line.get("outcome") == "too_old" for line in json_lines(out))
    assert b24_world.status().state == "unknown"
    # Just inside the age limit, the same message is acted on.
    assert deliver(client, data, published=datetime.now(UTC) - timedelta(minutes=29)) == 200
    assert check_consistent(b24_world) == "whole"


def test_out_of_order_force_after_a_newer_refresh_is_not_repeated(
    b24_world: B24World, client, capsys
) -> None:
    now = datetime.now(UTC)
    older_force = pubsub_event({"force": True}, published=now - timedelta(minutes=5))
    newer_plain = pubsub_event({}, published=now)
    assert post_event(client, newer_plain) == 200
    assert post_event(client, older_force) == 200  # arrives late, asked before that refresh
    assert b24_world.fake.refreshes == 1
    assert summaries(capsys.readouterr().out)[-1]["reason"] == "already refreshed since the request"
    # A force asked after the last refresh is honoured.
    assert (
        deliver(client, {"force": True}, published=datetime.now(UTC) + timedelta(seconds=2)) == 200
    )
    assert b24_world.fake.refreshes == 2
    assert check_consistent(b24_world) == "whole"


def test_out_of_order_plain_messages_do_not_refresh_twice(b24_world: B24World, client) -> None:
    now = datetime.now(UTC)
    for minutes in (1, 3, 2, 5, 4):
        assert deliver(client, published=now - timedelta(minutes=minutes)) == 200
    assert b24_world.fake.refreshes == 1
    assert check_consistent(b24_world) == "whole"
