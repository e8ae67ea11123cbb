"""One poll run (main.universign_poll, every 5 minutes): select the work from the index marker
names alone, sync each transaction (universign_sync) until the run's deadline, tidy markers a
crash left behind, and report one ``run_summary`` line.

Due final re-checks come first (one more look an hour after a transaction became final), then
tracked transactions that still need work, oldest first from where the previous poll stopped,
at most ``UNIVERSIGN_POLL_BATCH`` in all. See universign_state for the index.

A ``track`` message on the same topic (``run_track``) syncs the transactions it names instead,
each starting to be tracked with the app's reference; one Universign could not be asked about
is tracked all the same, so the next polls keep trying. It reports its own ``run_summary``
(``trigger`` ``track``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc
from universign_alerts import config_problem, needs_reauth
from universign_plan import RECHECK_SOURCE, Track
from universign_state import (
    PENDING,
    RECHECK,
    Conflict,
    entry_due,
    entry_transaction,
    needs_polling,
    pending_name,
    recheck_name,
)
from universign_sync import register_track, sync_transaction

from shared import clock, logs, runtime
from shared.errors import ProviderError, TerminalError

if TYPE_CHECKING:
    # Types only: main imports this module, and its Settings read the environment.
    from main import Clients, Settings

# Lines go to main.py's logger, which logs.setup names after the entry point being served
# (settings.entry_point), so every line keeps its "logger" whichever module writes it.


@dataclass
class RunSummary:
    """The poll run's counters, logged as its ``run_summary`` line."""

    selected: int = 0
    synced: int = 0
    rechecked: int = 0
    status_changes: int = 0
    published: int = 0
    archived_documents: int = 0
    not_found: int = 0
    untracked: int = 0
    repaired: int = 0
    failed: int = 0
    stopped: str | None = None
    order: list[str] = field(default_factory=list)
    trigger: str = "schedule"
    tracked: int = 0


def select_work(settings: Settings, clients: Clients) -> list[tuple[str, str]]:
    """``(kind, marker name)`` for this run: due re-checks first, then pending transactions in
    marker order (oldest tracked first) starting after the previous poll's cursor and wrapping
    around, at most ``poll_batch`` in all. Only names are listed: no document is read here."""
    batch = settings.poll_batch
    now = clock.now()
    work: list[tuple[str, str]] = []
    for name in clients.state.list_names(RECHECK, start=None, limit=batch):
        due = entry_due(name)
        if due is not None and due > now:
            break  # names sort by due time: the rest are later still
        work.append(("recheck", name))
    remaining = batch - len(work)
    if remaining <= 0:
        return work
    cursor = clients.state.read_cursor()
    first = [
        n
        for n in clients.state.list_names(PENDING, start=cursor, limit=remaining + 1)
        if n != cursor
    ]
    names = first[:remaining]
    if cursor is not None and len(names) < remaining:
        wrapped = clients.state.list_names(PENDING, start=None, limit=remaining - len(names))
        names += [n for n in wrapped if n <= cursor and n not in names]
    work += [("pending", n) for n in names]
    return work


def run_poll(settings: Settings, clients: Clients, *, deadline: float) -> RunSummary:
    log = logging.getLogger(settings.entry_point)
    meter = runtime.Meter(lambda: clients.secrets.reads)
    summary = RunSummary()
    work = select_work(settings, clients)
    summary.selected = len(work)
    seen: set[str] = set()
    last_pending: str | None = None
    consecutive_failures = 0
    for kind, marker in work:
        if time.monotonic() > deadline:
            summary.stopped = "deadline"
            break
        transaction_id = entry_transaction(marker)
        if kind == "pending":
            last_pending = marker
        if transaction_id in seen:
            continue
        seen.add(transaction_id)
        try:
            _poll_one(settings, clients, kind, marker, transaction_id, summary, deadline)
            consecutive_failures = 0
        except TerminalError as error:
            needs_reauth(settings, error)
            summary.failed += 1
            summary.stopped = "api_key_refused"
            break
        except (ProviderError, Conflict, gexc.GoogleAPIError) as error:
            if config_problem(settings, error):
                summary.failed += 1
                summary.stopped = "configuration"
                break
            summary.failed += 1
            consecutive_failures += 1
            log.warning("poll of %s failed: %s", transaction_id, error)
            if consecutive_failures >= 3:
                summary.stopped = "api_unavailable"
                break
    if last_pending is not None:
        clients.state.write_cursor(last_pending)
    report_poll(settings, summary, meter)
    return summary


