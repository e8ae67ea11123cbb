"""An HttpClient stand-in for provider calls tested without a server: every request gets the
same canned response and is remembered, so a test can look at what was sent."""

from __future__ import annotations

import json
from typing import Any

import requests


def canned(status: int, body: object) -> requests.Response:
    """A response with ``body``: bytes or text as they are, anything else as JSON."""
    response = requests.Response()
    response.status_code = status
    if isinstance(body, bytes):
        response._content = body
    else:
        response._content = (body if isinstance(body, str) else json.dumps(body)).encode()
    return response


class CannedHttp:
    """Answers every request with one response and remembers what was asked."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.asked: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.asked.append((method, url, kwargs))
        return self.response
