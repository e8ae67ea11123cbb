"""One force request: move ``nextExecution`` of the matching scheduled queries (cegid_api.force,
by the rules of cegid_plan), then one summary line. A refusal that needs a person is logged and
acknowledged; a transient failure is raised so Pub/Sub delivers the request again."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cegid_api import CegidApi, force, read_credentials

from shared import clock, logs
from shared.errors import ProviderError, TerminalError

if TYPE_CHECKING:
    from main import Clients, Settings  # types only: main imports this module

log = logging.getLogger("cegid_transfer")  # the function's logger: see main.log


def run_force(
    settings: Settings, clients: Clients, name: str | None, when: datetime, *, started: float
) -> None:
    """``started``: time.monotonic() when the request was accepted (the summary's seconds)."""
    try:
        api = CegidApi(settings.api, read_credentials(clients.store, settings.api), clients.http)
        done, failed = force(api, name, when)
    except TerminalError as error:
        log.error(
            "Cegid API refused the force request (%s): a person must act (API key secrets, "
            "CEGID_TENANT_ID, CEGID_PROVIDER_ID).",
            error,
            extra=logs.fields(event="needs_reauth", provider="cegid", error_code=error.code),
        )
        report_force("needs_reauth", name, when, [], [], started)
        return
    except ProviderError:
        report_force("failed", name, when, [], [], started)
        raise
    for query, problem in failed:
        log.error("could not force %s: %s", query, problem)
    transient = [e for _, e in failed if not e.terminal]
    report_force("partial" if failed else "done", name, when, done, failed, started)
    if transient:
        raise transient[0]  # redelivery forces again; setting the same time twice is harmless


def report_force(
    result: str,
    name: str | None,
    when: Any,
    done: list[str],
    failed: list[Any],
    started: float,
) -> None:
    log.info(
        "Cegid force %s: %d scheduled queries moved to %s, %d failed",
        result,
        len(done),
        clock.format_time(when),
        len(failed),
        extra=logs.fields(
            event="run_summary",
            provider="cegid",
            action="force",
            result=result,
            name=name,
            next_execution=clock.format_time(when),
            forced=len(done),
            forced_names=done[:50],
            failed=len(failed),
            entry_point="cegid_queries",
            duration_seconds=round(time.monotonic() - started, 3),
        ),
    )
