"""A small threaded HTTP server that provider fakes build on.

A fake registers routes; the base adds what every test needs: a call log, injected faults
(the next N calls of a route answer a given status, optionally after a delay), fixed latency,
and the highest number of requests it saw in flight at once. Tests in the same process use the
Python API; a demo in another process uses the ``/_admin/*`` endpoints.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    match: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8")).items()}


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body).encode("utf-8")


@dataclass
class Fault:
    route: str
    status: int
    count: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Handler = Callable[[Request], Response]

# Every credential a fake issued or accepted in this process. The test suite's leak scan
# fails if any of them shows up in a log line or captured output.
ISSUED_SECRETS: set[str] = set()


def issued(value: str) -> str:
    """Record ``value`` as a credential (see ISSUED_SECRETS) and return it."""
    ISSUED_SECRETS.add(value)
    return value


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is part of the tests, not a fake failure.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """Subclasses call ``route(method, pattern, handler)``; patterns use ``{name}`` segments."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self._faults: list[Fault] = []
        self.calls: list[tuple[str, str]] = []
        self.latency = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.RLock()
        self._server = _QuietServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # --- routing ------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler, name: str | None = None) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), name or pattern, handler))

    def inject(
        self,
        route: str,
        status: int,
        count: int = 1,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """The next ``count`` calls of ``route`` (its name or pattern) answer ``status``."""
        with self.lock:
            self._faults.append(Fault(route, status, count, body, headers or {}, delay))

    def count(self, route: str) -> int:
        with self.lock:
            return sum(1 for _, name in self.calls if name == route)

    def reset_observations(self) -> None:
        with self.lock:
            self.calls.clear()
            self._faults.clear()
            self.max_in_flight = 0

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    # --- dispatch -----------------------------------------------------------------------

    def _take_fault(self, name: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.route == name and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def _admin(self, request: Request) -> Response:
        if request.path == "/_admin/calls":
            with self.lock:
                return Response(
                    body={"calls": [n for _, n in self.calls], "max_in_flight": self.max_in_flight}
                )
        if request.path == "/_admin/faults" and request.method == "POST":
            spec = request.json()
            self.inject(
                spec["route"],
                int(spec["status"]),
                int(spec.get("count", 1)),
                body=spec.get("body"),
                headers=spec.get("headers"),
                delay=float(spec.get("delay", 0)),
            )
            return Response(status=204)
        if request.path == "/_admin/latency" and request.method == "POST":
            self.latency = float(request.json()["seconds"])
            return Response(status=204)
        return self.admin(request)

    def admin(self, request: Request) -> Response:
        """Fake-specific admin endpoints; override to add more."""
        return Response(status=404, body={"error": "unknown admin endpoint"})

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_admin/"):
            return self._admin(request)
        for method, regex, name, handler in self._routes:
            found = regex.match(request.path)
            if method != request.method or not found:
                continue
            request.match = found.groupdict()
            with self.lock:
                self.calls.append((request.method, name))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.latency:
                    time.sleep(self.latency)
                fault = self._take_fault(name)
                if fault is not None:
                    if fault.delay:
                        time.sleep(fault.delay)
                    return Response(fault.status, fault.body, dict(fault.headers))
                return handler(request)
            finally:
                with self.lock:
                    self.in_flight -= 1
        return Response(status=404, body={"error": "not_found", "path": request.path})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # request lines carry secrets in query strings: never print them

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                try:
                    response = fake.dispatch(request)
                except Exception as error:  # noqa: BLE001 - a fake answers 500 like a server
                    response = Response(500, {"error": "fake_crashed", "detail": str(error)})
                data = response.encode()
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return _Handler
