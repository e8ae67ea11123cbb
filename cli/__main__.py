"""Entry point: each ``cli/<name>.py`` module with a ``register(subparsers)`` adds a command."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path

import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli", description="Operate the integration keep-alive functions."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"cli.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    args = parser.parse_args(argv)
    if "project" in args and not args.project and not os.environ.get("GOOGLE_CLOUD_PROJECT"):
        # Every command that reaches the project's services takes --project.
        print(f"{args.command}: give --project or set GOOGLE_CLOUD_PROJECT", file=sys.stderr)
        return 2
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
