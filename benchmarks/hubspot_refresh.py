"""hubspot_refresh: sequential vs a bounded pool, the calls each refresh costs, and 10,000
accounts refreshed through shards by several function processes, all in one run.

    python -m benchmarks.hubspot_refresh [--quick]

The fake HubSpot answers every token call after 200 ms; the function reaches it through
``HUBSPOT_TOKEN_URL`` set to the fake's date-versioned route (``CURRENT_TOKEN_ROUTE``,
``/oauth/2026-03/token``), the path of the function's default endpoint, so no run warns of a
retiring endpoint. (Earlier reports used the legacy v1 route; the form and answer are the same.)

1. Sequential vs concurrent: 1,000 accounts (``--quick``: 100) in the Secret Manager stand-in,
   their locks on fake-gcs-server; the function's own ``run`` is called in-process with a forced
   request, with ``HUBSPOT_CONCURRENCY=1`` (the baseline) then 16. A warm-up run before both
   creates every access-token secret, so neither measured run pays for that.
2. Cost per account, this code against the code before the call-count cut (``git archive`` of
   the function folder and ``shared/`` at ``BASELINE_COMMIT``), each in a child process on its
   own accounts (200; ``--quick``: 40), sequential: time besides HubSpot's latency, Secret
   Manager calls counted by the stand-in (its ``/stats``, per gRPC method) and Cloud Storage
   calls counted on the client side (a hook on the requests session the storage client uses).
   The earlier report measured that code against a fake that held each answer ~40 ms (Nagle's
   algorithm against the client's delayed ACK, see devtools/fakes/hubspot.py); that pairing is
   the baseline of the headline row, and the earlier code against the fixed fake isolates the
   function's own share.
3. Sharded: 10,000 accounts (``--quick``: 400) due at once, ``HUBSPOT_SHARD_SIZE`` 250 (100);
   a trigger is delivered to one of 4 functions-framework processes serving the function from
   its shipped venv (devtools.shipenv), which plans and publishes the shards to the work topic
   on the Pub/Sub emulator; one pull subscriber per process takes one shard at a time off the
   work subscription and posts it to its process as Pub/Sub's push would. Cloud Storage calls
   are counted by a counting proxy in front of fake-gcs-server.

Redaction: every token the run receives is registered with ``shared.redact``; a row checks
that registering grows linearly (10x the values costs about 10x the time).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import http.client
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from devtools import gcp
from devtools import stack as devstack
from devtools.fakes.hubspot import CURRENT_TOKEN_ROUTE, HubSpotFake
from shared import clock
from shared.secrets import SecretStore

REPO = Path(__file__).resolve().parent.parent
FUNCTION_DIR = REPO / "functions" / "hubspot_refresh"
LATENCY = 0.2
CONCURRENCY = 16
PROCESSES = 4
INTERVAL_SECONDS = 15 * 60
PROJECTED_ACCOUNTS = 100_000
# The code before the Secret Manager call cut (issue 15): the cost rows' baseline.
BASELINE_COMMIT = "590a0561cccc11ca09f6c4b6677523a056c4a74e"
# A shard's outcomes besides "refreshed" (run_summary fields).
OUTCOMES = ("skipped_fresh", "in_backoff", "failed", "needs_reauth", "busy", "deferred")


def registration_seconds(count: int) -> float:
    """Seconds to register ``count`` fresh values, in a clean interpreter."""
    code = (
        "import secrets, sys, time\n"
        "from shared import redact\n"
        f"values = [secrets.token_urlsafe(48) for _ in range({count})]\n"
        "start = time.perf_counter()\n"
        "for v in values: redact.register(v)\n"
        "print(time.perf_counter() - start)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=3600,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def load_function(env: dict[str, str]) -> ModuleType:
    os.environ.update(env)
    if str(FUNCTION_DIR) not in sys.path:
        sys.path.append(str(FUNCTION_DIR))
    spec = importlib.util.spec_from_file_location("hubspot_refresh_bench", FUNCTION_DIR / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    # One line per account would drown the table; warnings and errors still show.
    logging.getLogger().setLevel(logging.WARNING)
    return module


def add_accounts(
    store: SecretStore, fake: HubSpotFake, count: int, *, status_secrets: bool = False
) -> list[str]:
    """``count`` accounts; ``status_secrets`` also creates each access-token secret, empty, as
    ``cli hubspot add-account`` does (its status is unknown, so the account is due)."""
    accounts = [str(100000 + i) for i in range(count)]

    def add(account: str) -> None:
        secret = f"hubspot-{account}-refresh-token"
        labels = {"integration": "hubspot", "hubspot-account": account, "enabled": "true"}
        store.create(secret, labels=labels)
        store.add_version(secret, fake.new_refresh_token(int(account)))
        if status_secrets:
            store.create(f"hubspot-{account}-access-token", labels=labels)

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(add, accounts))
    return accounts


def timed_run(main: ModuleType, concurrency: int) -> tuple[float, Any]:
    settings = dataclasses.replace(main.SETTINGS, concurrency=concurrency, run_seconds=7200)
    time.sleep(1.1)  # status times have whole seconds: the request must follow the last refresh
    started = time.perf_counter()
    summary = main.run(
        settings,
        main.clients(),
        main.RunRequest(force=True),
        requested_at=clock.now(),
        deadline=time.monotonic() + 7200,
    )
    return time.perf_counter() - started, summary


def row(
    figure: str, value: float, baseline: float | None, target: str, unit: str
) -> dict[str, object]:
    return {
        "figure": figure,
        "value": round(value, 2),
        "baseline": round(baseline, 2) if baseline is not None else None,
        "ratio": round(value / baseline, 3) if baseline else None,
        "target": target,
        "unit": unit,
    }


# --- calls counted at the servers -------------------------------------------------------------


def sm_calls(admin: str) -> Counter[str]:
    """Calls per gRPC method the Secret Manager stand-in has served so far."""
    with urllib.request.urlopen(f"{admin}/stats", timeout=10) as answer:  # noqa: S310 - local
        return Counter(json.load(answer)["calls"])


def gcs_kind(method: str, path: str, query: str) -> str:
    """What a Cloud Storage request did, in the lock's terms."""
    if method == "POST" and path.startswith("/upload/"):
        return "lock create (upload)"
    if method == "DELETE":
        return "lock delete"
    if method == "GET" and "/o" not in path.split("/b/", 1)[-1]:
        return "bucket metadata (the storage library's, once per client)"
    if method == "GET" and "alt=media" in query:
        return "lock read (download)"
    if method == "GET":
        return "lock read (metadata)"
    return f"{method} other"


