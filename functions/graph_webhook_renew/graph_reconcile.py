"""One reconciler run: list Graph's subscriptions, carry out the plan, report.

main.py's ``graph_webhook_renew`` hands over the parsed trigger (graph_plan.RenewRequest)
with the settings and the instance's clients. ``reconcile`` takes the lease lock, lists the
app's subscriptions through graph_api, lets graph_plan decide, carries out each step and ends
with one ``run_summary`` line. Anything a person must fix is an ERROR saying what to do; a
transient failure is raised at the end so Pub/Sub delivers the trigger again.

Creating and deleting are fenced (``shared.lock.LeaseLock.fence``): a run stalled until its
lease is nearly over may have been overtaken by another run, and two creators make duplicate
subscriptions. Such a run carries out no further step, reports ``failed`` and raises
``LeaseLost`` (transient); renewing needs no fence (a second renewal only extends again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from graph_plan import Desired, RenewRequest, Step, Subscription, plan, requested_expiry

from shared import clock, logs, runtime
from shared.errors import SECRET_MISSING, ProviderError, TransientError

if TYPE_CHECKING:
    # Types only: main reads the environment when imported, and graph_api (like shared.lock,
    # through Cloud Storage) imports requests.
    from graph_api import GraphClient
    from main import Clients, Settings

    from shared.lock import LeaseLock

# main.py's logger: logs.setup names it after FUNCTION_TARGET, which functions-framework sets
# to the entry point it serves, and only graph_webhook_renew runs this module.
log = logging.getLogger("graph_webhook_renew")

# 2. Decide -------------------------------------------------------------------------------


@dataclass
class Tally:
    created: int = 0
    renewed: int = 0
    recreated: int = 0
    deleted: int = 0
    unchanged: int = 0
    reauthorized: int = 0
    unmanaged: int = 0
    failed: int = 0
    expiries: list[datetime] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)

    @property
    def earliest_expiry(self) -> datetime | None:
        return min(self.expiries) if self.expiries else None


def reconcile(
    settings: Settings, clients: Clients, request: RenewRequest, *, deadline: float
) -> Tally:
    meter = runtime.Meter(clients.secret_reads)
    tally = Tally()
    if not settings.notification_url or not settings.desired:
        missing = "GRAPH_SUBSCRIPTIONS or GRAPH_USER_ID"
        if not settings.notification_url:
            missing = "GRAPH_NOTIFICATION_URL"
        log.error(
            "nothing to reconcile: set %s on the graph_webhook_renew function",
            missing,
            extra=logs.fields(event="config_error", provider="graph", missing=missing),
        )
        report(settings, tally, request.reason, meter, "config_error")
        return tally
    # Overlapping runs (a lifecycle event during the daily run, a redelivery) would each see
    # a subscription missing and each create it: one run at a time, re-listing after the lock.
    from shared.gcs import storage_client
    from shared.lock import LeaseLock

    lock = (
        LeaseLock(
            storage_client().bucket(settings.state_bucket),
            "graph-webhook-renew",
            lease=settings.lock_lease,
        )
        if settings.state_bucket
        else None
    )
    if lock is not None and not lock.acquire(
        runtime.lock_wait(settings.lock_wait_seconds, deadline)
    ):
        report(settings, tally, request.reason, meter, "lock_busy")
        raise TransientError("another reconciler run holds the lock", code="lock_busy")
    try:
        _reconcile_locked(settings, clients, request, tally, deadline, lock)
    finally:
        if lock is not None:
            lock.release()
    report(settings, tally, request.reason, meter)
    transient = [e for e in tally.errors if not e.terminal]
    if transient:
        # Pub/Sub delivers the trigger again; what succeeded is simply unchanged next time.
        raise transient[0]
    return tally


def _reconcile_locked(
    settings: Settings,
    clients: Clients,
    request: RenewRequest,
    tally: Tally,
    deadline: float,
    lock: LeaseLock | None,
) -> None:
    from shared.lock import LeaseLost  # imported by reconcile already (see there)

    assert settings.notification_url is not None
    try:
        graph = clients.graph
        must_renew = _reauthorize(graph, request.reauthorize, tally, deadline)
        actual = graph.list_subscriptions(deadline=deadline)
        client_state = clients.client_state().decode("utf-8")
        now = clock.now()
        steps, unmanaged = plan(
            settings.desired,
            actual,
            notification_url=settings.notification_url,
            now=now,
            renew_within=settings.renew_within,
        )
        tally.unmanaged = len(unmanaged)
        if unmanaged:
            # Left alone (they lapse within days), but a resource Graph echoes differently
            # from GRAPH_SUBSCRIPTIONS would show up here run after run.
            log.warning(
                "%d subscription(s) to our endpoint match no desired one and are left to "
                "expire: %s",
                len(unmanaged),
                ", ".join(sorted({f"{u.change_type} on {u.resource}" for u in unmanaged})),
                extra=logs.fields(event="unmanaged_subscriptions", provider="graph"),
            )
        for step in steps:
            if step.keep is not None and step.keep.id in must_renew:
                step = replace(step, renew=True)  # renewing reauthorises too
            if step.keep is not None and request.forces(step.desired):
                step = replace(step, renew=True)  # {"force": true}: due or not
            try:
                _carry_out(settings, graph, step, client_state, tally, deadline, lock)
            except ProviderError as error:
                tally.failed += 1
                tally.errors.append(error)
                _log_failure(step.desired, error)
                if isinstance(error, LeaseLost):
                    break  # another run may hold the lock now: the rest is left to it
    except ProviderError as error:
        # Listing or the token failed: nothing could be checked this run.
        tally.failed += 1
        tally.errors.append(error)
        _log_failure(None, error)


# 3. Call Graph ---------------------------------------------------------------------------


def _reauthorize(
    graph: GraphClient, ids: tuple[str, ...], tally: Tally, deadline: float
) -> set[str]:
    """Reauthorise the subscriptions a lifecycle event named; returns those to renew instead
    (Graph accepts either). A 404 means Graph removed it: the plan creates a new one."""
    must_renew: set[str] = set()
    for sub_id in ids:
        try:
            if graph.reauthorize(sub_id, deadline=deadline):
                tally.reauthorized += 1
        except ProviderError as error:
            log.warning("reauthorizing %s failed (%s); renewing it instead", sub_id, error)
            must_renew.add(sub_id)
    return must_renew


def _carry_out(
    settings: Settings,
    graph: GraphClient,
    step: Step,
    client_state: str,
    tally: Tally,
    deadline: float,
    lock: LeaseLock | None,
) -> None:
    assert settings.notification_url is not None
    want = step.desired

    def fence(what: str) -> None:
        if lock is not None:
            lock.fence(f"{what} for {want.describe()}")

    def create() -> Subscription:
        fence("creating a subscription")
        return graph.create(
            resource=want.resource,
            change_type=want.change_type,
            notification_url=settings.notification_url or "",
            client_state=client_state,
            expires_at=requested_expiry(clock.now(), want, settings.subscription_minutes),
            deadline=deadline,
        )

    kept: Subscription | None = None
    if step.keep is None:
        kept = create()
        tally.created += 1
        log.info("created subscription %s for %s", kept.id, want.describe())
    elif step.renew:
        kept = graph.renew(
            step.keep.id,
            requested_expiry(clock.now(), want, settings.subscription_minutes),
            deadline=deadline,
        )
        if kept is None:
            log.warning(
                "subscription %s for %s was gone at renewal (404); creating it again",
                step.keep.id,
                want.describe(),
            )
            kept = create()
            tally.recreated += 1
        else:
            tally.renewed += 1
    else:
        kept = step.keep
        tally.unchanged += 1
    if kept.expires_at is not None:
        # Graph's answer, not our request: it may have shortened the lifetime.
        tally.expiries.append(kept.expires_at)
    # Delete extras only once the kept one is certain, so there is never a gap.
    for extra in step.delete:
        fence(f"deleting subscription {extra.id}")
        if graph.delete(extra.id, deadline=deadline):
            tally.deleted += 1
            log.info("deleted duplicate subscription %s for %s", extra.id, want.describe())


def _log_failure(desired: Desired | None, error: ProviderError) -> None:
    what = desired.describe() if desired else "the subscription list"
    if not error.terminal:
        log.warning("Graph call for %s failed transiently: %s", what, error)
        return
    if error.code == SECRET_MISSING:
        log.error(
            "%s: a person must act. Add the value as a new version of that secret "
            "(deploy.sh asks for it); the next run picks it up.",
            error,
            extra=logs.fields(event="config_error", provider="graph", error_code=error.code),
        )
        return
    if error.status in (400, 401) and error.code in {
        "invalid_client",
        "unauthorized_client",
        "invalid_request",
    }:
        log.error(
            "Entra ID refused the app's credentials (%s): a person must act. Check the "
            "client secret has not expired and add a new version of the graph-client-secret "
            "(and graph-client-id, graph-tenant-id) secrets; the next run picks it up.",
            error.code,
            extra=logs.fields(event="needs_reauth", provider="graph", error_code=error.code),
        )
        return
    log.error(
        "Graph refused the call for %s (%s): a person must act. A 400 on create usually "
        "means the notify endpoint did not echo the validation token (is it deployed and "
        "public?); 403 means the app lacks the permission (Mail.Read for messages).",
        what,
        error,
        extra=logs.fields(event="subscription_failed", provider="graph", error_code=error.code),
    )


# 4. Report -------------------------------------------------------------------------------


def report(
    settings: Settings, tally: Tally, reason: str, meter: runtime.Meter, result: str | None = None
) -> None:
    earliest = tally.earliest_expiry
    result = result or ("failed" if tally.failed else "ok")
    log.info(
        "Graph subscriptions %s: %d created, %d renewed, %d recreated, %d deleted, "
        "%d unchanged, %d failed; earliest expiry %s",
        result,
        tally.created,
        tally.renewed,
        tally.recreated,
        tally.deleted,
        tally.unchanged,
        tally.failed,
        clock.format_time(earliest) if earliest else "none",
        extra=logs.fields(
            event="run_summary",
            provider="graph",
            result=result,
            reason=reason,
            desired=len(settings.desired),
            created=tally.created,
            renewed=tally.renewed,
            recreated=tally.recreated,
            deleted=tally.deleted,
            unchanged=tally.unchanged,
            reauthorized=tally.reauthorized,
            unmanaged=tally.unmanaged,
            failed=tally.failed,
            earliest_expiry=clock.format_time(earliest) if earliest else None,
            earliest_expiry_in_minutes=(
                int((earliest - clock.now()).total_seconds() // 60) if earliest else None
            ),
            duration_seconds=round(meter.seconds, 3),
            secret_reads=meter.secret_reads,
        ),
    )
