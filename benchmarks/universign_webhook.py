"""universign_webhook: the webhook's 202 path at 100 requests/s against a hello-world, the time
from a webhook to its status-change event, and a poll over 1,000 transactions.

    python -m benchmarks.universign_webhook [--quick]

The webhook, the worker (universign_sync) and a hello-world function (benchmarks/hello/main.py)
are served by functions-framework as subprocesses on loopback, in the same run. The key set is
fetched once during warm-up, so the figures are with the JWKS cached.

- Webhook p50 / p99 at 100 requests/s, open loop (as benchmarks/graph_webhook_renew does):
  latency runs from each request's scheduled send time, so a stalled server cannot hide its
  queue. Every request is a distinct signed event: verify, decode, publish to the work topic
  on the Pub/Sub emulator, 202. The hello-world takes the same load before and after it; its
  p99 is the baseline and the target is ``<= 2x``. Errors (anything but 202, or no answer) must
  be 0. The worker is paused meanwhile (its push subscription turned into a pull one), so the
  machine's two cores serve the webhook as they serve the hello-world; it then drains what was
  queued, and the time it took is reported (informative).
- Webhook -> status-change event, p50 / p99: events about new transactions sent at 10/s, each
  timed from its send to its status change read from ``universign-status-changes``. The worker
  is fed as it ships: a push subscription to the served worker (Eventarc delivers by push).
  Baseline: the same sync without webhook or queue (the work message posted straight to the
  worker, as the webhook used to sync inline), so the ratio is what queueing costs; target
  < 10 s (the poll, the other way a status change arrives, takes up to 5 minutes).
- A bad signature's 401 at the same rate, against the same baseline.

The poll figures run the function module in-process against the same emulators, with 1,000
(``--quick``: 200) transactions tracked:
- a default poll (batch 50) picks its work from the index (names only) and syncs 50;
- the baseline is what a poll without the index would pay first: reading every document;
- a full sweep (batch = all) shows the cost per transaction.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from google.api_core import exceptions as gexc

from devtools import gcp
from devtools import stack as devstack
from devtools.fakes.universign import UniversignFake
from shared.secrets import SecretStore

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "functions" / "universign_webhook"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(
    figure: str, value: float, baseline: float | None, unit: str, target: str
) -> dict[str, object]:
    ratio = round(value / baseline, 3) if baseline else None
    return {
        "figure": figure,
        "value": round(value, 2),
        "baseline": round(baseline, 2) if baseline is not None else None,
        "ratio": ratio,
        "unit": unit,
        "target": target,
    }


def _setup(project: str, fake: UniversignFake) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    state, archive = f"bench-uni-state-{suffix}", f"bench-uni-archive-{suffix}"
    gcp.create_bucket(state, project=project)
    gcp.create_bucket(archive, project=project)
    secret = f"bench-universign-api-key-{suffix}"
    store = SecretStore(project)
    store.create(secret)
    store.add_version(secret, fake.api_key)
    topic = f"bench-universign-status-{suffix}"
    gcp.create_topic(project, topic)
    sync_topic = f"bench-universign-sync-{suffix}"
    gcp.create_topic(project, sync_topic)
    return {
        "UNIVERSIGN_SYNC_TOPIC": sync_topic,
        "STATE_BUCKET": state,
        "ARCHIVE_BUCKET": archive,
        "UNIVERSIGN_API_URL": fake.url,
        "UNIVERSIGN_API_KEY_SECRET": secret,
        "UNIVERSIGN_STATUS_TOPIC": topic,
    }


RATE = 100.0
E2E_RATE = 10.0


def _open_loop(
    url: str, requests_: list[tuple[bytes, dict[str, str]]], expect: int
) -> tuple[list[float], int]:
    """Send ``requests_`` at RATE per second, open loop; latencies in ms from each request's
    scheduled send time, and the count of answers other than ``expect`` (or none at all)."""
    local = threading.local()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def send(index: int, scheduled: float) -> None:
        nonlocal errors
        body, headers = requests_[index]
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            ok = session.post(url, data=body, headers=headers, timeout=10).status_code == expect
        except requests.RequestException:
            ok = False
        elapsed = (time.perf_counter() - scheduled) * 1000
        with lock:
            if ok:
                latencies.append(elapsed)
            else:
                errors += 1

    with ThreadPoolExecutor(max_workers=64) as pool:
        start = time.perf_counter() + 0.05
        for i in range(len(requests_)):
            scheduled = start + i / RATE
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, i, scheduled)
    return latencies, errors


def _signed(
    fake: UniversignFake, transactions: list[str], n: int
) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for i in range(n):
        body = fake.encode(fake.event(transactions[i % len(transactions)]))
        out.append(
            (body, {"Content-Type": "application/json", "X-JWS-Signature": fake.key.sign(body)})
        )
    return out


def _set_push(project: str, subscription: str, endpoint: str | None) -> None:
    """Point the worker's subscription at ``endpoint``, or (None) make it a pull subscription
    that keeps what arrives until pushing resumes."""
    subscriber = gcp.subscriber()
    try:
        subscriber.modify_push_config(
            request={
                "subscription": gcp.subscription_path(project, subscription),
                "push_config": {"push_endpoint": endpoint} if endpoint else {},
            }
        )
    finally:
        subscriber.close()


def _status_changes(
    project: str, subscription: str, want: set[str], timeout: float
) -> dict[str, float]:
    """perf_counter time each transaction in ``want`` was first seen on the status topic."""
    seen: dict[str, float] = {}
    subscriber = gcp.subscriber()
    path = gcp.subscription_path(project, subscription)
    deadline = time.perf_counter() + timeout
    try:
        while want - set(seen) and time.perf_counter() < deadline:
            try:
                response = subscriber.pull(
                    request={"subscription": path, "max_messages": 100}, timeout=5
                )
            except (gexc.DeadlineExceeded, gexc.RetryError):  # nothing yet
                continue
            now = time.perf_counter()
            if response.received_messages:
                subscriber.acknowledge(
                    request={
                        "subscription": path,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
            for m in response.received_messages:
                tx = str(m.message.attributes.get("transaction_id", ""))
                seen.setdefault(tx, now)
    finally:
        subscriber.close()
    return seen


def _watch(project: str, subscription: str, want: set[str]) -> Callable[[], dict[str, float]]:
    """Start reading status changes now, in a thread; the function returned waits for it and
    gives what ``_status_changes`` found."""
    found: dict[str, float] = {}
    thread = threading.Thread(
        target=lambda: found.update(_status_changes(project, subscription, want, 120)),
        daemon=True,
    )
    thread.start()

    def wait() -> dict[str, float]:
        thread.join(130)
        return found

    return wait


def _webhook_rows(
    fake: UniversignFake, env: dict[str, str], log_dir: Path, seconds: float, e2e_events: int
) -> list[dict[str, object]]:
    project = env["GOOGLE_CLOUD_PROJECT"]
    webhook = devstack.start_function(
        "universign_webhook", "universign_webhook", env=env, log_dir=log_dir, timeout=60
    )
    worker = devstack.start_function(
        "universign_webhook",
        "universign_sync",
        signature_type="cloudevent",
        env=env,
        log_dir=log_dir,
        timeout=60,
    )
    hello = devstack.start_function(
        "hello", "hello", env=env, log_dir=log_dir, source=Path("benchmarks/hello/main.py")
    )
    suffix = uuid.uuid4().hex[:8]
    push_sub, status_sub = f"bench-sync-push-{suffix}", f"bench-status-{suffix}"
    push = gcp.push_endpoint(worker.url, project, env["UNIVERSIGN_SYNC_TOPIC"])
    gcp.create_subscription(
        project, env["UNIVERSIGN_SYNC_TOPIC"], push_sub, push_url=push, ack_deadline_seconds=60
    )
    gcp.create_subscription(project, env["UNIVERSIGN_STATUS_TOPIC"], status_sub)
    try:
        # Warm-up: the key set, the Pub/Sub channel, the worker's clients.
        warm_tx = fake.create_transaction(state="started").id
        warm = fake.deliver(webhook.url, fake.event(warm_tx))
        if warm.status_code != 202:
            raise RuntimeError(f"warm-up delivery answered {warm.status_code}: {warm.text}")
        if not _status_changes(project, status_sub, {warm_tx}, 60):
            raise RuntimeError("the warm-up event never reached universign-status-changes")

        # 1. Webhook -> status change, the worker fed by push, at E2E_RATE events/s.
        fresh = [fake.create_transaction(state="started").id for _ in range(e2e_events)]
        events = _signed(fake, fresh, e2e_events)
        sent: dict[str, float] = {}
        e2e_errors = 0
        session = requests.Session()
        # Read while sending: an event's arrival is timed when it arrives, not after the last.
        watching = _watch(project, status_sub, set(fresh))
        start = time.perf_counter()
        for i, (tx, (body, headers)) in enumerate(zip(fresh, events, strict=True)):
            delay = start + i / E2E_RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[tx] = time.perf_counter()
            if session.post(webhook.url, data=body, headers=headers, timeout=10).status_code != 202:
                e2e_errors += 1
        seen = watching()
        e2e_ms = [(seen[tx] - sent[tx]) * 1000 for tx in fresh if tx in seen]
        e2e_lost = e2e_events - len(e2e_ms) + e2e_errors

        # Its baseline: the same sync with no webhook and no queue in front of it, the work
        # message posted straight to the worker as Pub/Sub's push would (what the webhook used
        # to do inline before answering), timed to the same status-change event.
        direct = [fake.create_transaction(state="started").id for _ in range(e2e_events)]
        direct_sent: dict[str, float] = {}
        watching = _watch(project, status_sub, set(direct))
        start = time.perf_counter()
        for i, tx in enumerate(direct):
            delay = start + i / E2E_RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            direct_sent[tx] = time.perf_counter()
            session.post(push, json=_push_body(tx, i), timeout=30)
        direct_seen = watching()
        direct_ms = [
            (direct_seen[tx] - direct_sent[tx]) * 1000 for tx in direct if tx in direct_seen
        ]

        # 2. The 202 path at RATE, open loop, the worker paused; the hello-world around it.
        n = int(seconds * RATE)
        pool_of = [fake.create_transaction(state="started").id for _ in range(20)]
        signed = _signed(fake, pool_of, n)
        forged = [(body + b" ", headers) for body, headers in signed]
        _set_push(project, push_sub, None)
        _open_loop(hello.url, signed[:100], 202)  # warm both servers' threads alike
        _open_loop(webhook.url, forged[:100], 401)
        hello_ms_1, hello_err_1 = _open_loop(hello.url, signed, 202)
        ms, errors = _open_loop(webhook.url, signed, 202)
        reject_ms, reject_errors = _open_loop(webhook.url, forged, 401)
        hello_ms_2, hello_err_2 = _open_loop(hello.url, signed, 202)
        hello_ms = hello_ms_1 + hello_ms_2

        # 3. The worker resumes and drains what was queued meanwhile.
        queued = len(signed) - errors
        before = _worker_lines(worker)
        drain_started = time.perf_counter()
        _set_push(project, push_sub, push)
        while _worker_lines(worker) - before < queued and time.perf_counter() - drain_started < 600:
            time.sleep(0.5)
        drain_seconds = time.perf_counter() - drain_started
        drained = _worker_lines(worker) - before
    finally:
        webhook.stop()
        worker.stop()
        hello.stop()
    hello_p99 = _percentile(hello_ms, 0.99)
    return [
        _row(
            f"webhook 202 p50 at {RATE:.0f} req/s (open loop)",
            statistics.median(ms) if ms else float("nan"),
            statistics.median(hello_ms),
            "ms",
            "informative",
        ),
        _row(
            f"webhook 202 p99 at {RATE:.0f} req/s (open loop)",
            _percentile(ms, 0.99) if ms else float("nan"),
            hello_p99,
            "ms",
            "<= 2x",
        ),
        _row(
            f"webhook errors at {RATE:.0f} req/s (of {n})",
            errors,
            hello_err_1 + hello_err_2,
            "errors",
            "== 0 errors",
        ),
        _row(
            f"webhook -> status-change event p50 ({E2E_RATE:.0f} events/s, push)",
            statistics.median(e2e_ms) if e2e_ms else float("nan"),
            statistics.median(direct_ms) if direct_ms else None,
            "ms",
            "< 10000 ms",
        ),
        _row(
            f"webhook -> status-change event p99 ({E2E_RATE:.0f} events/s, push)",
            _percentile(e2e_ms, 0.99) if e2e_ms else float("nan"),
            _percentile(direct_ms, 0.99) if direct_ms else None,
            "ms",
            "< 10000 ms",
        ),
        _row(
            f"events without a status change (of {e2e_events})",
            e2e_lost,
            None,
            "events",
            "== 0 events",
        ),
        _row(
            f"bad signature -> 401 p99 at {RATE:.0f} req/s",
            _percentile(reject_ms, 0.99) if reject_ms else float("nan"),
            hello_p99,
            "ms",
            "< 100 ms",
        ),
        _row("bad signature errors", reject_errors, None, "errors", "== 0 errors"),
        _row(
            f"worker drain of {queued} queued events (push)",
            drain_seconds,
            None,
            "s",
            f"informative ({drained} handled, {drained / drain_seconds:.1f}/s)",
        ),
    ]


def _push_body(transaction_id: str, index: int) -> dict[str, Any]:
    """A work message as Pub/Sub pushes it (functions-framework turns it into the CloudEvent
    Eventarc would deliver)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = {
        "event_id": f"evt_bench_direct_{uuid.uuid4().hex[:12]}",
        "event_type": "transaction.lifecycle.started",
        "transaction_id": transaction_id,
        "refusal": None,
        "received_at": now,
    }
    return {
        "message": {
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "messageId": f"bench-direct-{index}",
            "publishTime": now,
        },
        "subscription": "projects/bench/subscriptions/direct",
    }


