"""``python -m cli hubspot ...``: add, enable, disable and list HubSpot accounts.

An account is a Secret Manager secret; this command writes its name, labels and annotations
the way ``hubspot_refresh`` reads them, so nobody hand-crafts labels::

    python -m cli hubspot add-account 62515 < refresh-token.txt
    python -m cli hubspot add-account 62515 --token-file refresh-token.txt \\
        --client-id-secret hubspot-app2-client-id --client-secret-secret hubspot-app2-client-secret
    python -m cli hubspot disable 62515
    python -m cli hubspot list

The refresh token is read from stdin (typed without echo on a terminal) or from a file, never
from the command line, where it would land in shell history and process listings; it is never
printed. Adding a token to an existing account stores it as a new version: that is how an
account marked ``needs-reauth`` is brought back after re-authorising the app.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import sys
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc

from cli._functions import use_function_folder
from shared.secrets import SecretStore

use_function_folder("hubspot_refresh")
# Imported by name at run time: the module lives in the function folder, which mypy's default
# search path does not include (with MYPYPATH=functions/hubspot_refresh a plain import works).
accounts: Any = importlib.import_module("hubspot_accounts")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "hubspot", help="HubSpot accounts refreshed by hubspot_refresh", description=__doc__
    )
    parser.add_argument("--project", help="Google Cloud project (default GOOGLE_CLOUD_PROJECT)")
    commands = parser.add_subparsers(dest="hubspot_command", required=True)

    add = commands.add_parser(
        "add-account",
        help="store an account's refresh token (stdin or --token-file) and label it",
    )
    add.add_argument("account", help="HubSpot account (hub id), e.g. 62515")
    add.add_argument(
        "--token-file",
        type=Path,
        help="file holding the refresh token (default: read stdin; '-' means stdin too)",
    )
    add.add_argument("--client-id-secret", help="secret id of another app's client id")
    add.add_argument("--client-secret-secret", help="secret id of another app's client secret")
    add.add_argument(
        "--disabled",
        action="store_true",
        help="store it with refreshes off; it stays disabled until `hubspot enable`",
    )
    add.set_defaults(handler=cmd_add_account)

    for name, enabled in (("enable", True), ("disable", False)):
        sub = commands.add_parser(name, help=f"{name} refreshes of an account")
        sub.add_argument("account")
        sub.set_defaults(handler=cmd_enable if enabled else cmd_disable)

    listing = commands.add_parser("list", help="every account with its status")
    listing.set_defaults(handler=cmd_list)


# --- operations (tests call these with a SecretStore on the emulator) -----------------------


class CommandError(RuntimeError):
    """A mistake the user can fix; the message says how."""


def add_account(
    store: SecretStore,
    account: str,
    refresh_token: str,
    *,
    client_id_secret: str | None = None,
    client_secret_secret: str | None = None,
    enabled: bool = True,
) -> int:
    """Create or update the account's refresh-token secret; returns the new version number."""
    accounts.check_account_id(account)
    token = refresh_token.strip()
    if not token or any(ch.isspace() for ch in token):
        raise CommandError("the refresh token is empty or contains spaces; paste it alone")
    if bool(client_id_secret) != bool(client_secret_secret):
        raise CommandError("give both --client-id-secret and --client-secret-secret, or neither")
    secret_id = accounts.refresh_token_secret(account)
    labels = {**accounts.account_labels(account), accounts.ENABLED_LABEL: str(enabled).lower()}
    annotations: dict[str, str | None] = {}
    if client_id_secret and client_secret_secret:
        annotations = {
            accounts.CLIENT_ID_ANNOTATION: client_id_secret,
            accounts.CLIENT_SECRET_ANNOTATION: client_secret_secret,
        }
    store.create(secret_id, labels=labels)
    # The access-token secret too, so the function needs no permission to create secrets.
    store.create(accounts.access_token_secret(account), labels=accounts.account_labels(account))
    # An existing secret keeps its other labels; these three are set either way.
    store.update_labels(secret_id, dict(labels))
    if annotations:
        store.update_annotations(secret_id, annotations)
    return store.add_version(secret_id, token)


def set_enabled(store: SecretStore, account: str, enabled: bool) -> None:
    accounts.check_account_id(account)
    secret_id = accounts.refresh_token_secret(account)
    if store.info_optional(secret_id) is None:
        raise CommandError(f"no account {account}: secret {secret_id} does not exist")
    store.update_labels(secret_id, {accounts.ENABLED_LABEL: str(enabled).lower()})


COLUMNS = ("account", "enabled", "state", "expires-at", "refreshed-at", "failures", "app")
# The state of an account no run has refreshed yet: the word ``cli status`` shows for it.
NEVER_REFRESHED = "pending"


def list_rows(store: SecretStore) -> list[dict[str, str]]:
    rows = []
    for account in accounts.discover(store):
        status = account.status_annotations or {}
        rows.append(
            {
                "account": account.account_id,
                "enabled": "yes" if account.enabled else "no",
                "state": status.get("state", NEVER_REFRESHED),
                "expires-at": status.get("expires-at", "-"),
                "refreshed-at": status.get("refreshed-at", "-"),
                "failures": status.get("failure-count", "0"),
                "app": account.client_id_secret or "default",
                "next-attempt-at": status.get("next-attempt-at", ""),
                "last-error": status.get("last-error", ""),
            }
        )
    return rows


# --- handlers -------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> SecretStore:
    return SecretStore(args.project) if args.project else SecretStore()


def read_token(token_file: Path | None) -> str:
    """The refresh token from a file or stdin; on a terminal it is typed without echo."""
    if token_file is not None and str(token_file) != "-":
        return token_file.read_text("utf-8")
    if sys.stdin.isatty():
        return getpass.getpass("HubSpot refresh token (not echoed): ")
    return sys.stdin.read()


def cmd_add_account(args: argparse.Namespace) -> int:
    try:
        token = read_token(args.token_file)
        version = add_account(
            _store(args),
            args.account,
            token,
            client_id_secret=args.client_id_secret,
            client_secret_secret=args.client_secret_secret,
            enabled=not args.disabled,
        )
    except (CommandError, accounts.BadAccountId, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stored = (
        f"stored the refresh token of account {args.account} as version {version} of secret "
        f"{accounts.refresh_token_secret(args.account)}"
    )
    if args.disabled:
        print(
            f"{stored} (disabled); it stays disabled, and no run refreshes it, until "
            f"`python -m cli hubspot enable {args.account}`"
        )
    else:
        print(f"{stored} (enabled); the next run refreshes it")
    return 0


def _cmd_set_enabled(args: argparse.Namespace, enabled: bool) -> int:
    try:
        set_enabled(_store(args), args.account, enabled)
    except (CommandError, accounts.BadAccountId, gexc.NotFound) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"account {args.account} {'enabled' if enabled else 'disabled'}")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    return _cmd_set_enabled(args, True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _cmd_set_enabled(args, False)


def cmd_list(args: argparse.Namespace) -> int:
    rows = list_rows(_store(args))
    if not rows:
        print("no HubSpot accounts (add one with: python -m cli hubspot add-account <id>)")
        return 0
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in COLUMNS))
        if row["state"] in ("backoff", "needs-reauth"):
            detail = f"next attempt {row['next-attempt-at']}" if row["next-attempt-at"] else ""
            print(f"    {row['last-error'][:160]} {detail}".rstrip())
    return 0