def per_account(calls: Counter[str], accounts: int) -> dict[str, float]:
    return {k: round(v / accounts, 2) for k, v in sorted(calls.items()) if v} if accounts else {}


def spelled(calls: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in calls.items()) or "none"


class CountingProxy:
    """A reverse proxy in front of fake-gcs-server counting each request by kind: the function
    processes reach Cloud Storage through it (``STORAGE_EMULATOR_HOST``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                with proxy.lock:
                    proxy.calls[gcs_kind(self.command, parts.path, parts.query)] += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not hasattr(self.server, "_local"):
                    self.server._local = threading.local()  # type: ignore[attr-defined]
                local = self.server._local  # type: ignore[attr-defined]
                if not hasattr(local, "conn"):
                    local.conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                try:
                    local.conn.request(self.command, self.path, body=body, headers=headers)
                    answer = local.conn.getresponse()
                except (http.client.HTTPException, OSError):
                    local.conn.close()
                    local.conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                    local.conn.request(self.command, self.path, body=body, headers=headers)
                    answer = local.conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def taken(self) -> Counter[str]:
        with self.lock:
            return Counter(self.calls)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- 2. cost per account: this code against the code before the cut ------------------------

_COST_CHILD = r"""
import dataclasses, importlib.util, json, logging, os, sys, time, urllib.request
from collections import Counter
root, folder, admin, fake_admin, latency = sys.argv[1:6]
sys.path[:0] = [folder, root]
import requests
gcs = Counter()
original = requests.Session.request
def counting(self, method, url, *args, **kwargs):
    if url.startswith(os.environ["STORAGE_EMULATOR_HOST"]):
        path, _, query = url[len(os.environ["STORAGE_EMULATOR_HOST"]):].partition("?")
        gcs[(method, path, query)] += 1
    return original(self, method, url, *args, **kwargs)
