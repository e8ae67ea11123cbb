"""One run over the accounts: discover, select, plan, refresh the due ones a bounded number at
a time until the run's deadline, report. Used for scheduled and forced runs and for the work
messages (shards) a fan-out published.

An account whose lock lease ran short (``LeaseLost``: the run stalled, another run may hold
the lock now) counts as failed and, once every other account is done, fails the run with
``lease_lost``, so Pub/Sub delivers it again; the accounts done meanwhile are skipped then.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING

from hubspot_accounts import Account, discover, planned
from hubspot_plan import DEFERRED, FAILED, RunRequest, RunSummary, plan, select
from hubspot_refresh_account import ClientCredentials, refresh_account
from hubspot_report import report

from shared import logs, runtime
from shared.lock import LeaseLost
from shared.redact import redact

if TYPE_CHECKING:
    from main import Clients, Settings  # types only: main imports this module

log = logging.getLogger("hubspot_refresh")  # the function's logger: see main.log


def run(
    settings: Settings,
    clients: Clients,
    request: RunRequest,
    *,
    requested_at: datetime | None,
    deadline: float,
) -> RunSummary:
    meter = runtime.Meter(lambda: clients.store.reads)
    mode = "shard" if request.shard else ("forced" if request.force else "scheduled")
    summary = RunSummary(mode)
    creds = ClientCredentials(clients.store)
    try:
        if request.shard is not None and request.apps is not None:
            # Planned by the fan-out from its listing; each account's lock re-reads its status.
            accounts = due = planned(request.accounts or (), request.apps)
        else:
            accounts = select(discover(clients.store), request, summary)
            due = plan(settings, clients.store, accounts, request, requested_at, creds, summary)
    except Exception:
        # Without the account list nothing can be decided: Pub/Sub delivers again.
        log.exception("could not list HubSpot accounts; Pub/Sub will deliver the run again")
        report(summary, meter, seen=0, error="discovery_failed")
        raise

    # 4. Refresh the due accounts, a bounded number at a time ------------------------------
    lease_lost: list[LeaseLost] = []

    def one(account: Account) -> str:
        if time.monotonic() >= deadline:
            return DEFERRED
        try:
            return refresh_account(
                settings, clients, account, request, requested_at, creds, deadline
            )
        except LeaseLost as lost:
            lease_lost.append(lost)
            log.warning(
                "account %s: its lock lease ran short, stopped without further writes; "
                "Pub/Sub delivers the run again",
                account.account_id,
                extra=logs.fields(account=account.account_id, outcome=FAILED, error_code=lost.code),
            )
            return FAILED
        except Exception as error:  # noqa: BLE001 - one account never stops the others
            log.error(
                "account %s: refresh failed unexpectedly (%s: %s); the next run tries again",
                account.account_id,
                type(error).__name__,
                redact(str(error))[:300],
                extra=logs.fields(account=account.account_id, outcome=FAILED),
            )
            return FAILED

    if due:
        with ThreadPoolExecutor(
            max_workers=min(settings.concurrency, len(due)), thread_name_prefix="hubspot"
        ) as pool:
            for result in pool.map(one, due):
                summary.add(result)
    if summary.counts[DEFERRED]:
        log.warning(
            "%d due accounts did not fit in this run's %ds; raise HUBSPOT_CONCURRENCY or turn "
            "on sharding (HUBSPOT_SHARD_SIZE, HUBSPOT_WORK_TOPIC)",
            summary.counts[DEFERRED],
            settings.run_seconds,
        )
    if lease_lost:
        report(summary, meter, seen=len(accounts), shard=request.shard, error=lease_lost[0].code)
        raise lease_lost[0]
    report(summary, meter, seen=len(accounts), shard=request.shard)
    return summary
