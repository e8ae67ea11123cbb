"""One transaction synced, for either entry point: read it from Universign (universign_api),
fold it into its document (universign_state, with a generation precondition), then the follow-up:
publish the status change, archive the signed documents (universign_archive) and keep the
polling index right. What to publish, whether to archive and the index are universign_plan's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from universign_api import NotFound
from universign_archive import archive_documents
from universign_plan import archive_owed, finish_document, publish_now, second_write_needed
from universign_state import (
    Change,
    Conflict,
    Fence,
    apply_observation,
    needs_polling,
    new_document,
    pending_name,
    recheck_name,
    record_failure,
)

from shared import clock, logs
from shared.errors import ProviderError

if TYPE_CHECKING:
    # Types only: main imports this module, and its Settings read the environment.
    from main import Clients, Settings

# Lines go to main.py's logger, which logs.setup names after the entry point being served
# (settings.entry_point), so every line keeps its "logger" whichever module writes it.


@dataclass
class SyncResult:
    transaction_id: str
    result: str  # synced | not_found | untracked
    status: str | None = None
    change: Change | None = None
    published: int = 0
    archived: int = 0


def sync_transaction(
    settings: Settings,
    clients: Clients,
    transaction_id: str,
    *,
    source: str,
    refusal_hint: dict[str, str] | None = None,
    deadline: float | None = None,
    fence: Fence | None = None,
) -> SyncResult:
    """Read the transaction from Universign and fold it into its document; then publish the
    status change, archive signed documents and keep the polling index right. ``fence`` (a
    webhook's event claim) runs before every document write and stops the sync by raising."""
    log = logging.getLogger(settings.entry_point)
    observed_at = clock.now()
    try:
        transaction = clients.api.get_transaction(transaction_id, deadline=deadline)
    except NotFound:
        doc = _record_failure(
            settings, clients, transaction_id, source, "Universign answered 404", fence
        )
        if doc is None:
            log.warning("Universign does not know %s; not tracking it", transaction_id)
            return SyncResult(transaction_id, "untracked")
        return SyncResult(transaction_id, "not_found", doc.get("status"))
    except ProviderError as error:
        _record_failure(settings, clients, transaction_id, source, str(error), fence)
        raise

    tracked_at = clock.now()
    created_marker: list[str] = []

    def apply(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Change | None]:
        if doc is None:
            doc = new_document(transaction_id, tracked_at)
            name = pending_name(doc)
            if name not in created_marker:
                # Marker before document: a crash leaves an extra marker, never a missing one.
                clients.state.ensure(name)
                created_marker.append(name)
        change = apply_observation(
            doc,
            transaction,
            observed_at=observed_at,
            now=clock.now(),
            source=source,
            refusal_hint=refusal_hint,
            refusal_states=settings.refusal_states,
            history_size=settings.history_size,
        )
        return doc, change

    doc, _, change = clients.state.update(transaction_id, apply, fence=fence)
    assert doc is not None
    for name in created_marker:
        if name != pending_name(doc):
            clients.state.remove(name)  # another writer created the document first
    if change is not None:
        log.info(
            "Universign %s: %s -> %s (%s)",
            transaction_id,
            change.previous,
            change.status,
            change.universign_state,
            extra=logs.fields(event="status_change", provider="universign", **change.message()),
        )
    result = SyncResult(transaction_id, "synced", doc.get("status"), change)
    _follow_up(settings, clients, doc, result, source=source, deadline=deadline, fence=fence)
    return result


def _record_failure(
    settings: Settings,
    clients: Clients,
    transaction_id: str,
    source: str,
    error: str,
    fence: Fence | None,
) -> dict[str, Any] | None:
    log = logging.getLogger(settings.entry_point)

    def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        if doc is None:
            return None, None
        record_failure(
            doc, now=clock.now(), source=source, error=error, history_size=settings.history_size
        )
        return doc, None

    try:
        doc, _, _ = clients.state.update(transaction_id, change, fence=fence)
    except (Conflict, gexc.GoogleAPIError) as failure:
        log.warning("could not record the failure on %s: %s", transaction_id, failure)
        return None
    return doc


def _follow_up(
    settings: Settings,
    clients: Clients,
    doc: dict[str, Any],
    result: SyncResult,
    *,
    source: str,
    deadline: float | None,
    fence: Fence | None,
) -> None:
    """Status actions and bookkeeping after a sync: publish owed notifications, archive the
    signed documents, mark the final re-check done and move the index markers."""
    log = logging.getLogger(settings.entry_point)
    now = clock.now()
    own = f"{doc['transaction_id']}:{result.change.status}" if result.change else None
    published: list[str] = []
    for entry in doc.get("outbox") or []:
        if not publish_now(entry, own=own, now=now, retry_after=settings.outbox_retry_after):
            continue
        try:
            clients.publish(entry["message"])
        except Exception as error:  # noqa: BLE001 - kept in the outbox; the poll tries again
            log.warning(
                "could not publish the status change of %s: %s", doc["transaction_id"], error
            )
            continue
        published.append(str(entry.get("id")))
    result.published = len(published)

    archive_update: dict[str, Any] | None = None
    if archive_owed(doc):
        archive_update = archive_documents(settings, clients, doc, deadline)
        result.archived = sum(1 for o in archive_update["objects"].values() if o.get("new"))

    def finish(current: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
        return finish_document(
            current, published=published, archive_update=archive_update, source=source
        )

    index_before = doc.get("index", "pending")
    if not second_write_needed(
        doc, published=bool(published), archiving=archive_update is not None, source=source
    ):
        return  # the common case, a sync that changed nothing: no second write
    if index_before != "pending" and needs_polling(doc):
        clients.state.ensure(pending_name(doc))  # marker first, as always
    final, _, target = clients.state.update(doc["transaction_id"], finish, fence=fence)
    if final is None or target is None or target == index_before:
        return
    # Markers follow the committed document; a crash here leaves the pending marker, which the
    # poll then tidies (see universign_poll.run_poll).
    if target == "recheck":
        clients.state.ensure(recheck_name(final, settings.final_recheck))
        clients.state.remove(pending_name(final))
    elif target == "none":
        clients.state.remove(recheck_name(final, settings.final_recheck))
        clients.state.remove(pending_name(final))
