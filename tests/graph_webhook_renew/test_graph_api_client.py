"""graph_api against the Graph fake, in-process: token caching, 401 recovery, paging guard."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cli._functions import use_function_folder
from devtools.fakes.graph import GraphFake
from shared import clock
from shared.errors import TerminalError
from shared.http import HttpClient, RetryPolicy

use_function_folder("graph_webhook_renew")

from graph_api import AppCredentials, AppToken, GraphClient  # noqa: E402

DEADLINE = float("inf")


@pytest.fixture
def fake() -> Iterator[GraphFake]:
    server = GraphFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def client(fake: GraphFake, *, secret: str | None = None) -> GraphClient:
    reads: list[int] = []

    def credentials() -> AppCredentials:
        reads.append(1)
        return AppCredentials(fake.tenant_id, fake.client_id, secret or fake.client_secret)

    http = HttpClient(timeout=5, retry=RetryPolicy(attempts=2, base_delay=0.01))
    graph = GraphClient(http, fake.url, AppToken(http, fake.url, credentials))
    graph.credential_reads = reads
    return graph


def test_token_is_reused_until_shortly_before_it_expires(fake, monkeypatch) -> None:
    graph = client(fake)
    graph.list_subscriptions(deadline=DEADLINE)
    graph.list_subscriptions(deadline=DEADLINE)
    assert fake.count("token") == 1
    assert len(graph.credential_reads) == 1

    # 3599 s lifetime, renewed 5 minutes early.
    later = datetime.now(UTC) + timedelta(minutes=56)
    monkeypatch.setattr(clock, "now", lambda: later)
    graph.list_subscriptions(deadline=DEADLINE)
    assert fake.count("token") == 2
    assert len(graph.credential_reads) == 2  # a rotated client secret is picked up here


def test_revoked_token_gets_one_fresh_retry(fake) -> None:
    graph = client(fake)
    graph.list_subscriptions(deadline=DEADLINE)
    with fake.lock:
        fake.tokens.clear()  # Graph no longer accepts the cached token
    assert graph.list_subscriptions(deadline=DEADLINE) == []
    assert fake.count("token") == 2


def test_wrong_client_secret_is_terminal(fake) -> None:
    graph = client(fake, secret="not-the-secret")
    with pytest.raises(TerminalError) as caught:
        graph.list_subscriptions(deadline=DEADLINE)
    assert caught.value.code == "invalid_client"
    assert "not-the-secret" not in str(caught.value)


def test_next_link_to_another_host_is_not_followed(fake) -> None:
    graph = client(fake)
    for _ in range(3):
        fake.add(resource="/me/messages", notification_url="https://x.test/")
    fake.page_size = 1
    graph.api_url = graph.api_url.replace("127.0.0.1", "localhost")  # nextLinks name 127.0.0.1
    with pytest.raises(TerminalError, match="another host"):
        graph.list_subscriptions(deadline=DEADLINE)
    assert fake.count("list") == 1


def test_renew_delete_reauthorize_on_a_gone_subscription_report_it(fake) -> None:
    graph = client(fake)
    gone = fake.add(resource="/me/messages", notification_url="https://x.test/")
    fake.advance(timedelta(days=3))  # expired: Graph deleted it
    until = datetime.now(UTC) + timedelta(days=4)
    assert graph.renew(gone.id, until, deadline=DEADLINE) is None
    assert graph.delete(gone.id, deadline=DEADLINE) is False
    assert graph.reauthorize(gone.id, deadline=DEADLINE) is False


def test_fake_refuses_lifetimes_above_the_maximum_and_raises_short_ones(fake) -> None:
    graph = client(fake)
    sub = fake.add(resource="/me/messages", notification_url="https://x.test/")
    now = datetime.now(UTC)
    with pytest.raises(TerminalError, match="4230 minutes"):
        graph.renew(sub.id, now + timedelta(minutes=4300), deadline=DEADLINE)
    renewed = graph.renew(sub.id, now + timedelta(minutes=5), deadline=DEADLINE)
    assert renewed is not None and renewed.expires_at is not None
    assert renewed.expires_at - now >= timedelta(minutes=44)
