"""The main job, locally: ``make demo`` (or ``.venv/bin/python -m devtools.demo``).

Starts the emulators and every provider fake, seeds what an operator would seed, serves each
function under functions-framework (behind a Pub/Sub push subscription, or on a local port for
the two webhooks), runs each Scheduler job as ``gcloud scheduler jobs run`` does, and prints
what happened, a few lines per integration; then ``python -m cli status``. One story per
integration lives in ``devtools/demo_<integration>.py``; ``--integration NAME`` runs one.
Everything runs on 127.0.0.1 and stops at the end; the logs folder is kept and named.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

# gRPC prints connection notices at shutdown that say nothing about the demo; it reads this
# when first imported, so it is set before anything imports it.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from devtools import (
    demo_bitrix24,
    demo_cegid,
    demo_graph,
    demo_hubspot,
    demo_universign,
)
from devtools.demo_kit import Demo, DemoFailed, say, step
from devtools.stack import Stack

PROJECT = "local-project"
STORIES: dict[str, ModuleType] = {
    "bitrix24": demo_bitrix24,
    "hubspot": demo_hubspot,
    "graph": demo_graph,
    "cegid": demo_cegid,
    "universign": demo_universign,
}


def show_status(demo: Demo) -> None:
    """What an operator sees; something needing attention fails the demo."""
    from cli.__main__ import main as cli_main

    exports = "".join(f"{key}={value} " for key, value in demo.status_env.items())
    say(f"\n== What an operator sees: {exports}python -m cli status --project {demo.project} ==")
    os.environ.update(demo.status_env)
    with demo.step("python -m cli status: one row per credential and subscription"):
        code = cli_main(["status", "--project", demo.project])
        if code != 0:
            raise RuntimeError(f"exit status {code}: an item above needs attention")


def run(names: list[str], log_dir: Path) -> None:
    services = list(dict.fromkeys(s for name in names for s in STORIES[name].SERVICES))
    say(f"== Local stack: {', '.join(services)} on 127.0.0.1 ==")
    with Stack(log_dir, project=PROJECT) as stack:
        with step(f"start the emulators ({', '.join(services)})", log_dir):
            stack.start(services)
        env = stack.env()
        os.environ.update(env)
        from shared.secrets import SecretStore

        demo = Demo(PROJECT, log_dir, env, SecretStore(PROJECT))
        try:
            for name in names:
                say(f"\n== {STORIES[name].TITLE} ==")
                try:
                    STORIES[name].run(demo)
                except (DemoFailed, KeyboardInterrupt):
                    raise
                except Exception as error:  # outside a step: named by its story
                    raise DemoFailed(f"the {name} story", error, log_dir) from error
            show_status(demo)
        finally:
            demo.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument(
        "--integration",
        choices=sorted(STORIES),
        help="run this integration's story only (default: all five)",
    )
    args = parser.parse_args(argv)
    names = [args.integration] if args.integration else list(STORIES)
    log_dir = Path(tempfile.mkdtemp(prefix="keepalive-demo-"))
    started = time.monotonic()
    try:
        run(names, log_dir)
    except DemoFailed as failure:
        print(
            f"\nDEMO FAILED at step: {failure.step}\n"
            f"  {type(failure.error).__name__}: {failure.error}\n"
            f"  logs: {failure.logs}\n"
            f"  all logs of this run: {log_dir}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    say(f"\nLogs of this run: {log_dir}")
    say(f"Demo took {time.monotonic() - started:.0f}s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
