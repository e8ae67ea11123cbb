"""hubspot_refresh: many accounts refreshed sequentially and with a bounded pool, same run.

    python -m benchmarks.hubspot_refresh [--quick]

1,000 accounts (``--quick``: 100) live in the Secret Manager stand-in, their locks on
fake-gcs-server (both started here as subprocesses); the HubSpot fake answers every token call
after 200 ms. The function's own ``run`` is called in-process with a forced request, first
with ``HUBSPOT_CONCURRENCY=1`` (the sequential way, the baseline) then 16; the fake reports the
highest number of token calls it saw in flight at once. A warm-up run before both creates
every access-token secret, so neither measured run pays for that.

Redaction: every token the run receives is registered with ``shared.redact``; a row checks
that registering grows linearly (10x the values costs about 10x the time).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from devtools import gcp
from devtools import stack as devstack
from devtools.fakes.hubspot import V1_TOKEN_ROUTE, HubSpotFake
from shared import clock
from shared.secrets import SecretStore

REPO = Path(__file__).resolve().parent.parent
FUNCTION_DIR = REPO / "functions" / "hubspot_refresh"
LATENCY = 0.2
CONCURRENCY = 16


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


def add_accounts(store: SecretStore, fake: HubSpotFake, count: int) -> list[str]:
    accounts = [str(100000 + i) for i in range(count)]

    def add(account: str) -> None:
        secret = f"hubspot-{account}-refresh-token"
        labels = {"integration": "hubspot", "hubspot-account": account, "enabled": "true"}
        store.create(secret, labels=labels)
        store.add_version(secret, fake.new_refresh_token(int(account)))

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


def run(quick: bool) -> list[dict[str, object]]:
    count = 100 if quick else 1000
    registrations = 2000 if quick else 20000
    many = registration_seconds(registrations)
    few = registration_seconds(registrations // 10)

    saved = os.environ.copy()
    with tempfile.TemporaryDirectory() as logs, devstack.Stack(Path(logs)) as stack:
        stack.start(["gcs", "secretmanager"])
        try:
            os.environ.update(stack.env())
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
                        "HUBSPOT_TOKEN_URL": f"{fake.url}{V1_TOKEN_ROUTE}",
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
    parser.add_argument("--quick", action="store_true", help="100 accounts instead of 1,000")
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