requests.Session.request = counting
spec = importlib.util.spec_from_file_location("hubspot_cost_main", folder + "/main.py")
main = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = main
spec.loader.exec_module(main)
logging.getLogger().setLevel(logging.WARNING)
from shared import clock
def timed(concurrency):
    settings = dataclasses.replace(main.SETTINGS, concurrency=concurrency, run_seconds=7200)
    time.sleep(1.1)
    started = time.perf_counter()
    summary = main.run(settings, main.clients(), main.RunRequest(force=True),
                       requested_at=clock.now(), deadline=time.monotonic() + 7200)
    return time.perf_counter() - started, summary
def stats():
    with urllib.request.urlopen(admin + "/stats") as answer:
        return Counter(json.load(answer)["calls"])
timed(16)
body = json.dumps({"seconds": float(latency)}).encode()
to = fake_admin + "/_admin/latency"
urllib.request.urlopen(urllib.request.Request(to, data=body, method="POST"))
gcs.clear()
before = stats()
seconds, summary = timed(1)
sm = stats() - before
print(json.dumps({"seconds": seconds, "refreshed": summary.counts["refreshed"], "sm": sm,
                  "gcs": [[m, p, q, n] for (m, p, q), n in gcs.items()]}))
"""


@dataclasses.dataclass
class Cost:
    per_account_ms: float
    sm: dict[str, float]
    gcs: dict[str, float]

    @property
    def sm_total(self) -> float:
        return sum(self.sm.values())

    @property
    def gcs_total(self) -> float:
        return sum(self.gcs.values())


def baseline_tree(into: Path) -> Path:
    """The function folder and ``shared/`` as ``BASELINE_COMMIT`` has them."""
    archive = subprocess.run(
        ["git", "archive", BASELINE_COMMIT, "functions/hubspot_refresh", "shared"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure_cost(
    root: Path, count: int, admin: str, *, nodelay: bool, suffix: str
) -> tuple[Cost, int]:
    """One sequential forced run of ``root``'s function over ``count`` fresh accounts."""
    project, bucket = f"bench-hc-{suffix}", f"bench-hc-state-{suffix}"
    gcp.create_bucket(bucket)
    store = SecretStore(project)
    with HubSpotFake(nodelay=nodelay) as fake:
        assert isinstance(fake, HubSpotFake)
        for secret_id, value in (
            ("hubspot-client-id", fake.client_id),
            ("hubspot-client-secret", fake.client_secret),
        ):
            store.create(secret_id)
            store.add_version(secret_id, value)
        add_accounts(store, fake, count)
        env = {
            **os.environ,
            "GOOGLE_CLOUD_PROJECT": project,
            "STATE_BUCKET": bucket,
            "HUBSPOT_TOKEN_URL": f"{fake.url}{CURRENT_TOKEN_ROUTE}",
            "HUBSPOT_HTTP_ATTEMPTS": "1",
            "PYTHONPATH": "",
        }
        folder = root / "functions" / "hubspot_refresh"
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _COST_CHILD,
                str(root),
                str(folder),
                admin,
                fake.url,
                str(LATENCY),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
            timeout=3600,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"cost run of {root} failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    refreshed = int(found["refreshed"])
    gcs: Counter[str] = Counter()
    for method, path, query, n in found["gcs"]:
        gcs[gcs_kind(method, path, query)] += n
    cost = Cost(
        per_account_ms=(found["seconds"] / count - LATENCY) * 1000,
        sm=per_account(Counter(found["sm"]), refreshed),
        gcs=per_account(gcs, refreshed),
    )
    return cost, refreshed


def cost_rows(quick: bool, admin: str) -> list[dict[str, object]]:
    count = 40 if quick else 200
    with tempfile.TemporaryDirectory(prefix="hubspot-baseline-") as tmp:
        old = baseline_tree(Path(tmp))
        stalled, _ = measure_cost(old, count, admin, nodelay=False, suffix=uuid.uuid4().hex[:8])
        before, _ = measure_cost(old, count, admin, nodelay=True, suffix=uuid.uuid4().hex[:8])
    after, refreshed = measure_cost(REPO, count, admin, nodelay=True, suffix=uuid.uuid4().hex[:8])
    return [
        row(
            f"per-account cost besides HubSpot latency, sequential, {count} accounts "
            f"(baseline: commit {BASELINE_COMMIT[:7]}, fake with its 40 ms ACK stall, as reported "
            "before)",
            after.per_account_ms,
            stalled.per_account_ms,
            "<= 0.5x",
            "ms",
        ),
        row(
            f"  the same, baseline: commit {BASELINE_COMMIT[:7]} against the fixed fake (the "
            "function's own share)",
            after.per_account_ms,
            before.per_account_ms,
            "< 1x",
            "ms",
        ),
        row(
            f"Secret Manager calls per account refreshed, at the stand-in (now: "
            f"{spelled(after.sm)}; before: {spelled(before.sm)})",
            after.sm_total,
            before.sm_total,
            "< 1x",
            "calls",
        ),
        row(
            f"Cloud Storage calls per account refreshed (now: {spelled(after.gcs)}; "
            f"before: {spelled(before.gcs)})",
            after.gcs_total,
            before.gcs_total,
            "<= 1x",
            "calls",
        ),
        row(
            "accounts refreshed in the cost runs (this code)",
            float(refreshed),
            float(count),
            f"== {count} accounts",
            "accounts",
        ),
    ]


