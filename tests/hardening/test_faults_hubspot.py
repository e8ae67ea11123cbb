"""HubSpot refresh under faults: Secret Manager outages right after HubSpot rotated the
refresh token (whether or not the old one survives), provider 5xx and 429, a process killed
mid-refresh, and 50 concurrent deliveries for one account (one HubSpot call)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_structured

from devtools.stack import FunctionServer
from shared import clock
from tests.hardening.hardening_b24 import json_lines, sm_drain_add_faults, sm_fault, wait_for
from tests.hubspot_refresh.hubspot_testkit import (
    HubSpotSetup,
    deliver,
    load_main,
    pubsub_cloud_event,
    summaries,
)

ACCOUNT = "4242"
RT_SECRET = f"hubspot-{ACCOUNT}-refresh-token"
AT_SECRET = f"hubspot-{ACCOUNT}-access-token"


def check_whole(hs: HubSpotSetup) -> None:
    """The stored refresh token works at HubSpot, the access token is live and was issued for
    this account, and the status records the refresh-token version in use."""
    refresh = hs.store.read(RT_SECRET)
    grant = hs.fake.grants[refresh.value]
    assert not grant.revoked, "the stored refresh token no longer works"
    access = hs.access_token(ACCOUNT)
    # Booleans first: a failing assert must not print a token.
    issued = access in hs.fake.access_tokens
    assert issued, "the stored access token was not issued by HubSpot"
    hub = hs.fake.access_tokens[access].hub_id
    assert hub == int(ACCOUNT)
    status = hs.status(ACCOUNT)
    assert status.state == "ok"
    assert status.refresh_token_version == refresh.version


def force(main: Any, **kwargs: Any) -> int:
    return deliver(main, pubsub_cloud_event({"force": True}, **kwargs))


def test_write_outage_after_rotation_is_ridden_out(
    hubspot_world: HubSpotSetup, monkeypatch
) -> None:
    hs = hubspot_world
    hs.fake.rotation, hs.fake.old_token_survives_rotation = "always", False
    hs.add_account(ACCOUNT)
    main = load_main(hs, monkeypatch)
    sm_fault("AddSecretVersion", 3, RT_SECRET)
    sm_fault("AddSecretVersion", 3, AT_SECRET)
    sm_fault("UpdateSecret", 2, AT_SECRET)
    assert force(main) == 200
    calls = hs.token_calls()
    assert calls == 1
    check_whole(hs)


@pytest.mark.parametrize("survives", [True, False])
def test_rotated_token_that_cannot_be_stored_is_never_a_silent_loss(
    hubspot_world: HubSpotSetup, monkeypatch, capsys, survives: bool
) -> None:
    """The rotated token cannot be stored. If HubSpot keeps the old one working, the next run
    recovers; if not, the next run must end in needs-reauth with an ERROR. Never "ok"."""
    hs = hubspot_world
    hs.fake.rotation, hs.fake.old_token_survives_rotation = "always", survives
    hs.add_account(ACCOUNT)
    main = load_main(hs, monkeypatch, RUN_DEADLINE_SECONDS="10")
    sm_fault("AddSecretVersion", 500, RT_SECRET)
    force(main)
    calls = hs.token_calls()
    assert calls == 1
    state = hs.status(ACCOUNT).state
    assert state != "ok"
    sm_drain_add_faults(hs.store, RT_SECRET)

    assert force(main) == 200  # the next attempt (forced past the backoff)
    out = capsys.readouterr().out
    if survives:
        check_whole(hs)
    else:
        state = hs.status(ACCOUNT).state
        assert state == "needs-reauth"
        assert any(
            line.get("severity") == "ERROR" and line.get("event") == "needs_reauth"
            for line in json_lines(out)
        )


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_provider_errors_are_retried_within_the_run(
    hubspot_world: HubSpotSetup, monkeypatch, status: int
) -> None:
    hs = hubspot_world
    hs.add_account(ACCOUNT)
    main = load_main(hs, monkeypatch, HUBSPOT_HTTP_ATTEMPTS="3")
    headers = {"Retry-After": "1"} if status == 429 else None
    hs.fake.inject("token", status, count=2, headers=headers)
    assert force(main) == 200
    calls = hs.token_calls()
    assert calls == 3
    check_whole(hs)


def test_provider_outage_backs_off_and_keeps_the_tokens(
    hubspot_world: HubSpotSetup, monkeypatch
) -> None:
    hs = hubspot_world
    token = hs.add_account(ACCOUNT)
    main = load_main(hs, monkeypatch)
    hs.fake.inject("token", 503, count=1)  # HUBSPOT_HTTP_ATTEMPTS is 1 here
    deliver(main, pubsub_cloud_event({}))
    status = hs.status(ACCOUNT)
    assert (status.state, status.failure_count) == ("backoff", 1)
    kept = hs.refresh_token(ACCOUNT) == token
    assert kept, "the refresh token changed although HubSpot never answered"
    assert force(main) == 200  # the outage is over; a person forcing skips the backoff
    check_whole(hs)


def _serve(hs: HubSpotSetup, serve_function: Callable[..., FunctionServer], **env: str) -> Any:
    return serve_function(
        "hubspot_refresh",
        "hubspot_refresh",
        signature_type="cloudevent",
        env={**hs.env, "LOCK_LEASE_SECONDS": "30", **env},
    )


def _post(url: str, data: dict[str, Any], timeout: float = 180) -> int:
    headers, body = to_structured(pubsub_cloud_event(data))
    return requests.post(url, headers=dict(headers), data=body, timeout=timeout).status_code


@pytest.mark.e2e
def test_killed_mid_refresh_then_the_lease_expires(
    hubspot_world: HubSpotSetup, serve_function, monkeypatch
) -> None:
    hs = hubspot_world
    hs.add_account(ACCOUNT)
    hs.fake.latency = 5.0  # the call is in flight when the process dies
    server = _serve(hs, serve_function)
    threading.Thread(target=lambda: _safe_post(server.url), daemon=True).start()
    wait_for(lambda: hs.fake.in_flight >= 1, what="the HubSpot call")
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    hs.fake.latency = 0.0

    busy = load_main(hs, monkeypatch, LOCK_LEASE_SECONDS="30", LOCK_WAIT_SECONDS="0")
    deliver(busy, pubsub_cloud_event({"force": True}))
    calls = hs.token_calls()
    assert calls == 1  # the dead run's lease still holds

    real_now = clock.now

    def later() -> datetime:
        return real_now() + timedelta(seconds=31)

    monkeypatch.setattr(clock, "now", later)
    main = load_main(hs, monkeypatch, LOCK_LEASE_SECONDS="30")
    assert force(main, at=later()) == 200
    calls = hs.token_calls()
    assert calls == 2
    check_whole(hs)


def _safe_post(url: str) -> None:
    try:
        _post(url, {"force": True}, timeout=60)
    except requests.RequestException:
        return


@pytest.mark.e2e
def test_fifty_concurrent_deliveries_call_hubspot_once(
    hubspot_world: HubSpotSetup, serve_function
) -> None:
    hs = hubspot_world
    hs.add_account(ACCOUNT)
    hs.fake.latency = 0.3
    servers = [_serve(hs, serve_function, THREADS="32") for _ in range(2)]
    gate = threading.Barrier(50)

    def one(index: int) -> int:
        headers, body = to_structured(pubsub_cloud_event({}))
        gate.wait(timeout=30)
        url = servers[index % 2].url
        return requests.post(url, headers=dict(headers), data=body, timeout=180).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses == [200] * 50
    calls = hs.token_calls()
    assert calls == 1
    runs = [s for server in servers for s in summaries(server.log_text())]
    assert len(runs) == 50
    check_whole(hs)
