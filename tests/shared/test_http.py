"""The HTTP client against a local server: retries, Retry-After, timeouts, error kinds, and
error texts that never carry the query string; the one rule for what an HTTP status means."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.fakes.base import FakeServer, Request, Response
from shared.errors import ErrorKind, TerminalError, TransientError
from shared.http import HttpClient, RetryPolicy, status_error, status_kind


class TokenServer(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/token", lambda r: Response(200, {"ok": True}))
        self.route("GET", "/slow", self._slow)

    def _slow(self, request: Request) -> Response:
        import time

        time.sleep(1.0)
        return Response(200, {})


@pytest.fixture
def server() -> Iterator[TokenServer]:
    with TokenServer() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> HttpClient:
    return HttpClient(
        timeout=0.3,
        retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05),
        sleep=sleeps.append,
    )


def test_transient_statuses_are_retried_until_success(server, client, sleeps) -> None:
    server.inject("/token", 503, count=2)
    response = client.request("GET", f"{server.url}/token")
    assert response.status_code == 200
    assert server.count("/token") == 3
    assert len(sleeps) == 2


def test_retry_after_is_honoured_and_capped(server, sleeps) -> None:
    client = HttpClient(
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_retry_after=5), sleep=sleeps.append
    )
    server.inject("/token", 429, count=1, headers={"Retry-After": "3"})
    server.inject("/token", 429, count=1, headers={"Retry-After": "600"})
    assert client.request("GET", f"{server.url}/token").status_code == 200
    assert sleeps == [3.0, 5.0]


def test_exhausted_retries_raise_transient_without_query(server, client) -> None:
    server.inject("/token", 502, count=10)
    with pytest.raises(TransientError) as caught:
        client.request("GET", f"{server.url}/token", params={"client_secret": "hush-123456"})
    assert caught.value.status == 502
    assert "hush-123456" not in str(caught.value)
    assert "client_secret" not in str(caught.value)
    assert server.count("/token") == 4


def test_timeouts_are_transient_and_retried(server, client) -> None:
    with pytest.raises(TransientError) as caught:
        client.request("GET", f"{server.url}/slow?refresh_token=abcdef123")
    assert caught.value.code == "timeout"
    assert "abcdef123" not in str(caught.value)
    # The requests error, whose text holds the full URL, is not chained into the traceback.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_connection_errors_are_transient(client) -> None:
    from devtools.stack import free_port

    with pytest.raises(TransientError) as caught:
        client.request("GET", f"http://127.0.0.1:{free_port()}/x?sig=secretsig123")
    assert caught.value.code == "connection_error"
    assert "secretsig123" not in str(caught.value)


def test_deadline_stops_retrying(server, sleeps) -> None:
    client = HttpClient(
        retry=RetryPolicy(attempts=10, base_delay=5), sleep=sleeps.append, clock=lambda: 100.0
    )
    server.inject("/token", 500, count=10)
    with pytest.raises(TransientError):
        client.request("GET", f"{server.url}/token", deadline=101.0)
    assert server.count("/token") == 1
    assert sleeps == []


def test_client_errors_are_returned_not_retried(server, client) -> None:
    server.inject("/token", 400, count=1, body={"error": "invalid_grant"})
    response = client.request("GET", f"{server.url}/token")
    assert response.status_code == 400
    assert server.count("/token") == 1


# --- one rule for what an HTTP status means ----------------------------------------------------

# Every status a provider may answer that a test pins: (status, kind under the shared rule).
STATUS_RULE = [
    (400, ErrorKind.TERMINAL),
    (401, ErrorKind.TERMINAL),
    (403, ErrorKind.TERMINAL),
    (404, ErrorKind.TERMINAL),
    (408, ErrorKind.TRANSIENT),
    (409, ErrorKind.TERMINAL),
    (410, ErrorKind.TERMINAL),
    (422, ErrorKind.TERMINAL),
    (425, ErrorKind.TRANSIENT),
    (429, ErrorKind.TRANSIENT),
    (499, ErrorKind.TERMINAL),
    (500, ErrorKind.TRANSIENT),
    (501, ErrorKind.TRANSIENT),
    (502, ErrorKind.TRANSIENT),
    (503, ErrorKind.TRANSIENT),
    (504, ErrorKind.TRANSIENT),
    (505, ErrorKind.TRANSIENT),
    (507, ErrorKind.TRANSIENT),
    (599, ErrorKind.TRANSIENT),
    # Answers nobody asked for are no passing condition either.
    (201, ErrorKind.TERMINAL),
    (204, ErrorKind.TERMINAL),
    (301, ErrorKind.TERMINAL),
    (304, ErrorKind.TERMINAL),
]


@pytest.mark.parametrize(("status", "kind"), STATUS_RULE)
def test_status_kind_is_one_rule(status: int, kind: ErrorKind) -> None:
    assert status_kind(status) is kind


def test_a_provider_moves_single_statuses_and_terminal_wins() -> None:
    assert status_kind(409, transient={409}) is ErrorKind.TRANSIENT
    assert status_kind(501, terminal={501}) is ErrorKind.TERMINAL
    assert status_kind(503, transient={503}, terminal={503}) is ErrorKind.TERMINAL
    # Only the named statuses move.
    assert status_kind(410, transient={409}) is ErrorKind.TERMINAL
    assert status_kind(502, terminal={501}) is ErrorKind.TRANSIENT


@pytest.mark.parametrize(("status", "kind"), STATUS_RULE)
def test_status_error_is_the_error_of_that_kind(status: int, kind: ErrorKind) -> None:
    error = status_error("GET x: HTTP", status=status)
    assert type(error) is (TerminalError if kind is ErrorKind.TERMINAL else TransientError)
    assert (str(error), error.code, error.status) == ("GET x: HTTP", f"http_{status}", status)
    assert status_error("m", status=status, code="Nope").code == "Nope"