def run_track(
    settings: Settings, clients: Clients, tracks: list[Track], *, deadline: float
) -> RunSummary:
    """Start tracking (and sync now) each transaction a ``track`` message names.

    The message is acknowledged whatever happens (the trigger is not retried), so no request
    may be dropped: once Universign fails three times in a row, or the run's time is up, the
    rest are tracked without a call (``register_track``) and the next polls sync them."""
    log = logging.getLogger(settings.entry_point)
    meter = runtime.Meter(lambda: clients.secrets.reads)
    summary = RunSummary(selected=len(tracks), trigger="track")
    consecutive_failures = 0
    for track in tracks:
        summary.order.append(track.transaction_id)
        if consecutive_failures >= 3 or time.monotonic() > deadline:
            summary.stopped = summary.stopped or (
                "api_unavailable" if consecutive_failures >= 3 else "deadline"
            )
            try:
                register_track(clients, track.transaction_id, track.reference)
            except (Conflict, gexc.GoogleAPIError) as error:
                config_problem(settings, error)
                log.error("could not track %s: %s", track.transaction_id, error)
                summary.failed += 1
                continue
            summary.tracked += 1
            continue
        try:
            result = sync_transaction(
                settings,
                clients,
                track.transaction_id,
                source="track",
                deadline=deadline,
                track=True,
                reference=track.reference,
            )
        except TerminalError as error:
            needs_reauth(settings, error)
            summary.failed += 1
            summary.tracked += 1  # its document is kept: the poll syncs it once a key works
            consecutive_failures = 3  # the rest are registered without asking again
            continue
        except (ProviderError, Conflict, gexc.GoogleAPIError) as error:
            if not config_problem(settings, error):
                log.warning("track of %s: sync failed: %s", track.transaction_id, error)
            summary.failed += 1
            consecutive_failures += 1
            summary.tracked += isinstance(error, ProviderError)
            continue
        consecutive_failures = 0
        if result.result == "untracked":
            summary.untracked += 1
            continue
        summary.tracked += 1
        summary.not_found += result.result == "not_found"
        summary.synced += result.result == "synced"
        summary.status_changes += result.change is not None
        summary.published += result.published
        summary.archived_documents += result.archived
    report_poll(settings, summary, meter)
    return summary


def _poll_one(
    settings: Settings,
    clients: Clients,
    kind: str,
    marker: str,
    transaction_id: str,
    summary: RunSummary,
    deadline: float,
) -> None:
    doc, _ = clients.state.read(transaction_id)
    if kind == "recheck":
        if doc is None or doc.get("final_checked"):
            clients.state.remove(marker)
            summary.repaired += 1
            return
    elif doc is not None and (marker != pending_name(doc) or not needs_polling(doc)):
        # A marker left by a crash or a lost creation race: tidy it, no API call needed.
        if marker == pending_name(doc) and not doc.get("final_checked"):
            clients.state.ensure(recheck_name(doc, settings.final_recheck))
        clients.state.remove(marker)
        summary.repaired += 1
        return
    summary.order.append(transaction_id)
    source = RECHECK_SOURCE if kind == "recheck" else "poll"
    result = sync_transaction(settings, clients, transaction_id, source=source, deadline=deadline)
    if result.result == "untracked":
        clients.state.remove(marker)
        summary.untracked += 1
        return
    if result.result == "not_found":
        summary.not_found += 1
    elif kind == "recheck":
        summary.rechecked += 1
        clients.state.remove(marker)
    else:
        summary.synced += 1
    summary.status_changes += result.change is not None
    summary.published += result.published
    summary.archived_documents += result.archived


def report_poll(settings: Settings, summary: RunSummary, meter: runtime.Meter) -> None:
    log = logging.getLogger(settings.entry_point)
    log.info(
        "Universign poll: %d selected, %d synced, %d re-checked, %d status change(s), %d failed",
        summary.selected,
        summary.synced,
        summary.rechecked,
        summary.status_changes,
        summary.failed,
        extra=logs.fields(
            event="run_summary",
            provider="universign",
            entry_point="universign_poll",
            trigger=summary.trigger,
            tracked=summary.tracked,
            # A poll succeeded when no transaction failed; stopping at the deadline is not a
            # failure (the rest waits for the next run, and slow runs have their own alert).
            result="failed" if summary.failed else "ok",
            selected=summary.selected,
            synced=summary.synced,
            rechecked=summary.rechecked,
            status_changes=summary.status_changes,
            published=summary.published,
            archived_documents=summary.archived_documents,
            not_found=summary.not_found,
            untracked=summary.untracked,
            repaired=summary.repaired,
            failed=summary.failed,
            stopped=summary.stopped,
            duration_seconds=round(meter.seconds, 3),
            secret_reads=meter.secret_reads,
        ),
    )