def _worker_lines(worker: Any) -> int:
    """How many work messages the worker has handled (its sync_message lines)."""
    text: str = worker.log_text()
    return text.count('"event": "sync_message"')


def _module(env: dict[str, str]) -> ModuleType:
    os.environ.update(env)
    if str(FOLDER) not in sys.path:
        sys.path.insert(0, str(FOLDER))
    name = f"universign_bench_{uuid.uuid4().hex[:6]}"
    spec = importlib.util.spec_from_file_location(name, FOLDER / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # One JSON line per synced transaction would drown the table; warnings still show.
    logging.getLogger().setLevel(logging.WARNING)
    return module


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def _poll_rows(fake: UniversignFake, env: dict[str, str], tracked: int) -> list[dict[str, object]]:
    main = _module({**env, "UNIVERSIGN_POLL_BATCH": "50"})
    # main.py's sibling modules, by name once _module has put the folder on sys.path (the
    # folder is not a package, and mypy checks it on its own).
    poll: Any = importlib.import_module("universign_poll")
    sync: Any = importlib.import_module("universign_sync")
    c = main.clients()
    ids = [fake.create_transaction(state="started").id for _ in range(tracked)]

    def track(tx: str) -> None:
        sync.sync_transaction(main.SETTINGS, c, tx, source="bench")

    with ThreadPoolExecutor(8) as pool:
        track_seconds, _ = _timed(lambda: list(pool.map(track, ids)))
    read_all, _ = _timed(lambda: [c.state.read(tx) for tx in ids])
    select_seconds, work = _timed(lambda: poll.select_work(main.SETTINGS, c))
    poll_seconds, stats = _timed(
        lambda: poll.run_poll(main.SETTINGS, c, deadline=time.monotonic() + 600)
    )
    if stats.synced != 50 or stats.failed:
        raise RuntimeError(f"poll of 50 did not sync 50: {stats}")
    sweep_main = _module({**env, "UNIVERSIGN_POLL_BATCH": str(tracked)})
    sweep_seconds, sweep = _timed(
        lambda: poll.run_poll(
            sweep_main.SETTINGS, sweep_main.clients(), deadline=time.monotonic() + 600
        )
    )
    if sweep.synced != tracked:
        raise RuntimeError(f"full sweep synced {sweep.synced} of {tracked}")
    return [
        _row(f"track {tracked} transactions (8 threads)", track_seconds, None, "s", "-"),
        _row(
            f"poll selection of 50 among {tracked} (index)",
            select_seconds * 1000,
            read_all * 1000,
            "ms",
            "baseline = read every document",
        ),
        _row(
            f"poll, batch 50 of {tracked} tracked",
            poll_seconds,
            None,
            "s",
            "< 240 s (run deadline)",
        ),
        _row(
            f"poll, full sweep of {tracked} (batch {tracked})",
            sweep_seconds,
            None,
            "s",
            "informative",
        ),
        _row("poll, per transaction", sweep_seconds / tracked * 1000, None, "ms", "-"),
    ] + (
        []
        if len(work) == 50
        else [_row("selection size", len(work), None, "transactions", "== 50 transactions")]
    )


def run(quick: bool) -> list[dict[str, object]]:
    seconds = 5.0 if quick else 20.0
    e2e_events = 20 if quick else 100
    tracked = 200 if quick else 1000
    log_dir = Path(tempfile.mkdtemp(prefix="bench-universign-"))
    saved = dict(os.environ)
    with devstack.Stack(log_dir) as stack:
        stack.start(["pubsub", "gcs", "secretmanager"])
        os.environ.update(stack.env())
        fake = UniversignFake()
        fake.start()
        try:
            env = {**stack.env(), **_setup(stack.project, fake)}
            rows = _webhook_rows(fake, env, log_dir, seconds, e2e_events)
            rows += _poll_rows(fake, env, tracked)
        finally:
            fake.stop()
            os.environ.clear()
            os.environ.update(saved)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.universign_webhook")
    parser.add_argument("--quick", action="store_true", help="fewer requests and transactions")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(f"{'figure':52} {'value':>10} {'baseline':>10} {'ratio':>7}  {'unit':6} target")
    for r in rows:
        baseline = "-" if r["baseline"] is None else r["baseline"]
        ratio = "-" if r["ratio"] is None else r["ratio"]
        print(
            f"{r['figure']!s:52} {r['value']!s:>10} {baseline!s:>10} {ratio!s:>7}  "
            f"{r['unit']!s:6} {r['target']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
