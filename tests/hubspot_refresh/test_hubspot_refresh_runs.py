"""hubspot_refresh runs in-process against the Secret Manager stand-in, fake-gcs-server (locks)
and the HubSpot fake: which accounts get refreshed, what is stored, what is reported, and that
no log line ever shows a credential. Tests of one module's part live in test_<module>.py."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alerting import ONE_RUN_FAILED, ONE_RUN_OK

from shared import clock
from tests.hubspot_refresh.hubspot_testkit import (
    FAILING,
    NO_SUCCESS,
    Clock,
    HubSpotSetup,
    deliver,
    load_main,
    log_events,
    monitored,
    pubsub_cloud_event,
    run_once,
    secret_reads,
    summaries,
)


def t(value: datetime) -> str:
    return clock.format_time(value)


# --- which accounts -------------------------------------------------------------------------


def test_due_and_unknown_accounts_are_refreshed_fresh_ones_skipped(
    hs: HubSpotSetup, monkeypatch, capsys
) -> None:
    for account in ("101", "102", "103"):
        hs.add_account(account)
    # 104 was made by hand, not with the CLI: only its refresh-token secret exists.
    hs.store.create(
        "hubspot-104-refresh-token", labels={"integration": "hubspot", "hubspot-account": "104"}
    )
    hs.refresh_tokens["104"] = hs.fake.new_refresh_token(104)
    hs.store.add_version("hubspot-104-refresh-token", hs.refresh_tokens["104"])
    now = clock.now()
    hs.set_status("101", **{"state": "ok", "expires-at": t(now + timedelta(minutes=50))})
    hs.set_status("102", **{"state": "ok", "expires-at": t(now + timedelta(minutes=10))})
    hs.set_status("103", **{"state": "ok", "expires-at": t(now - timedelta(minutes=5))})
    main = load_main(hs, monkeypatch)

    summary = run_once(main)

    assert dict(hs.fake.refreshes) == {102: 1, 103: 1, 104: 1}
    for account in ("102", "103", "104"):
        assert hs.fake.is_live(hs.access_token(account))
        status = hs.status(account)
        assert status.state == "ok"
        assert status.failure_count == 0
        assert status.expires_at is not None and status.refreshed_at is not None
        # expires_in (1800 s) from the response, not a constant. expires-at keeps whole seconds
        # and is taken when the response arrives, refreshed-at a moment later: a second
        # boundary between the two makes the difference 1799 s.
        refreshed = status.refreshed_at.replace(microsecond=0)
        assert timedelta(seconds=1799) <= status.expires_at - refreshed <= timedelta(seconds=1800)
    assert hs.status("101").state == "ok" and not hs.fake.is_live(hs.access_token("101"))
    assert summary.counts["refreshed"] == 3 and summary.counts["skipped_fresh"] == 1
    # The access-token secret created on the first refresh carries the account's labels.
    labels = hs.store.info("hubspot-104-access-token").labels
    assert labels == {"integration": "hubspot", "hubspot-account": "104"}

    out = capsys.readouterr().out
    (line,) = summaries(out)
    assert line["provider"] == "hubspot" and line["mode"] == "scheduled"
    assert line["accounts_seen"] == 4
    assert (line["refreshed"], line["skipped_fresh"], line["in_backoff"]) == (3, 1, 0)
    assert (line["failed"], line["needs_reauth"]) == (0, 0)
    assert isinstance(line["duration_seconds"], float)
    # The client id and client secret once for the run, then the refresh token of each of the
    # 3 accounts refreshed; the fresh one (101) was decided on its listed status alone.
    assert secret_reads(out) == [(5, 1.25)]
    assert monitored(out) == (ONE_RUN_OK, {NO_SUCCESS})


def test_default_margin_refreshes_a_token_with_thirty_minutes_left(
    hs: HubSpotSetup, monkeypatch
) -> None:
    hs.add_account("111")
    hs.set_status("111", **{"state": "ok", "expires-at": t(clock.now() + timedelta(minutes=29))})
    main = load_main(hs, monkeypatch, HUBSPOT_REFRESH_MARGIN_MINUTES="30")
    run_once(main)
    assert hs.fake.refreshes[111] == 1


def test_force_all_then_force_some(
    hs: HubSpotSetup, monkeypatch, fixed_clock: Clock, capsys
) -> None:
    for account in ("201", "202", "203"):
        hs.add_account(account)
    main = load_main(hs, monkeypatch)
    run_once(main)
    assert dict(hs.fake.refreshes) == {201: 1, 202: 1, 203: 1}
    outs = [capsys.readouterr().out]

    fixed_clock.advance(minutes=1)
    run_once(main)  # all fresh: nothing to do
    assert hs.token_calls() == 3
    outs.append(capsys.readouterr().out)

    fixed_clock.advance(minutes=1)
    run_once(main, force=True)
    assert dict(hs.fake.refreshes) == {201: 2, 202: 2, 203: 2}
    outs.append(capsys.readouterr().out)

    fixed_clock.advance(minutes=1)
    summary = run_once(main, force=True, accounts=("202", "999"))
    assert dict(hs.fake.refreshes) == {201: 2, 202: 3, 203: 2}
    assert summary.counts["refreshed"] == 1
    assert summary.counts["unknown"] == 1
    outs.append(capsys.readouterr().out)

    # Refreshing: client id and client secret, then one refresh token per account. All fresh:
    # no value at all (the listed status decides). An unknown account requested reads nothing.
    assert [secret_reads(out) for out in outs] == [
        [(5, 1.67)],
        [(0, 0.0)],
        [(5, 1.67)],
        [(3, 3.0)],
    ]
    # Scheduled, all fresh, forced, forced for some (one unknown: a warning, not a failure):
    # each is one successful run.
    assert [monitored(out) for out in outs] == [(ONE_RUN_OK, {NO_SUCCESS})] * 4


def test_forced_message_delivered_twice_refreshes_once(
    hs: HubSpotSetup, monkeypatch, fixed_clock: Clock
) -> None:
    hs.add_account("211")
    main = load_main(hs, monkeypatch)
    run_once(main)
    event = pubsub_cloud_event(
        {"force": True, "accounts": ["211"]}, at=fixed_clock.advance(minutes=1)
    )
    assert deliver(main, event) == 200
    assert deliver(main, event) == 200
    assert hs.fake.refreshes[211] == 2  # the first run, then the forced one: not three


def test_bad_messages_are_acknowledged_without_calls(hs: HubSpotSetup, monkeypatch) -> None:
    hs.add_account("221")
    main = load_main(hs, monkeypatch)
    for data in (
        "not json",
        {"force": "yes"},
        {"accounts": ["221"]},  # accounts without force
        {"force": True, "accounts": []},
        {"force": True, "accounts": [{"id": 1}]},
        {"colour": "blue"},
    ):
        assert deliver(main, pubsub_cloud_event(data)) == 200
    assert hs.token_calls() == 0
    old = pubsub_cloud_event({}, at=datetime.now(UTC) - timedelta(hours=2))
    assert deliver(main, old) == 200
    assert hs.token_calls() == 0


def test_disabled_account_is_skipped_until_enabled(
    hs: HubSpotSetup, monkeypatch, fixed_clock: Clock
) -> None:
    from cli import hubspot as cli

    hs.add_account("301", enabled=False)
    hs.add_account("302")
    main = load_main(hs, monkeypatch)
    summary = run_once(main, force=True)
    assert dict(hs.fake.refreshes) == {302: 1}
    assert summary.counts["disabled"] == 1
    assert hs.store.latest_version("hubspot-301-access-token") is None

    cli.set_enabled(hs.store, "301", True)
    fixed_clock.advance(minutes=1)
    run_once(main)
    assert hs.fake.refreshes[301] == 1
    cli.set_enabled(hs.store, "302", False)
    fixed_clock.advance(minutes=1)
    run_once(main, force=True)
    assert hs.fake.refreshes[302] == 1


def test_account_added_between_runs_is_picked_up(hs: HubSpotSetup, monkeypatch) -> None:
    hs.add_account("401")
    main = load_main(hs, monkeypatch)
    run_once(main)
    hs.add_account("402")
    summary = run_once(main)
    assert dict(hs.fake.refreshes) == {401: 1, 402: 1}
    assert summary.counts["skipped_fresh"] == 1 and summary.counts["refreshed"] == 1


def test_account_of_another_app_uses_the_credentials_its_annotations_name(
    hs: HubSpotSetup, monkeypatch
) -> None:
    other_id, other_secret = hs.fake.add_app()
    hs.store.create("hubspot-app2-client-id")
    hs.store.create("hubspot-app2-client-secret")
    hs.store.add_version("hubspot-app2-client-id", other_id)
    hs.store.add_version("hubspot-app2-client-secret", other_secret)
    hs.add_account(
        "501",
        client_id=other_id,
        client_id_secret="hubspot-app2-client-id",
        client_secret_secret="hubspot-app2-client-secret",
    )
    hs.add_account("502")
    # The same app's token without the annotations: HubSpot refuses it.
    hs.add_account("503", client_id=other_id)
    main = load_main(hs, monkeypatch)

    summary = run_once(main)

    assert dict(hs.fake.refreshes) == {501: 1, 502: 1}
    assert hs.status("501").state == "ok" and hs.status("502").state == "ok"
    assert hs.status("503").state == "needs-reauth"
    assert summary.counts["needs_reauth"] == 1


def test_missing_client_secret_of_another_app_backs_off_with_a_clear_error(
    hs: HubSpotSetup, monkeypatch
) -> None:
    hs.add_account(
        "511",
        client_id_secret="hubspot-missing-client-id",
        client_secret_secret="hubspot-missing-client-secret",
    )
    main = load_main(hs, monkeypatch)
    summary = run_once(main)
    status = hs.status("511")
    assert status.state == "backoff" and summary.counts["failed"] == 1
    assert "hubspot-missing-client-id" in (status.last_error or "")
    assert hs.token_calls() == 0


# --- failures -------------------------------------------------------------------------------


def test_transient_failures_back_off_5_then_10_minutes_then_recover(
    hs: HubSpotSetup, monkeypatch, fixed_clock: Clock, capsys
) -> None:
    hs.add_account("601")
    hs.add_account("602")
    # A 10-minute margin keeps the healthy account fresh for the whole 15 minutes.
    main = load_main(hs, monkeypatch, HUBSPOT_REFRESH_MARGIN_MINUTES="10")
    start = fixed_clock.now()

    hs.fake.inject("token", 503, count=1)
    summary = run_once(main)
    # Which of the two accounts met the fault depends on thread timing; find it.
    failed = "601" if hs.fake.refreshes[601] == 0 else "602"
    healthy = "602" if failed == "601" else "601"
    assert summary.counts["failed"] == 1 and summary.counts["refreshed"] == 1
    status = hs.status(failed)
    assert status.state == "backoff"
    assert status.failure_count == 1
    assert status.next_attempt_at == start + timedelta(minutes=5)
    assert status.last_error is not None and "503" in status.last_error
    assert hs.status(healthy).state == "ok"
    out = capsys.readouterr().out
    # The client id and client secret, then the refresh token of each account called (2).
    assert secret_reads(out) == [(4, 2.0)]
    # A failed account makes the run a failure; "every run failed" alerts when it goes on.
    assert monitored(out) == (ONE_RUN_FAILED, {FAILING})

    calls = hs.token_calls()
    fixed_clock.advance(minutes=4, seconds=59)
    summary = run_once(main)
    assert hs.token_calls() == calls
    assert summary.counts["in_backoff"] == 1
    # Waiting out the backoff (the other account fresh) reads nothing and is no failure.
    out = capsys.readouterr().out
    assert secret_reads(out) == [(0, 0.0)]
    assert monitored(out) == (ONE_RUN_OK, {NO_SUCCESS})

    second_failure = fixed_clock.advance(seconds=1)
    hs.fake.inject("token", 503, count=1)
    run_once(main)
    assert hs.token_calls() == calls + 1
    status = hs.status(failed)
    assert status.failure_count == 2
    assert status.next_attempt_at == second_failure + timedelta(minutes=10)

    fixed_clock.advance(minutes=9, seconds=59)
    run_once(main)
    assert hs.token_calls() == calls + 1

    fixed_clock.advance(seconds=1)
    run_once(main)
    status = hs.status(failed)
    assert status.state == "ok" and status.failure_count == 0
    assert status.next_attempt_at is None and status.last_error is None
    assert hs.fake.refreshes[int(failed)] == 1


def test_backoff_is_capped_at_one_hour(hs: HubSpotSetup, monkeypatch, fixed_clock: Clock) -> None:
    hs.add_account("611")
    now = fixed_clock.now()
    hs.set_status(
        "611",
        **{
            "state": "backoff",
            "failure-count": "6",
            "next-attempt-at": t(now - timedelta(minutes=1)),
            "expires-at": t(now - timedelta(hours=3)),
        },
    )
    hs.fake.inject("token", 502, count=1)
    main = load_main(hs, monkeypatch)
    run_once(main)
    status = hs.status("611")
    assert status.failure_count == 7
    assert status.next_attempt_at == now + timedelta(hours=1)


def test_unrecognised_client_error_backs_off_instead_of_needs_reauth(
    hs: HubSpotSetup, monkeypatch
) -> None:
    """A wrong URL (404) must not lock every account into needs-reauth."""
    hs.add_account("621")
    main = load_main(hs, monkeypatch, HUBSPOT_TOKEN_URL=f"{hs.fake.url}/oauth/v9/token")
    summary = run_once(main)
    assert hs.status("621").state == "backoff"
    assert summary.counts["failed"] == 1


@pytest.mark.parametrize(
    "break_it",
    ["revoked", "deleted_portal", "wrong_client"],
)
def test_terminal_refusal_stops_calls_until_a_new_refresh_token_version(
    hs: HubSpotSetup, monkeypatch, capsys, break_it: str
) -> None:
    token = hs.add_account("701")
    hs.add_account("702")
    main = load_main(hs, monkeypatch)
    if break_it == "revoked":
        hs.fake.revoke(token)
    elif break_it == "deleted_portal":
        hs.fake.delete_hub(701)
    else:
        hs.store.add_version("hubspot-client-secret", "not-the-right-client-secret")

    summary = run_once(main)
    status = hs.status("701")
    assert status.state == "needs-reauth"
    assert summary.counts["needs_reauth"] >= 1
    expected = {"revoked": "BAD_REFRESH_TOKEN", "deleted_portal": "BAD_HUB"}
    assert expected.get(break_it, "BAD_REFRESH_TOKEN") in (status.last_error or "")
    errors = [
        e for e in log_events(capsys.readouterr().out, "needs_reauth") if e.get("account") == "701"
    ]
    assert errors and errors[0]["severity"] == "ERROR"
    assert "add-account 701" in errors[0]["message"]

    # No more provider calls for it, forced or not, however much time passes.
    calls = hs.fake.refused[701]
    run_once(main)
    run_once(main, force=True, accounts=("701",))
    assert hs.fake.refused[701] == calls
    assert hs.status("701").state == "needs-reauth"
    # Nor any secret value read, nor another needs_reauth line: the alert was raised once, for
    # the account. A run with a healthy account beside it is a success; a run where every
    # account waits for a person ("unhealthy") is not, so a dead integration keeps alerting.
    waiting = capsys.readouterr().out
    refused = 2 if break_it == "wrong_client" else 1  # the wrong client secret refuses 702 too
    assert [s["needs_reauth"] for s in summaries(waiting)] == [refused, 1]
    assert [s["result"] for s in summaries(waiting)] == [
        "unhealthy" if break_it == "wrong_client" else "completed",
        "unhealthy",
    ]
    assert secret_reads(waiting) == [(0, 0.0), (0, 0.0)]
    ok = 0 if break_it == "wrong_client" else 1
    assert monitored(waiting) == (
        {
            "keepalive_run_duration_seconds": 2,
            **({"keepalive_run_ok": ok} if ok else {}),
            "keepalive_run_failed": 2 - ok,
            "keepalive_runs": 2,
            "keepalive_secret_reads": 2,
        },
        {FAILING, NO_SUCCESS} if ok else {FAILING},
    )

    # Someone re-authorises: a new refresh token (and, for the wrong client, the right secret).
    if break_it == "deleted_portal":
        hs.fake.deleted_hubs.discard(701)
    if break_it == "wrong_client":
        hs.store.add_version("hubspot-client-secret", hs.fake.client_secret)
    else:
        hs.add_account("701")
    run_once(main)
    status = hs.status("701")
    assert status.state == "ok" and status.failure_count == 0
    assert hs.fake.is_live(hs.access_token("701"))


def test_one_failing_account_never_stops_the_others(hs: HubSpotSetup, monkeypatch, capsys) -> None:
    tokens = {a: hs.add_account(a) for a in ("801", "802", "803", "804")}
    hs.fake.revoke(tokens["802"])
    hs.fake.delete_hub(803)
    main = load_main(hs, monkeypatch)
    summary = run_once(main)
    assert dict(hs.fake.refreshes) == {801: 1, 804: 1}
    assert summary.counts["needs_reauth"] == 2 and summary.counts["refreshed"] == 2
    out = capsys.readouterr().out
    # The client id and client secret, then the refresh token of each of the 4 accounts called.
    assert secret_reads(out) == [(6, 1.5)]
    # Each refusal is a needs_reauth line: the person-must-act alert, per account and error
    # code. The run itself completed with nothing failed, so it is a success: a run covers many
    # accounts, and one portal that revoked or uninstalled the app must not make the whole
    # integration look down; the needs_reauth alert names that account for a person to act on.
    assert monitored(out) == (
        {**ONE_RUN_OK, "keepalive_needs_reauth": 2},
        {NO_SUCCESS, "needs_reauth[0]"},
    )


# --- the endpoint -----------------------------------------------------------------------------


def test_v3_endpoint_is_one_setting(hs: HubSpotSetup, monkeypatch) -> None:
    hs.add_account("911")
    main = load_main(hs, monkeypatch, HUBSPOT_TOKEN_URL=f"{hs.fake.url}/oauth/v3/token")
    run_once(main)
    assert hs.status("911").state == "ok"
    assert hs.fake.calls == [("POST", "token")]


def test_the_default_endpoint_path_refreshes_with_no_endpoint_warning(
    hs: HubSpotSetup, monkeypatch, capsys
) -> None:
    """The set-up serves the default's path (/oauth/2026-03/token): body-only form, no WARNING,
    and each account records the endpoint its attempt used, for `cli status`."""
    hs.add_account("912")
    main = load_main(hs, monkeypatch)
    assert deliver(main, pubsub_cloud_event({})) == 200
    assert hs.status("912").state == "ok"
    assert hs.fake.token_paths == {"/oauth/2026-03/token": 1}
    assert hs.annotations("912")["token-endpoint"] == f"{hs.fake.url}/oauth/2026-03/token"
    assert log_events(capsys.readouterr().out, "token_endpoint_retiring") == []


def test_v1_stays_selectable_with_a_warning_on_each_run(
    hs: HubSpotSetup, monkeypatch, capsys
) -> None:
    hs.add_account("913")
    hs.add_account("914")
    hs.fake.revoke(hs.refresh_tokens["914"])
    v1 = f"{hs.fake.url}/oauth/v1/token"
    main = load_main(hs, monkeypatch, HUBSPOT_TOKEN_URL=v1)
    for _ in range(2):  # the second run has nothing to refresh: it warns all the same
        assert deliver(main, pubsub_cloud_event({})) == 200
    assert hs.status("913").state == "ok" and hs.status("914").state == "needs-reauth"
    assert hs.fake.token_paths == {"/oauth/v1/token": 2}
    # Success and refusal alike record the endpoint.
    assert hs.annotations("913")["token-endpoint"] == hs.annotations("914")["token-endpoint"] == v1
    out = capsys.readouterr().out
    warnings = log_events(out, "token_endpoint_retiring")
    assert len(warnings) == 2 == len(summaries(out))
    expected = "ERROR" if clock.now().date() >= datetime(2027, 2, 16).date() else "WARNING"
    for line in warnings:
        assert line["severity"] == expected
        assert (line["endpoint"], line["retires_on"]) == (v1, "2027-02-16")
        assert line["replacement"] == f"{hs.fake.url}/oauth/2026-03/token"
        assert "HUBSPOT_TOKEN_URL" in line["message"]

    # A shard's run was announced by its fan-out: no second line per shard.
    shard = {"shard": "1/1", "accounts": ["913"], "force": True}
    assert deliver(main, pubsub_cloud_event(shard)) == 200
    assert log_events(capsys.readouterr().out, "token_endpoint_retiring") == []


def test_a_retired_endpoint_is_an_error_line_each_run(
    hs: HubSpotSetup, monkeypatch, capsys, fixed_clock
) -> None:
    fixed_clock.current = datetime(2027, 2, 16, 9, 0, tzinfo=UTC)
    hs.add_account("915")
    main = load_main(hs, monkeypatch, HUBSPOT_TOKEN_URL=f"{hs.fake.url}/oauth/v1/token")
    assert deliver(main, pubsub_cloud_event({}, at=fixed_clock.current)) == 200
    (line,) = log_events(capsys.readouterr().out, "token_endpoint_retiring")
    assert line["severity"] == "ERROR"
    assert line["message"].startswith("HubSpot retired the token endpoint")


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_duplicate_deliveries_refresh_each_account_once(
    hs: HubSpotSetup, monkeypatch, capsys
) -> None:
    accounts = [str(1100 + i) for i in range(6)]
    for account in accounts:
        hs.add_account(account)
    hs.fake.latency = 0.05
    main = load_main(hs, monkeypatch)
    event = pubsub_cloud_event({})
    codes: list[int] = []

    def one() -> None:
        codes.append(deliver(main, event))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert codes == [200] * 4
    assert dict(hs.fake.refreshes) == {int(a): 1 for a in accounts}
    lines = summaries(capsys.readouterr().out)
    assert len(lines) == 4
    assert sum(line["refreshed"] for line in lines) == 6


def test_secret_manager_down_at_discovery_makes_pub_sub_retry(
    hs: HubSpotSetup, monkeypatch, capsys
) -> None:
    import os
    import urllib.request

    hs.add_account("1401")
    main = load_main(hs, monkeypatch)
    request = urllib.request.Request(
        f"{os.environ['SECRET_MANAGER_EMULATOR_ADMIN']}/faults",
        data=json.dumps({"method": "ListSecrets", "code": "UNAVAILABLE", "count": 1}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200

    assert deliver(main, pubsub_cloud_event({})) == 500  # raised: Pub/Sub delivers again
    out = capsys.readouterr().out
    (line,) = summaries(out)
    assert line["result"] == "failed" and line["error"] == "discovery_failed"
    assert line["severity"] == "ERROR"
    assert hs.token_calls() == 0
    assert secret_reads(out) == [(0, 0.0)]  # it stopped at the listing, before any value
    assert monitored(out) == (ONE_RUN_FAILED, {FAILING})

    assert deliver(main, pubsub_cloud_event({})) == 200  # the redelivery succeeds
    assert hs.fake.refreshes[1401] == 1
    out = capsys.readouterr().out
    (line,) = summaries(out)
    assert line["result"] == "completed" and line["refreshed"] == 1
    # Client id, client secret and the one account's refresh token.
    assert secret_reads(out) == [(3, 3.0)]
    assert monitored(out) == (ONE_RUN_OK, {NO_SUCCESS})


def test_throttled_secret_manager_reads_wait_and_retry(hs: HubSpotSetup, monkeypatch) -> None:
    """Secret Manager's per-project quota answers 429: the account waits, it does not fail."""
    import os
    import urllib.request

    hs.add_account("1501")
    main = load_main(hs, monkeypatch)
    for method in ("GetSecret", "AccessSecretVersion"):
        fault = {"method": method, "code": "RESOURCE_EXHAUSTED", "count": 1}
        request = urllib.request.Request(
            f"{os.environ['SECRET_MANAGER_EMULATOR_ADMIN']}/faults",
            data=json.dumps(fault).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    summary = run_once(main)
    assert summary.counts["refreshed"] == 1 and summary.counts["failed"] == 0
    assert hs.status("1501").state == "ok"


# --- log safety -----------------------------------------------------------------------------


def test_no_secret_value_in_any_log_line(
    hs: HubSpotSetup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = {a: hs.add_account(a) for a in ("1301", "1302", "1303", "1304")}
    hs.fake.revoke(tokens["1302"])
    hs.fake.rotation = "always"
    main = load_main(hs, monkeypatch)
    hs.fake.inject("token", 500, count=1)
    run_once(main)
    later = clock.now() + timedelta(minutes=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    run_once(main, force=True)
    # The HubSpot fake echoing a credential in an error description must not leak it either.
    hs.fake.inject(
        "token",
        400,
        body={
            "status": "BAD_REFRESH_TOKEN",
            "message": f"unknown token {hs.refresh_token('1304')}",
        },
    )
    run_once(main, force=True, accounts=("1304",), requested_at=later + timedelta(seconds=1))

    out = capsys.readouterr()
    text = out.out + out.err
    assert '"run_summary"' in text and '"needs_reauth"' in text
    values = hs.secret_values()
    values += [hs.refresh_token(a) for a in tokens] + [hs.access_token(a) for a in ("1301", "1303")]
    leaked = [v for v in values if v in text]
    assert leaked == []
    # ... and nothing leaked into the status annotations users read either.
    for account in tokens:
        annotations = json.dumps(hs.annotations(account))
        assert all(v not in annotations for v in values)