# --- 3. 10,000 accounts through shards, several function processes -------------------------


def push_envelope(message: Any, subscription: str) -> bytes:
    """What Pub/Sub's push sends for ``message`` (functions-framework turns it into a
    CloudEvent)."""
    published = message.publish_time
    return json.dumps(
        {
            "message": {
                "data": base64.b64encode(message.data).decode(),
                "messageId": message.message_id,
                "publishTime": published.isoformat().replace("+00:00", "Z"),
                "attributes": dict(message.attributes),
            },
            "subscription": subscription,
        }
    ).encode()


def post(url: str, body: bytes, timeout: float = 900) -> int:
    request = urllib.request.Request(  # noqa: S310 - the local function server
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - local
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


class Feeder(threading.Thread):
    """Pulls one work message at a time off the subscription and posts it to one function
    process, acknowledging it on a 2xx (Pub/Sub push with one request per instance)."""

    def __init__(self, subscription: str, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.subscription, self.url, self.stop = subscription, url, stop
        self.acked = 0
        self.refused = 0

    def run(self) -> None:
        client = gcp.subscriber()
        try:
            while not self.stop.is_set():
                try:
                    pulled = client.pull(
                        request={"subscription": self.subscription, "max_messages": 1},
                        timeout=5,
                    )
                except Exception:  # noqa: BLE001, S112 - an empty pull times out: pull again
                    continue
                for received in pulled.received_messages:
                    status = post(self.url, push_envelope(received.message, self.subscription))
                    if 200 <= status < 300:
                        client.acknowledge(
                            request={
                                "subscription": self.subscription,
                                "ack_ids": [received.ack_id],
                            }
                        )
                        self.acked += 1
                    else:
                        self.refused += 1
                        client.modify_ack_deadline(
                            request={
                                "subscription": self.subscription,
                                "ack_ids": [received.ack_id],
                                "ack_deadline_seconds": 0,
                            }
                        )
        finally:
            client.close()


def shard_summaries(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and '"run_summary"' in line
    ]


def sharded_rows(
    quick: bool, stack: Any, admin: str, logs: Path, in_process_rate: float
) -> list[dict[str, object]]:
    count = 400 if quick else 10_000
    shard_size = 100 if quick else 250
    suffix = uuid.uuid4().hex[:8]
    project, bucket = f"bench-hsh-{suffix}", f"bench-hsh-state-{suffix}"
    work_topic = f"hubspot-work-{suffix}"
    gcp.create_bucket(bucket)
    gcp.create_topic(project, work_topic)
    subscription = gcp.create_subscription(
        project, work_topic, f"hubspot-work-pull-{suffix}", ack_deadline_seconds=600
    )
    store = SecretStore(project)
    proxy = CountingProxy(stack.env()["STORAGE_EMULATOR_HOST"])
    servers: list[Any] = []
    stop = threading.Event()
    try:
        with HubSpotFake() as fake:
            assert isinstance(fake, HubSpotFake)
            for secret_id, value in (
                ("hubspot-client-id", fake.client_id),
                ("hubspot-client-secret", fake.client_secret),
            ):
                store.create(secret_id)
                store.add_version(secret_id, value)
            add_accounts(store, fake, count, status_secrets=True)
            env = {
                "GOOGLE_CLOUD_PROJECT": project,
                "STATE_BUCKET": bucket,
                "STORAGE_EMULATOR_HOST": proxy.url,
                "HUBSPOT_TOKEN_URL": f"{fake.url}{CURRENT_TOKEN_ROUTE}",
                "HUBSPOT_HTTP_ATTEMPTS": "1",
                "HUBSPOT_CONCURRENCY": str(CONCURRENCY),
                "HUBSPOT_SHARD_SIZE": str(shard_size),
                "HUBSPOT_WORK_TOPIC": work_topic,
            }
            with ThreadPoolExecutor(max_workers=PROCESSES) as pool:
                servers = list(
                    pool.map(
                        lambda _: devstack.start_function(
                            "hubspot_refresh",
                            "hubspot_refresh",
                            signature_type="cloudevent",
                            env=env,
                            log_dir=logs,
                            timeout=120,
                        ),
                        range(PROCESSES),
                    )
                )
            feeders = [Feeder(subscription, server.url, stop) for server in servers]
            for feeder in feeders:
                feeder.start()
            fake.latency = LATENCY
            fake.reset_observations()
            sm_before, gcs_before = sm_calls(admin), proxy.taken()
            started = time.perf_counter()
            trigger = json.dumps(
                {
                    "message": {
                        "data": base64.b64encode(b"{}").decode(),
                        "messageId": uuid.uuid4().hex,
                        "publishTime": clock.format_precise_time(clock.now()),
                    },
                    "subscription": f"projects/{project}/subscriptions/trigger",
                }
            ).encode()
            answered = post(servers[0].url, trigger)
            if not 200 <= answered < 300:
                raise RuntimeError(f"the trigger was answered {answered}")
            fan_out = next(
                (s for s in shard_summaries(servers[0].log_text()) if s["mode"] == "fan_out"),
                None,
            )
            if fan_out is None or not fan_out.get("shards"):
                raise RuntimeError(f"the fan-out did not dispatch: {servers[0].log_text()[-3000:]}")
            shards = int(fan_out["shards"])
            give_up = time.monotonic() + 3 * INTERVAL_SECONDS
            while sum(f.acked for f in feeders) < shards:
                if time.monotonic() > give_up:
                    raise RuntimeError(f"only {sum(f.acked for f in feeders)} of {shards} shards")
                time.sleep(0.2)
            wall = time.perf_counter() - started
            stop.set()
            sm = sm_calls(admin) - sm_before
            gcs = proxy.taken() - gcs_before
            max_in_flight = fake.max_in_flight
    finally:
        stop.set()
        for server in servers:
            server.stop()
        proxy.stop()

    done = [
        sum(s["refreshed"] for s in shard_summaries(server.log_text()) if s["mode"] == "shard")
        for server in servers
    ]
    refreshed = sum(done)
    outcomes: Counter[str] = Counter()
    for server in servers:
        for summary in shard_summaries(server.log_text()):
            if summary["mode"] == "shard":
                outcomes.update({k: summary.get(k, 0) for k in OUTCOMES})
        for line in server.log_text().splitlines():
            if '"severity": "WARNING"' in line or '"severity": "ERROR"' in line:
                print(line[:600], file=sys.stderr)  # what kept an account from refreshing
    others = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if v) or "none"
    rates = [n / (wall / 60) for n in done]
    rate = sum(rates) / len(rates)
    instances = math.ceil(PROJECTED_ACCOUNTS / (rate * INTERVAL_SECONDS / 60))
    sm_each, gcs_each = per_account(sm, refreshed), per_account(gcs, refreshed)
    return [
        row(
            f"{count} accounts due at once, sharded ({shard_size}/shard, {shards} shards) over "
            f"{PROCESSES} function processes: wall time",
            wall,
            None,
            f"<= {INTERVAL_SECONDS} s (one 15-minute interval)",
            "s",
        ),
        row(
            f"accounts refreshed in the sharded run (per process: {', '.join(map(str, done))}; "
            f"other outcomes: {others})",
            float(refreshed),
            float(count),
            f"== {count} accounts",
            "accounts",
        ),
        row(
            "accounts per minute per process, sharded (baseline: one in-process run at "
            f"concurrency {CONCURRENCY}, section 1)",
            rate,
            in_process_rate,
            "informative",
            "accounts/min",
        ),
        row(
            "highest concurrency the fake observed, sharded",
            float(max_in_flight),
            float(PROCESSES * CONCURRENCY),
            f"<= {PROCESSES} x {CONCURRENCY} calls",
            "calls",
        ),
        row(
            f"Secret Manager calls per account, sharded, fan-out included ({spelled(sm_each)})",
            sum(sm_each.values()),
            None,
            "informative",
            "calls",
        ),
        row(
            f"Cloud Storage calls per account, sharded ({spelled(gcs_each)})",
            sum(gcs_each.values()),
            None,
            "informative",
            "calls",
        ),
        row(
            f"projected instances for {PROJECTED_ACCOUNTS} accounts in one 15-minute interval "
            f"(at {rate:.0f} accounts/min per process)",
            float(instances),
            None,
            "informative (Secret Manager's quota must be raised too: docs/operations.md)",
            "instances",
        ),
    ]


def run(quick: bool) -> list[dict[str, object]]:
    count = 100 if quick else 1000
    registrations = 2000 if quick else 20000
    many = registration_seconds(registrations)
    few = registration_seconds(registrations // 10)

    saved = os.environ.copy()
    with tempfile.TemporaryDirectory() as logs, devstack.Stack(Path(logs)) as stack:
        stack.start(["gcs", "secretmanager", "pubsub"])
        try:
            os.environ.update(stack.env())
            admin = stack.env()["SECRET_MANAGER_EMULATOR_ADMIN"]
            suffix = uuid.uuid4().hex[:8]
            project, bucket = f"bench-hs-{suffix}", f"bench-hs-state-{suffix}"
            gcp.create_bucket(bucket)
            store = SecretStore(project)
            with HubSpotFake() as fake:
                assert isinstance(fake, HubSpotFake)
                for secret_id, value in (
                    ("hubspot-client-id", fake.client_id),
                    ("hubspot-client-secret", fake.client_secret),
                ):
                    store.create(secret_id)
                    store.add_version(secret_id, value)
                add_accounts(store, fake, count)
                main = load_function(
                    {
                        "GOOGLE_CLOUD_PROJECT": project,
                        "STATE_BUCKET": bucket,
                        "HUBSPOT_TOKEN_URL": f"{fake.url}{CURRENT_TOKEN_ROUTE}",
                        "HUBSPOT_HTTP_ATTEMPTS": "1",
                    }
                )
                timed_run(main, CONCURRENCY)  # warm-up: creates the access-token secrets
                fake.latency = LATENCY
                results = {}
                for concurrency in (1, CONCURRENCY):
                    fake.reset_observations()
                    seconds, summary = timed_run(main, concurrency)
                    results[concurrency] = (
                        seconds,
                        fake.max_in_flight,
                        summary.counts["refreshed"],
                    )
            costs = cost_rows(quick, admin)
            par_s = results[CONCURRENCY][0]
            sharded = sharded_rows(quick, stack, admin, Path(logs), count / (par_s / 60))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    seq_s, seq_max, seq_done = results[1]
    par_s, par_max, par_done = results[CONCURRENCY]
    return [
        row(f"{count} accounts, concurrency 1 (sequential)", seq_s, None, "baseline", "s"),
        row(
            f"{count} accounts, concurrency {CONCURRENCY}",
            par_s,
            seq_s,
            "<= 0.1x (>= 10x faster)",
            "s",
        ),
        row("speed-up (sequential / concurrent)", seq_s / par_s, None, ">= 10", "x"),
        row(
            "highest concurrency the fake observed",
            float(par_max),
            float(seq_max),
            f"<= {CONCURRENCY} calls (baseline: sequential run)",
            "calls",
        ),
        row(
            "accounts refreshed",
            float(par_done),
            float(seq_done),
            f"== {count} accounts (baseline: sequential run)",
            "accounts",
        ),
        row(
            "per-account cost besides HubSpot latency, sequential",
            (seq_s / count - LATENCY) * 1000,
            None,
            "informational",
            "ms",
        ),
        *costs,
        *sharded,
        row(
            f"register {registrations} fresh secrets vs a tenth as many (shared.redact)",
            many * 1000,
            few * 1000,
            "<= 15x (linear)",
            "ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="100/40/400 accounts instead of 1,000/200/10,000"
    )
    args = parser.parse_args()
    rows = run(args.quick)
    header = f"{'figure':<66} {'value':>9} {'baseline':>9} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['figure']!s:<66} {r['value']!s:>9} {r['baseline']!s:>9} "
            f"{r['ratio']!s:>7}  {r['target']} [{r['unit']}]"
        )


if __name__ == "__main__":
    main()
