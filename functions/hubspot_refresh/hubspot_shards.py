"""Sharding: the scheduled run only plans, then publishes the due accounts in shards of
``HUBSPOT_SHARD_SIZE`` to ``HUBSPOT_WORK_TOPIC``; this same function consumes each shard as a
work message (hubspot_run), so one run's accounts spread over several instances.

A work message carries what the fan-out's listing answered about its accounts (which app each
uses, ``"apps"``), so a shard lists nothing: listing every account in every shard would cost
each run (accounts / shard size) full listings, growing with the square of the accounts."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from hubspot_accounts import app_of, discover
from hubspot_plan import RunRequest, RunSummary, plan, select
from hubspot_refresh_account import ClientCredentials
from hubspot_report import report

from shared import clock, runtime

if TYPE_CHECKING:
    from main import Clients, Settings  # types only: main imports this module

log = logging.getLogger("hubspot_refresh")  # the function's logger: see main.log

T = TypeVar("T")


def fan_out(
    settings: Settings,
    clients: Clients,
    request: RunRequest,
    *,
    requested_at: datetime | None,
    publish: Callable[[bytes], None] | None = None,
) -> RunSummary:
    """Plan the run and publish the due accounts as shards to the work topic.

    Each shard is one message; this same function consumes it and refreshes those accounts
    (under their locks, with the re-read), so a redelivered trigger only costs a re-plan.
    """
    meter = runtime.Meter(lambda: clients.store.reads)
    summary = RunSummary("fan_out")
    try:
        accounts = select(discover(clients.store), request, summary)
        due = plan(
            settings,
            clients.store,
            accounts,
            request,
            requested_at,
            ClientCredentials(clients.store),
            summary,
        )
        chunks = list(_chunks(due, settings.shard_size))
        send = publish or _publisher(settings, clients)
        for index, chunk in enumerate(chunks, start=1):
            payload: dict[str, Any] = {
                "accounts": [a.account_id for a in chunk],
                "force": request.force,
                "shard": f"{index}/{len(chunks)}",
                # What this listing answered, so the shard need not list every account again.
                "apps": {a.account_id: app_of(a) for a in chunk if app_of(a)},
            }
            if requested_at is not None:
                payload["requested_at"] = clock.format_precise_time(requested_at)
            send(json.dumps(payload).encode("utf-8"))
    except Exception:
        log.exception("could not plan or publish the HubSpot shards; Pub/Sub delivers again")
        report(summary, meter, seen=0, error="fan_out_failed")
        raise
    summary.shards = len(chunks)
    summary.counts["dispatched"] = len(due)
    report(summary, meter, seen=len(accounts))
    return summary


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _publisher(settings: Settings, clients: Clients) -> Callable[[bytes], None]:
    topic = settings.work_topic or ""
    if not topic.startswith("projects/"):
        topic = f"projects/{settings.project}/topics/{topic}"
    publisher = clients.publisher()

    def send(data: bytes) -> None:
        publisher.publish(topic, data).result(timeout=60)

    return send
