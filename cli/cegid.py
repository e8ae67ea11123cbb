"""``python -m cli cegid discover|list|force``: Cegid Data Access scheduled queries.

Reads the same settings as the function (CEGID_API_URL, CEGID_TENANT_ID, CEGID_PROVIDER_ID,
CEGID_FORCE_TIME, the secret names) and the API secrets from Secret Manager of
GOOGLE_CLOUD_PROJECT with your own credentials. ``force`` moves only ``nextExecution``; the
cron of each scheduled query stays as it is.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from cli._functions import use_function_folder


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cegid", help="Cegid Data Access: discover the provider, list or force scheduled queries"
    )
    commands = parser.add_subparsers(dest="cegid_command", required=True)
    discover = commands.add_parser("discover", help="print the provider id(s) of the tenant")
    discover.set_defaults(handler=_discover)
    listing = commands.add_parser("list", help="scheduled queries: name, enabled, cron, runs")
    listing.set_defaults(handler=_list)
    force = commands.add_parser(
        "force", help="move nextExecution of scheduled queries (the cron is untouched)"
    )
    force.add_argument("--name", help="only queries whose name contains this (any case)")
    force.add_argument(
        "--time",
        help="HH:MM UTC (next occurrence); default CEGID_FORCE_TIME, else now + 15 minutes",
    )
    force.set_defaults(handler=_force)


def _module() -> Any:
    """The function folder's cegid_api module (a top-level module there, as deployed)."""
    use_function_folder("cegid_transfer")
    return importlib.import_module("cegid_api")


def _api() -> Any:
    from shared.http import HttpClient
    from shared.secrets import SecretStore
    from shared.settings import project_id

    api = _module()
    settings = api.ApiSettings.from_env()
    store = SecretStore(project_id())
    return api.CegidApi(settings, api.read_credentials(store, settings), HttpClient(timeout=30))


def _fail(error: Exception) -> int:
    print(f"cegid: {error}", file=sys.stderr)
    return 1


def _discover(_args: argparse.Namespace) -> int:
    from shared.errors import ProviderError

    try:
        providers = _api().discover_providers()
    except ProviderError as error:
        return _fail(error)
    if not providers:
        print("no provider found in the tenant's data sources", file=sys.stderr)
        return 1
    for provider in providers:
        print(f"{provider['providerId']}  {provider['label']}  ({provider['sources']} sources)")
    print("set CEGID_PROVIDER_ID to the provider id above", file=sys.stderr)
    return 0


def _list(_args: argparse.Namespace) -> int:
    from shared.errors import ProviderError

    scheduler_name = _module().scheduler_name

    try:
        schedulers = _api().schedulers()
    except ProviderError as error:
        return _fail(error)
    rows = [("NAME", "ENABLED", "CRON", "NEXT EXECUTION", "LAST EXECUTION")]
    for s in sorted(schedulers, key=scheduler_name):
        rows.append(
            (
                scheduler_name(s),
                "yes" if s.get("enable") else "no",
                str(s.get("cron") or ""),
                str(s.get("nextExecution") or "-"),
                str(s.get("lastExecution") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _force(args: argparse.Namespace) -> int:
    from shared.errors import ProviderError
    from shared.settings import env_optional

    api = _module()
    try:
        when = api.force_time(args.time, env_optional("CEGID_FORCE_TIME"))
    except api.BadForceRequest as error:
        return _fail(error)
    try:
        done, failed = api.force(_api(), args.name, when)
    except ProviderError as error:
        return _fail(error)
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    for name in done:
        print(f"forced {name}: next execution {stamp}")
    for name, problem in failed:
        print(f"failed {name}: {problem}", file=sys.stderr)
    if not done and not failed:
        print(f"no scheduled query matches {args.name!r}", file=sys.stderr)
        return 1
    return 1 if failed else 0
