"""graph_reconcile without emulators: runs against the Graph fake in-process (which skips the
validation handshake here), with the clientState in memory and no lock bucket.

The end-to-end tests run the same reconciler from a Pub/Sub CloudEvent, with the lock, Secret
Manager and a notify function answering Graph's handshake.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from alerting import ONE_RUN_FAILED, alerts, feeds, written
from graph_plan import Desired, RenewRequest
from graph_reconcile import Tally, reconcile, report

from devtools.fakes.graph import GraphFake
from shared import gcs, lock
from shared.errors import ProviderError, TerminalError, TransientError
from shared.lock import LeaseLost
from shared.runtime import Meter

ENTRY = "graph_webhook_renew"
URL = "http://127.0.0.1:9/notify"
INBOX = "/users/u1/mailFolders('Inbox')/messages"
STATE = "the-client-state"


@pytest.fixture
def fake() -> Any:
    """This folder's Graph fake, without the handshake: nothing here answers at URL."""
    server = GraphFake(validate=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def settings(**changes: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "notification_url": URL,
        "desired": (Desired(INBOX, "created", 4230),),
        "renew_within": timedelta(hours=24),
        "subscription_minutes": 4200,
        "state_bucket": None,
        "lock_lease": timedelta(minutes=10),
        "lock_wait_seconds": 0,
    }
    return SimpleNamespace(**{**values, **changes})


class Clients:
    """What graph_reconcile asks of main.Clients: the Graph client and the clientState."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.state_reads = 0

    def client_state(self) -> bytes:
        self.state_reads += 1
        return STATE.encode()

    def secret_reads(self) -> int:
        """The clientState is the one secret value read here (the Graph client is given)."""
        return self.state_reads


class Failing:
    """A Graph client whose listing fails with ``error``."""

    def __init__(self, error: ProviderError) -> None:
        self.error = error

    def reauthorize(self, sub_id: str, *, deadline: float) -> bool:
        raise AssertionError("not asked for")

    def list_subscriptions(self, *, deadline: float) -> list[Any]:
        raise self.error


def run(graph: Any, request: RenewRequest | None = None, **changes: Any) -> Tally:
    return reconcile(
        settings(**changes),
        Clients(graph),
        request or RenewRequest(),
        deadline=time.monotonic() + 60,
    )


def ours(fake: GraphFake, hours: float = 48, resource: str = INBOX) -> Any:
    return fake.add(
        resource=resource,
        notification_url=URL,
        lifecycle_url=URL,
        client_state=STATE,
        expires_in=timedelta(hours=hours),
    )


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"notification_url": None}, "GRAPH_NOTIFICATION_URL"),
        ({"notification_url": None, "desired": ()}, "GRAPH_NOTIFICATION_URL"),
        ({"desired": ()}, "GRAPH_SUBSCRIPTIONS or GRAPH_USER_ID"),
    ],
)
def test_missing_configuration_is_an_error_and_calls_nothing(
    caplog: pytest.LogCaptureFixture, logged: Any, changes: dict[str, Any], missing: str
) -> None:
    caplog.set_level(logging.INFO)
    clients = Clients(Failing(TransientError("must not be called")))
    tally = reconcile(settings(**changes), clients, RenewRequest(), deadline=time.monotonic() + 60)
    assert tally == Tally()
    (error,) = logged("config_error")
    assert error == {"event": "config_error", "provider": "graph", "missing": missing}
    (summary,) = logged("run_summary")
    assert summary["result"] == "config_error" and summary["desired"] == len(
        settings(**changes).desired
    )
    assert clients.state_reads == 0 and summary["secret_reads"] == 0
    # An unconfigured Graph integration is a failed run, never a success.
    out = written(caplog.records)
    assert feeds(out, entry_point=ENTRY) == ONE_RUN_FAILED
    assert alerts(out, entry_point=ENTRY) == {"failing[0]"}


def test_first_run_creates_and_the_next_leaves_it(
    fake: GraphFake, make_graph: Any, caplog: pytest.LogCaptureFixture, logged: Any
) -> None:
    caplog.set_level(logging.INFO)
    graph = make_graph()

    first = run(graph)

    assert (first.created, first.failed) == (1, 0)
    (sub,) = fake.live()
    assert (sub.resource, sub.notification_url, sub.lifecycle_url) == (INBOX, URL, URL)
    assert sub.client_state == STATE
    lifetime = sub.expires_at - datetime.now(UTC)
    assert timedelta(minutes=4190) < lifetime <= timedelta(minutes=4200)
    assert first.earliest_expiry == sub.expires_at.replace(microsecond=0)

    second = run(graph)
    assert (second.created, second.unchanged) == (0, 1)
    assert fake.count("create") == 1 and fake.count("patch") == 0
    summaries = logged("run_summary")
    assert [s["result"] for s in summaries] == ["ok", "ok"]
    assert summaries[1]["reason"] == "scheduled" and summaries[1]["unchanged"] == 1
    # Each run here builds its clients anew, so each reads the clientState once.
    assert [s["secret_reads"] for s in summaries] == [1, 1]
    out = written(caplog.records)
    assert feeds(out, entry_point=ENTRY) == {
        "keepalive_graph_earliest_expiry_minutes": 2,
        "keepalive_run_duration_seconds": 2,
        "keepalive_run_ok": 2,
        "keepalive_runs": 2,
        "keepalive_secret_reads": 2,
    }
    assert alerts(out, entry_point=ENTRY) == {'no_success["120"]'}


def test_renews_inside_the_window_and_deletes_duplicates(fake: GraphFake, make_graph: Any) -> None:
    keep = ours(fake, hours=20)
    older = ours(fake, hours=10)
    tally = run(make_graph())
    assert (tally.renewed, tally.deleted) == (1, 1)
    assert [s.id for s in fake.live()] == [keep.id]
    assert older.deleted


def test_reauthorization_is_counted_and_a_refusal_renews_instead(
    fake: GraphFake, make_graph: Any
) -> None:
    sub = ours(fake, hours=40)  # outside the renewal window
    tally = run(make_graph(), RenewRequest((sub.id, "gone"), "reauthorizationRequired"))
    assert (tally.reauthorized, tally.renewed, tally.unchanged) == (1, 0, 1)

    fake.inject("reauthorize", 403, body={"error": {"code": "Forbidden", "message": "x"}})
    tally = run(make_graph(), RenewRequest((sub.id,), "reauthorizationRequired"))
    assert (tally.reauthorized, tally.renewed) == (0, 1)


def test_force_renews_subscriptions_that_are_not_due_and_creates_missing_ones(
    fake: GraphFake, make_graph: Any, logged: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox = ours(fake, hours=40)  # outside the renewal window: a scheduled run leaves it
    before = inbox.expires_at
    desired = (Desired(INBOX, "created", 4230), EVENTS)
    tally = run(make_graph(), RenewRequest(force=True, reason="forced"), desired=desired)
    assert (tally.renewed, tally.created, tally.unchanged) == (1, 1, 0)
    assert fake.count("patch") == 1 and inbox.expires_at > before + timedelta(hours=20)
    (summary,) = logged("run_summary")
    assert (summary["result"], summary["reason"]) == ("ok", "forced")


def test_force_with_subscriptions_renews_only_those(fake: GraphFake, make_graph: Any) -> None:
    inbox, events = ours(fake, hours=40), ours(fake, hours=40, resource=EVENTS.resource)
    kept = inbox.expires_at
    request = RenewRequest(force=True, subscriptions=("users/u1/EVENTS",))
    tally = run(make_graph(), request, desired=(Desired(INBOX, "created", 4230), EVENTS))
    assert (tally.renewed, tally.unchanged) == (1, 1)
    assert inbox.expires_at == kept and events.expires_at > kept


def test_unmanaged_subscriptions_are_reported_not_touched(
    fake: GraphFake, make_graph: Any, caplog: pytest.LogCaptureFixture, logged: Any
) -> None:
    ours(fake)
    stray = ours(fake, resource="/users/u1/contacts")
    tally = run(make_graph())
    assert (tally.unchanged, tally.unmanaged) == (1, 1)
    assert stray in fake.live()
    (line,) = logged("unmanaged_subscriptions")
    assert line == {"event": "unmanaged_subscriptions", "provider": "graph"}
    (warning,) = [r for r in caplog.records if getattr(r, "json_fields", None) is line]
    assert warning.levelno == logging.WARNING and "/users/u1/contacts" in warning.getMessage()


@pytest.mark.parametrize(
    ("error", "event"),
    [
        (TerminalError("secret graph-client-id missing", code="secret_missing"), "config_error"),
        (TerminalError("refused", code="invalid_client", status=401), "needs_reauth"),
        (TerminalError("refused", code="invalid_request", status=400), "needs_reauth"),
        (TerminalError("forbidden", code="Forbidden", status=403), "subscription_failed"),
        (TerminalError("odd", code="invalid_client", status=403), "subscription_failed"),
    ],
)
def test_terminal_failures_say_what_to_fix_and_are_acknowledged(
    caplog: pytest.LogCaptureFixture, logged: Any, error: TerminalError, event: str
) -> None:
    caplog.set_level(logging.INFO)
    tally = run(Failing(error))
    assert tally.failed == 1 and tally.errors == [error]
    (line,) = logged(event)
    assert line == {"event": event, "provider": "graph", "error_code": error.code}
    (record,) = [r for r in caplog.records if getattr(r, "json_fields", None) is line]
    assert record.levelno == logging.ERROR and "a person must act" in record.getMessage()
    (summary,) = logged("run_summary")
    assert (summary["result"], summary["failed"]) == ("failed", 1)
    fed = feeds(written(caplog.records), entry_point=ENTRY)
    assert fed.pop("keepalive_needs_reauth", 0) == (event == "needs_reauth")
    assert fed == ONE_RUN_FAILED


def test_a_transient_failure_is_reported_then_raised(
    caplog: pytest.LogCaptureFixture, logged: Any
) -> None:
    caplog.set_level(logging.INFO)
    error = TransientError("GET /v1.0/subscriptions: HTTP 503", code="http_503", status=503)
    with pytest.raises(TransientError) as raised:
        run(Failing(error))
    assert raised.value is error
    (summary,) = logged("run_summary")
    assert (summary["result"], summary["failed"]) == ("failed", 1)
    assert "failed transiently" in caplog.text
    out = written(caplog.records)
    assert feeds(out, entry_point=ENTRY) == ONE_RUN_FAILED
    assert alerts(out, entry_point=ENTRY) == {"failing[0]"}


def test_one_failed_step_does_not_stop_the_others(fake: GraphFake, make_graph: Any) -> None:
    events = Desired("/users/u1/events", "created", 4230)
    fake.inject("create", 403, body={"error": {"code": "Forbidden", "message": "no"}})
    tally = run(make_graph(), desired=(Desired(INBOX, "created", 4230), events))
    assert (tally.created, tally.failed) == (1, 1)
    assert [s.resource for s in fake.live()] == ["/users/u1/events"]


def test_summary_carries_every_counter(caplog: pytest.LogCaptureFixture, logged: Any) -> None:
    caplog.set_level(logging.INFO)
    soon = datetime.now(UTC) + timedelta(minutes=90)
    tally = Tally(created=1, renewed=2, recreated=3, deleted=4, unchanged=5, reauthorized=6)
    tally.unmanaged, tally.expiries = 7, [soon + timedelta(hours=1), soon]
    report(settings(), tally, "test", Meter(lambda: 3))
    (summary,) = logged("run_summary")
    duration = summary.pop("duration_seconds")
    assert summary == {
        "event": "run_summary",
        "provider": "graph",
        "result": "ok",
        "reason": "test",
        "desired": 1,
        "created": 1,
        "renewed": 2,
        "recreated": 3,
        "deleted": 4,
        "unchanged": 5,
        "reauthorized": 6,
        "unmanaged": 7,
        "failed": 0,
        "earliest_expiry": soon.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "earliest_expiry_in_minutes": 89,
        "secret_reads": 0,
    }
    assert 0 <= duration < 1


# --- a run that stalls past its lease (shared.lock fencing) ----------------------------------


class Lease:
    """The reconciler's lock without a bucket: taken at once; ``short`` once the lease has
    run short (the run stalled), from then on every fence raises as LeaseLock's does."""

    def __init__(self) -> None:
        self.short = False
        self.fenced: list[str] = []

    def __call__(self, bucket: Any, name: str, **kwargs: Any) -> Lease:
        return self  # stands in for the LeaseLock class: the run's lock is this object

    def acquire(self, wait: float) -> bool:
        return True

    def release(self) -> None:
        pass

    def fence(self, step: str) -> None:
        self.fenced.append(step)
        if self.short:
            raise LeaseLost(f"lease ran short before {step}", code="lease_lost")


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch) -> Lease:
    found = Lease()
    monkeypatch.setattr(lock, "LeaseLock", found)  # reconcile imports it when it runs
    monkeypatch.setattr(gcs, "storage_client", lambda: SimpleNamespace(bucket=lambda name: None))
    return found


