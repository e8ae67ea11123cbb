"""Universign API v1 calls this function makes: read a transaction, download a signed document.

HTTP Basic with the API key as user name and an empty password (``-u KEY:``). 401 means the key
is missing or revoked and 403 that it lacks access: both need a person, so they are terminal.
404 means the transaction (or document) does not exist for this key. 5xx, 429 and network
failures are retried by ``shared.http`` and then surface as TransientError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from shared.errors import TransientError
from shared.http import HttpClient, status_error
from shared.safe_json import loads_untrusted

# States in which Universign serves the signed documents.
DOWNLOADABLE_STATES = frozenset({"completed", "archived"})

# 409 stays transient, as it was before the shared rule (tests/universign_webhook pins it): a
# GET that conflicts can only have met a transaction being changed, which settles.
UNIVERSIGN_TRANSIENT_STATUSES = frozenset({409})


class NotFound(LookupError):
    """Universign does not know this transaction or document."""


@dataclass(frozen=True)
class Download:
    content: bytes
    content_type: str


def raise_for_status(status: int, path: str) -> None:
    """Raise what an answer other than 200 to ``GET path`` means (see the module docstring):
    404 is NotFound; the rest is classed by shared.http.status_kind, with 409 transient."""
    if status == 200:
        return
    if status == 404:
        raise NotFound(path)
    message = (
        f"Universign refused the API key (HTTP {status}) on GET {path}"
        if status in (401, 403)
        else f"Universign answered HTTP {status} on GET {path}"
    )
    raise status_error(message, status=status, transient=UNIVERSIGN_TRANSIENT_STATUSES)


class UniversignApi:
    def __init__(
        self,
        base_url: str,
        http: HttpClient,
        api_key: Callable[[bool], str],
    ) -> None:
        """``api_key(refresh)`` returns the key; ``refresh=True`` re-reads it from its secret
        (it may have been rotated since this instance read it)."""
        self.base_url = base_url.rstrip("/")
        self.http = http
        self._api_key = api_key

    def _get(self, path: str, *, deadline: float | None, accept: str) -> requests.Response:
        url = f"{self.base_url}{path}"
        response = None
        for refresh in (False, True):
            response = self.http.request(
                "GET",
                url,
                auth=(self._api_key(refresh), ""),
                headers={"Accept": accept},
                deadline=deadline,
            )
            if response.status_code != 401:
                break
            response.close()
        assert response is not None
        raise_for_status(response.status_code, path)
        return response

    def get_transaction(
        self, transaction_id: str, *, deadline: float | None = None
    ) -> dict[str, Any]:
        response = self._get(
            f"/v1/transactions/{quote(transaction_id, safe='')}",
            deadline=deadline,
            accept="application/json",
        )
        body = loads_untrusted(
            response.content,
            bad=lambda why: TransientError(
                f"Universign answered 200 with a body that is not usable JSON ({why})",
                code="malformed_response",
            ),
        )
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            raise TransientError(
                "Universign answered 200 without a transaction state", code="malformed_response"
            )
        return body

    def download_document(
        self, transaction_id: str, document_id: str, *, deadline: float | None = None
    ) -> Download:
        """The signed document: the transaction endpoint (60 days after completion) first, then
        the archive endpoint (any time once archived, which can lag completion by minutes)."""
        tx, doc = quote(transaction_id, safe=""), quote(document_id, safe="")
        paths = (
            f"/v1/transactions/{tx}/archive/documents/{doc}/download",
            f"/v1/archives/{tx}/documents/{doc}/download",
        )
        for path in paths:
            try:
                response = self._get(path, deadline=deadline, accept="*/*")
            except NotFound:
                continue
            return Download(
                response.content,
                response.headers.get("Content-Type", "application/octet-stream"),
            )
        raise NotFound(f"document {document_id} of {transaction_id}")
