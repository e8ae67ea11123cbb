"""universign_webhook: signed-webhook throughput and latency, and a poll over 1,000 transactions.

    python -m benchmarks.universign_webhook [--quick]

The webhook and a hello-world function (benchmarks/hello/main.py) are served by
functions-framework as subprocesses on loopback, in the same run, under the same closed-loop
load (``CONCURRENCY`` clients, each sending as soon as its previous answer came back). The key
set is fetched once during warm-up, so the figures are with the JWKS cached. Every delivery is
a distinct signed event (no dedupe short-cut): verify, claim the event, GET the transaction from
the Universign fake, update its document on fake-gcs-server, mark the event done.

The poll figures run the function module in-process against the same emulators, with 1,000
(``--quick``: 200) transactions tracked:
- a default poll (batch 50) picks its work from the index (names only) and syncs 50;
- the baseline is what a poll without the index would pay first: reading every document;
- a full sweep (batch = all) shows the cost per transaction.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from devtools import gcp
from devtools import stack as devstack
from devtools.fakes.universign import UniversignFake
from shared.secrets import SecretStore

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "functions" / "universign_webhook"
CONCURRENCY = 8


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _load(
    bodies: list[tuple[bytes, dict[str, str]]], url: str
) -> tuple[float, list[float], dict[int, int]]:
    """Send every body with CONCURRENCY clients, each with its own keep-alive connection;
    (requests per second, latencies in ms, answers by status; -1 counts connections the
    server reset, which are retried once on a fresh connection)."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    local = threading.local()

    def send(index: int) -> None:
        body, headers = bodies[index]
        if not hasattr(local, "session"):
            local.session = requests.Session()
        start = time.perf_counter()
        try:
            answer = local.session.post(url, data=body, headers=headers, timeout=30)
        except requests.ConnectionError:
            # gunicorn drops idle keep-alive connections after 2 s; a loaded machine can
            # leave one idle that long. Count it and retry once, timed from the first try.
            codes[-1] = codes.get(-1, 0) + 1
            local.session = requests.Session()
            answer = local.session.post(url, data=body, headers=headers, timeout=30)
        latencies.append((time.perf_counter() - start) * 1000)
        codes[answer.status_code] = codes.get(answer.status_code, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(send, range(len(bodies))))
    elapsed = time.perf_counter() - started
    return len(bodies) / elapsed, latencies, codes


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
    return {
        "STATE_BUCKET": state,
        "ARCHIVE_BUCKET": archive,
        "UNIVERSIGN_API_URL": fake.url,
        "UNIVERSIGN_API_KEY_SECRET": secret,
        "UNIVERSIGN_STATUS_TOPIC": topic,
    }


def _webhook_rows(
    fake: UniversignFake, env: dict[str, str], log_dir: Path, n: int
) -> list[dict[str, object]]:
    webhook = devstack.start_function(
        "universign_webhook", "universign_webhook", env=env, log_dir=log_dir, timeout=60
    )
    hello = devstack.start_function(
        "hello", "hello", env=env, log_dir=log_dir, source=Path("benchmarks/hello/main.py")
    )
    try:
        transactions = [fake.create_transaction(state="started").id for _ in range(20)]
        warm = fake.deliver(webhook.url, fake.event(transactions[0]))
        if warm.status_code != 200:
            raise RuntimeError(f"warm-up delivery answered {warm.status_code}: {warm.text}")
        signed: list[tuple[bytes, dict[str, str]]] = []
        forged: list[tuple[bytes, dict[str, str]]] = []
        for i in range(n):
            body = fake.encode(fake.event(transactions[i % len(transactions)]))
            headers = {"Content-Type": "application/json", "X-JWS-Signature": fake.key.sign(body)}
            signed.append((body, headers))
            forged.append((body + b" ", headers))
        _load(signed[:50], hello.url)  # warm both servers' connections and threads alike
        _load(forged[:50], webhook.url)
        # Hello runs before and after the webhook runs and counts as their mean, so a machine
        # whose load drifts during the run does not favour either side.
        hello_rps_1, hello_ms_1, _ = _load(signed, hello.url)
        rps, ms, codes = _load(signed, webhook.url)
        reject_rps, reject_ms, reject_codes = _load(forged, webhook.url)
        hello_rps_2, hello_ms_2, _ = _load(signed, hello.url)
        hello_rps = (hello_rps_1 + hello_rps_2) / 2
        hello_ms = hello_ms_1 + hello_ms_2
        resets = codes.pop(-1, 0) + reject_codes.pop(-1, 0)
        if set(codes) != {200} or set(reject_codes) != {401}:
            raise RuntimeError(f"unexpected answers: {codes} / {reject_codes}")
    finally:
        webhook.stop()
        hello.stop()
    return [
        _row("webhook throughput (signed, full sync)", rps, hello_rps, "req/s", "informative"),
        _row("webhook p50", statistics.median(ms), statistics.median(hello_ms), "ms", "-"),
        _row("webhook p99", _percentile(ms, 0.99), _percentile(hello_ms, 0.99), "ms", "< 1000 ms"),
        _row("bad signature -> 401 throughput", reject_rps, hello_rps, "req/s", "informative"),
        _row(
            "bad signature -> 401 p99",
            _percentile(reject_ms, 0.99),
            _percentile(hello_ms, 0.99),
            "ms",
            "< 100 ms",
        ),
        _row("connections reset by the server (retried)", resets, None, "resets", "== 0 resets"),
    ]


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
    n = 200 if quick else 1000
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
            rows = _webhook_rows(fake, env, log_dir, n)
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
