"""graph_api against the Graph fake, in-process: token caching, 401 recovery, paging guard;
and its two small decisions, the token lifetime and Graph's error as a typed error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from graph_api import TOKEN_SKEW, AppCredentials, AppToken, graph_error

from shared import clock
from shared.errors import TerminalError, TransientError
from tests.canned_http import CannedHttp, canned

DEADLINE = float("inf")


def test_token_is_reused_until_shortly_before_it_expires(fake, make_graph, monkeypatch) -> None:
    graph = make_graph()
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


def test_revoked_token_gets_one_fresh_retry(fake, make_graph) -> None:
    graph = make_graph()
    graph.list_subscriptions(deadline=DEADLINE)
    with fake.lock:
        fake.tokens.clear()  # Graph no longer accepts the cached token
    assert graph.list_subscriptions(deadline=DEADLINE) == []
    assert fake.count("token") == 2


def test_wrong_client_secret_is_terminal(make_graph) -> None:
    graph = make_graph(secret="not-the-secret")
    with pytest.raises(TerminalError) as caught:
        graph.list_subscriptions(deadline=DEADLINE)
    assert caught.value.code == "invalid_client"
    assert "not-the-secret" not in str(caught.value)


def test_next_link_to_another_host_is_not_followed(fake, make_graph) -> None:
    graph = make_graph()
    for _ in range(3):
        fake.add(resource="/me/messages", notification_url="https://x.test/")
    fake.page_size = 1
    graph.api_url = graph.api_url.replace("127.0.0.1", "localhost")  # nextLinks name 127.0.0.1
    with pytest.raises(TerminalError, match="another host"):
        graph.list_subscriptions(deadline=DEADLINE)
    assert fake.count("list") == 1


def test_renew_delete_reauthorize_on_a_gone_subscription_report_it(fake, make_graph) -> None:
    graph = make_graph()
    gone = fake.add(resource="/me/messages", notification_url="https://x.test/")
    fake.advance(timedelta(days=3))  # expired: Graph deleted it
    until = datetime.now(UTC) + timedelta(days=4)
    assert graph.renew(gone.id, until, deadline=DEADLINE) is None
    assert graph.delete(gone.id, deadline=DEADLINE) is False
    assert graph.reauthorize(gone.id, deadline=DEADLINE) is False


def test_fake_refuses_lifetimes_above_the_maximum_and_raises_short_ones(fake, make_graph) -> None:
    graph = make_graph()
    sub = fake.add(resource="/me/messages", notification_url="https://x.test/")
    now = datetime.now(UTC)
    with pytest.raises(TerminalError, match="4230 minutes"):
        graph.renew(sub.id, now + timedelta(minutes=4300), deadline=DEADLINE)
    renewed = graph.renew(sub.id, now + timedelta(minutes=5), deadline=DEADLINE)
    assert renewed is not None and renewed.expires_at is not None
    assert renewed.expires_at - now >= timedelta(minutes=44)


@pytest.mark.parametrize(
    ("expiry", "seconds"),
    [
        ({"expires_in": 3600}, 3600),
        ({"expires_in": "1800"}, 1800),
        ({}, 3599),
        ({"expires_in": None}, 3599),
        ({"expires_in": "soon"}, 3599),
        ({"expires_in": [60]}, 3599),
        # Since the shared parser (shared.oauth.parse_expiry): no lifetime, not a short one.
        ({"expires_in": 0}, 3599),
        ({"expires_in": -60}, 3599),
        ({"expires_in": True}, 3599),
    ],
)
def test_token_lifetime_falls_back_to_an_hour(monkeypatch, expiry, seconds) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(clock, "now", lambda: now)
    body = {"access_token": "graph-at-123456", **expiry}
    http: Any = CannedHttp(canned(200, body))
    token = AppToken(http, "https://login.test", lambda: AppCredentials("t", "c", "s"))
    assert token.get() == "graph-at-123456"
    assert token._valid_until == now + timedelta(seconds=seconds) - TOKEN_SKEW


def answer(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    return response


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, TerminalError), (403, TerminalError), (404, TerminalError), (408, TransientError)]
    + [(s, TransientError) for s in (425, 429, 500, 502, 503, 504, 507)]
    # Graph's own (GRAPH_TERMINAL_STATUSES): a conflict, a feature Graph does not implement.
    + [(409, TerminalError), (501, TerminalError)],
)
def test_graph_error_is_terminal_for_4xx_and_transient_otherwise(status, kind) -> None:
    error = graph_error(answer(status, b'{"error": {"code": "Nope", "message": "m"}}'), "GET x")
    assert type(error) is kind
    assert (error.code, error.status) == ("Nope", status)
    assert str(error) == f"GET x: HTTP {status} Nope (m)"


def test_graph_error_without_graphs_error_body_names_the_status() -> None:
    error = graph_error(answer(502, b"<html>bad gateway</html>"), "GET x")
    assert isinstance(error, TransientError) and error.code == "http_502"
    assert str(error) == "GET x: HTTP 502 http_502"
