"""Signed documents copied to the archive bucket, each object created at most once.

Called by universign_sync once a transaction is SIGNE and its archive still pending; the
object names come from universign_plan.archive_object_names, the bytes from universign_api.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from universign_api import NotFound
from universign_plan import archive_object_names

from shared.errors import ProviderError
from shared.redact import safe_url

if TYPE_CHECKING:
    # Types only: main imports this module, and its Settings read the environment.
    from main import Clients, Settings

# Lines go to main.py's logger, which logs.setup names after the entry point being served
# (settings.entry_point), so every line keeps its "logger" whichever module writes it.


def archive_documents(
    settings: Settings, clients: Clients, doc: dict[str, Any], deadline: float | None
) -> dict[str, Any]:
    """Copy every signed document to the archive bucket. Each object is created with
    ``if_generation_match=0``: whoever comes second (a racing webhook or poll) gets 412 and
    keeps the first copy, so each document is archived exactly once."""
    log = logging.getLogger(settings.entry_point)
    transaction_id = doc["transaction_id"]
    objects: dict[str, dict[str, Any]] = {}
    error: str | None = None
    for document_id, name in archive_object_names(
        transaction_id, doc.get("documents") or []
    ).items():
        try:
            existing = clients.archive.get_blob(name)
            if existing is not None:
                objects[document_id] = {"name": name, "generation": int(existing.generation)}
                continue
            download = clients.api.download_document(transaction_id, document_id, deadline=deadline)
            blob = clients.archive.blob(name)
            blob.metadata = {
                "universign-transaction": transaction_id,
                "universign-document": document_id,
            }
            try:
                blob.upload_from_string(
                    download.content, content_type=download.content_type, if_generation_match=0
                )
                objects[document_id] = {
                    "name": name,
                    "generation": int(blob.generation),
                    "new": True,
                }
            except gexc.PreconditionFailed:
                existing = clients.archive.get_blob(name)
                if existing is not None:
                    objects[document_id] = {"name": name, "generation": int(existing.generation)}
        except (ProviderError, NotFound, gexc.GoogleAPIError) as failure:
            error = f"{document_id}: {type(failure).__name__}: {failure}"[:300]
            log.warning("archiving %s of %s failed: %s", document_id, transaction_id, error)
            break
    if not doc.get("documents"):
        log.warning("Universign listed no documents for signed transaction %s", transaction_id)
    done = error is None
    if done:
        log.info(
            "archived %d document(s) of %s to %s",
            len(objects),
            transaction_id,
            safe_url(f"gs://{settings.archive_bucket}/universign/{transaction_id}/"),
        )
    return {"status": "done" if done else "pending", "objects": objects, "last_error": error}
