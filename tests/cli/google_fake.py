"""A small stand-in for the two Google REST APIs the CLI reads that have no local emulator,
built from their documented shapes:

- Cloud Scheduler v1: ``GET /v1/projects/{p}/locations/{l}/jobs`` answers
  ``{"jobs": [Job...], "nextPageToken"}``; a Job has ``name``, ``schedule``, ``timeZone``,
  ``state`` (ENABLED, PAUSED, DISABLED, UPDATE_FAILED), ``lastAttemptTime``, ``scheduleTime``
  (the next run) and ``status`` (google.rpc.Status of the last attempt: ``code``, ``message``).
- Cloud Functions v2: ``GET /v2/projects/{p}/locations/{l}/functions/{f}`` answers a Function
  whose ``serviceConfig.environmentVariables`` is the deployed environment.

Errors use Google's body ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JOBS = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/jobs$")
FUNCTION = re.compile(r"^/v2/projects/([^/]+)/locations/([^/]+)/functions/([^/]+)$")


class GoogleApisFake:
    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.functions: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.refuse: tuple[int, str] | None = None  # answer every request with this error
        self.max_page = 500  # the most jobs one page holds
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append((self.path, dict(self.headers.items())))
                status, body = fake.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GoogleApisFake:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what the APIs hold ---------------------------------------------------------------

    def add_job(self, project: str, location: str, job_id: str, **fields: Any) -> None:
        job = {
            "name": f"projects/{project}/locations/{location}/jobs/{job_id}",
            "pubsubTarget": {"topicName": f"projects/{project}/topics/x", "data": "e30="},
            "userUpdateTime": "2026-01-01T00:00:00Z",
            **fields,
        }
        self.jobs.setdefault((project, location), []).append(job)

    def add_function(
        self, project: str, location: str, name: str, environment: dict[str, str]
    ) -> None:
        self.functions[(project, location, name)] = {
            "name": f"projects/{project}/locations/{location}/functions/{name}",
            "state": "ACTIVE",
            "environment": "GEN_2",
            "serviceConfig": {"environmentVariables": environment, "timeoutSeconds": 540},
        }

    # -- answers ---------------------------------------------------------------------------

    def answer(self, raw_path: str) -> tuple[int, dict[str, Any]]:
        if self.refuse is not None:
            return error(*self.refuse)
        url = urlsplit(raw_path)
        query = parse_qs(url.query)
        if match := JOBS.match(url.path):
            jobs = self.jobs.get((match[1], match[2]), [])
            size = min(int((query.get("pageSize") or ["500"])[0]), self.max_page)
            start = int((query.get("pageToken") or ["0"])[0])
            page: dict[str, Any] = {"jobs": jobs[start : start + size]}
            if start + size < len(jobs):
                page["nextPageToken"] = str(start + size)
            return 200, page
        if match := FUNCTION.match(url.path):
            function = self.functions.get((match[1], match[2], match[3]))
            if function is None:
                return error(404, f"Resource '{url.path[4:]}' was not found")
            return 200, function
        return error(404, "unknown path")


def error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    names = {403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    body = {"error": {"code": status, "message": message, "status": names.get(status, "")}}
    return status, body