EVENTS = Desired("/users/u1/events", "created", 4230)


def test_creating_and_deleting_are_fenced(fake: GraphFake, make_graph: Any, lease: Lease) -> None:
    ours(fake, hours=20)
    duplicate = ours(fake, hours=10)
    tally = run(make_graph(), state_bucket="b", desired=(Desired(INBOX, "created", 4230), EVENTS))
    assert (tally.renewed, tally.deleted, tally.created) == (1, 1, 1)
    assert lease.fenced == [
        f"deleting subscription {duplicate.id} for created on {INBOX}",
        "creating a subscription for created on /users/u1/events",
    ]


def test_a_run_whose_lease_ran_short_creates_nothing_more(
    fake: GraphFake, make_graph: Any, lease: Lease, caplog: pytest.LogCaptureFixture, logged: Any
) -> None:
    """A stalled reconciler may have been overtaken: a create of its would duplicate the
    other run's. It stops at the first fenced step, reports failed and raises (transient)."""
    caplog.set_level(logging.INFO)
    lease.short = True
    with pytest.raises(LeaseLost):
        run(make_graph(), state_bucket="b", desired=(Desired(INBOX, "created", 4230), EVENTS))
    assert fake.count("create") == 0 and fake.live() == []
    assert len(lease.fenced) == 1  # the second create was not even tried
    (summary,) = logged("run_summary")
    assert (summary["result"], summary["created"], summary["failed"]) == ("failed", 0, 1)
