"""graph_webhook_renew under concurrency and faults: deliveries of the reconciler trigger
arriving together (schedule, lifecycle events, Pub/Sub duplicates), and Graph failing one
create. It has no per-credential lease; the question is whether overlapping runs leave Graph
with one subscription per desired resource."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cloudevents.conversion import to_structured

from tests.graph_webhook_renew import test_graph_webhook_e2e as graph_e2e
from tests.hardening.hardening_b24 import pubsub_event, summaries

pytestmark = pytest.mark.e2e

# The Graph end-to-end tests' fixtures (the Graph fake, secrets, topics and the notify function
# serving the validation handshake), registered here under their own names.
world = graph_e2e.world  # module-scoped: one notify function for these tests
GraphWorld = graph_e2e.GraphWorld
INBOX = graph_e2e.INBOX
run_reconciler = graph_e2e.run_reconciler


@pytest.fixture
def graph(world: GraphWorld) -> GraphWorld:
    """The module's world with the fake emptied (as the Graph tests' own fixture does)."""
    fake = world.fake
    with fake.lock:
        fake.subscriptions.clear()
        fake.validations.clear()
    fake.reset_observations()
    fake.latency = 0.0
    return world


def test_overlapping_reconciler_runs_create_each_subscription_once(
    graph: GraphWorld, serve_function
) -> None:
    graph.fake.latency = 0.2  # Graph round trips, so runs overlap as they would in production
    server = serve_function(
        "graph_webhook_renew",
        "graph_webhook_renew",
        signature_type="cloudevent",
        env={**graph.env(), "THREADS": "16"},
    )
    gate = threading.Barrier(10)

    def deliver(_: int) -> int:
        headers, body = to_structured(pubsub_event({}))
        gate.wait(timeout=30)
        return requests.post(server.url, headers=dict(headers), data=body, timeout=120).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(deliver, range(10)))
    graph.fake.latency = 0.0
    assert statuses == [200] * 10
    assert len(summaries(server.log_text())) == 10
    # Counts only: a subscription's repr carries its clientState, which must not be printed.
    live = sum(1 for s in graph.fake.live() if s.resource == INBOX)
    assert live == 1, f"{live} live subscriptions for one desired resource"
    creates = graph.fake.count("create")
    assert creates == 1


def test_overlapping_runs_converge_on_the_next_run(
    graph: GraphWorld, serve_function, monkeypatch, capsys
) -> None:
    """Whatever overlapping runs did, one more run leaves exactly one subscription."""
    graph.fake.latency = 0.2
    server = serve_function(
        "graph_webhook_renew",
        "graph_webhook_renew",
        signature_type="cloudevent",
        env={**graph.env(), "THREADS": "16"},
    )
    gate = threading.Barrier(10)

    def deliver(_: int) -> int:
        headers, body = to_structured(pubsub_event({}))
        gate.wait(timeout=30)
        return requests.post(server.url, headers=dict(headers), data=body, timeout=120).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(deliver, range(10)))
    graph.fake.latency = 0.0
    run = run_reconciler(monkeypatch, capsys, graph)
    assert run.status == 200
    live = [s for s in graph.fake.live() if s.resource == INBOX]
    count = len(live)
    assert count == 1
    ours = live[0].client_state == graph.client_state
    assert ours, "the subscription left does not carry our clientState"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_failed_create_is_retried_by_pubsub_and_then_created_once(
    graph: GraphWorld, monkeypatch, capsys, status: int
) -> None:
    graph.fake.inject("create", status, count=10)  # every attempt of this run
    first = run_reconciler(monkeypatch, capsys, graph, HTTP_TIMEOUT_SECONDS="2")
    assert first.status >= 500  # transient: Pub/Sub delivers the trigger again
    none_live = not graph.fake.live()
    assert none_live
    graph.fake.reset_observations()
    second = run_reconciler(monkeypatch, capsys, graph)
    assert second.status == 200 and second.summary["created"] == 1
    live_count = len(graph.fake.live())
    assert live_count == 1
