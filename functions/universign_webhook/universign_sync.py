"""One transaction synced, for either entry point: read it from Universign (universign_api),
fold it into its document (universign_state, with a generation precondition), then the follow-up:
publish the status change, archive the signed documents (universign_archive) and keep the
polling index right. What to publish, whether to archive and the index are universign_plan's.

Every sync, good or failed, also leaves its sync log entry (the history entry it added to the
document, with what changed and Universign's response time) as an object of its own
(universign_state.StateStore.append_log).
"""

from __future__ import annotations

import logging
import time
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
    track: bool = False,
    reference: str | None = None,
) -> SyncResult:
    """Read the transaction from Universign and fold it into its document; then publish the
    status change, archive signed documents and keep the polling index right. ``fence`` (a
    webhook's event claim) runs before every document write and stops the sync by raising.

    ``track`` (an app asked for it): a transaction Universign could not be asked about now is
    tracked all the same, so the poll keeps trying and the request is never lost; one
    Universign does not know is not. ``reference`` replaces the stored one."""
    log = logging.getLogger(settings.entry_point)
    observed_at = clock.now()
    asked = time.monotonic()
    try:
        transaction = clients.api.get_transaction(transaction_id, deadline=deadline)
    except NotFound:
        doc = _record_failure(
            settings,
            clients,
            transaction_id,
            source,
            "Universign answered 404",
            fence,
            response_ms=_since(asked),
        )
        if doc is None:
            log.warning("Universign does not know %s; not tracking it", transaction_id)
            return SyncResult(transaction_id, "untracked")
        return SyncResult(transaction_id, "not_found", doc.get("status"))
    except ProviderError as error:
        _record_failure(
            settings,
            clients,
            transaction_id,
            source,
            str(error),
            fence,
            response_ms=_since(asked),
            create=(reference,) if track else None,
        )
        raise
    response_ms = _since(asked)

    tracked_at = clock.now()
    created_marker: list[str] = []

    def apply(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, Change | None]:
        if doc is None:
            doc = new_document(transaction_id, tracked_at)
            _marker_first(clients, doc, created_marker)
        change = apply_observation(
            doc,
            transaction,
            observed_at=observed_at,
            now=clock.now(),
            source=source,
            refusal_hint=refusal_hint,
            refusal_states=settings.refusal_states,
            history_size=settings.history_size,
            reference=reference,
            external_codes=settings.external_status_map,
            response_ms=response_ms,
        )
        return doc, change

    doc, _, change = clients.state.update(transaction_id, apply, fence=fence)
    assert doc is not None
    _tidy_markers(clients, doc, created_marker)
    _append_log(settings, clients, doc)
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
    *,
    response_ms: int,
    create: tuple[str | None] | None = None,
) -> dict[str, Any] | None:
    """Record the failure on the document; a document that does not exist is left so, unless
    ``create`` (the reference of a ``track`` request) says to start tracking it now."""
    log = logging.getLogger(settings.entry_point)
    tracked_at = clock.now()
    created_marker: list[str] = []

    def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        if doc is None and create is None:
            return None, None
        if doc is None:
            assert create is not None
            doc = new_document(transaction_id, tracked_at, create[0])
            _marker_first(clients, doc, created_marker)
        elif create is not None and create[0] is not None:
            doc["reference"] = create[0]
        record_failure(
            doc,
            now=clock.now(),
            source=source,
            error=error,
            history_size=settings.history_size,
            response_ms=response_ms,
        )
        return doc, None

    try:
        doc, _, _ = clients.state.update(transaction_id, change, fence=fence)
    except (Conflict, gexc.GoogleAPIError) as failure:
        log.warning("could not record the failure on %s: %s", transaction_id, failure)
        return None
    if doc is not None:
        _tidy_markers(clients, doc, created_marker)
        _append_log(settings, clients, doc)
    return doc


def register_track(
    clients: Clients, transaction_id: str, reference: str | None
) -> dict[str, Any] | None:
    """Track a transaction without asking Universign now (it is failing, or the run is out of
    time): the document and its pending marker, so the poll syncs it; the reference kept."""
    tracked_at = clock.now()
    created_marker: list[str] = []

    def change(doc: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        if doc is None:
            doc = new_document(transaction_id, tracked_at, reference)
            _marker_first(clients, doc, created_marker)
            return doc, None
        if reference is not None and doc.get("reference") != reference:
            doc["reference"] = reference
            return doc, None
        return None, None

    doc, _, _ = clients.state.update(transaction_id, change)
    if doc is not None:
        _tidy_markers(clients, doc, created_marker)
    return doc


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _marker_first(clients: Clients, doc: dict[str, Any], created: list[str]) -> None:
    """Marker before document: a crash leaves an extra marker, never a missing one."""
    name = pending_name(doc)
    if name not in created:
        clients.state.ensure(name)
        created.append(name)


def _tidy_markers(clients: Clients, doc: dict[str, Any], created: list[str]) -> None:
    for name in created:
        if name != pending_name(doc):
            clients.state.remove(name)  # another writer created the document first


def _append_log(settings: Settings, clients: Clients, doc: dict[str, Any]) -> None:
    """The sync log entry of the write just made: the history entry it appended."""
    history = doc.get("history") or []
    if not history:
        return
    try:
        clients.state.append_log(doc["transaction_id"], history[-1])
    except gexc.GoogleAPIError as failure:
        # The document keeps the entry in its history; only the complete log misses it.
        logging.getLogger(settings.entry_point).warning(
            "could not store the sync log entry of %s: %s", doc["transaction_id"], failure
        )


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
