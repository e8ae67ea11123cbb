"""``python -m cli universign track|show|sync``: Universign transactions, as the functions keep
them::

    python -m cli universign track tx_123 --reference DEV-2024-0042
    python -m cli universign show tx_123            # status, signers, history, sync log
    python -m cli universign sync tx_123            # re-read it now, even if final

``track`` and ``sync`` publish ``{"track": [{"transaction_id": ..., "reference": ...}]}`` to
``universign-poll-trigger``, the message an app publishes itself: ``universign_poll`` syncs the
transaction at once and keeps it in its polling index. They then wait (``--wait`` seconds, 0
not to) until the function has synced it and print the result. ``show`` reads the transaction
document and its sync log from the state bucket. Credentials are your own (Application
Default Credentials); ``PUBSUB_EMULATOR_HOST`` and ``STORAGE_EMULATOR_HOST`` are honoured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any

from cli._functions import use_function_folder
from shared import clock
from shared.redact import safe_url

use_function_folder("universign_webhook")
# Imported by name at run time: the modules live in the function folder (see cli/hubspot.py).
plan: Any = importlib.import_module("universign_plan")
state: Any = importlib.import_module("universign_state")

TRIGGER_TOPIC = "universign-poll-trigger"


class CommandError(RuntimeError):
    """A mistake the user can fix; the message says how."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "universign",
        help="Universign transactions: track one, show it, sync it now",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(parser, None)
    # The same options after the command too (``universign show tx --project P``).
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="universign_command", required=True)

    track = commands.add_parser(
        "track", parents=[common], help="start tracking a transaction (and sync it now)"
    )
    track.add_argument("transaction_id")
    track.add_argument("--reference", help="your own document id, carried in every event")
    track.add_argument("--wait", type=float, default=30.0, help="seconds to wait (0: none)")
    track.set_defaults(handler=cmd_track)

    show = commands.add_parser(
        "show", parents=[common], help="status, signers, history and sync log"
    )
    show.add_argument("transaction_id")
    show.add_argument("--log", type=int, default=20, help="sync log entries shown (newest)")
    show.add_argument("--json", action="store_true", help="the document and the whole log")
    show.set_defaults(handler=cmd_show)

    sync = commands.add_parser(
        "sync", parents=[common], help="re-read a transaction now, even if final"
    )
    sync.add_argument("transaction_id")
    sync.add_argument("--wait", type=float, default=60.0, help="seconds to wait (0: none)")
    sync.set_defaults(handler=cmd_sync)


def _common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--project", default=default, help="Google Cloud project (default GOOGLE_CLOUD_PROJECT)"
    )
    parser.add_argument(
        "--bucket",
        default=default,
        help="the state bucket (default UNIVERSIGN_STATE_BUCKET, else <project>-universign-state "
        "as Terraform names it)",
    )
    parser.add_argument(
        "--topic",
        default=TRIGGER_TOPIC if default is None else default,
        help=f"the poll's trigger topic (default {TRIGGER_TOPIC})",
    )


# --- operations (tests call these against the emulators) --------------------------------------


def track_message(transaction_id: str, reference: str | None) -> dict[str, Any]:
    """The message, checked by the function's own parser before anything is published."""
    entry: dict[str, Any] = {"transaction_id": transaction_id}
    if reference is not None:
        entry["reference"] = reference
    message = {"track": [entry]}
    try:
        plan.parse_poll_trigger(message)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return message


def publish(project: str, topic: str, message: dict[str, Any]) -> str:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    try:
        future = publisher.publish(
            publisher.topic_path(project, topic),
            json.dumps(message, separators=(",", ":")).encode("utf-8"),
        )
        return str(future.result(timeout=60))
    finally:
        publisher.transport.close()


def read_document(bucket: Any, transaction_id: str) -> dict[str, Any] | None:
    doc, _generation = state.StateStore(bucket).read(transaction_id)
    return doc if isinstance(doc, dict) else None


def read_log(bucket: Any, transaction_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = state.StateStore(bucket).read_log(transaction_id)
    return entries


def log_size(bucket: Any, transaction_id: str) -> int:
    """How many sync log entries there are (names only: no entry is read)."""
    prefix = f"{state.SYNC_LOG}{transaction_id}/"
    return sum(1 for _ in bucket.list_blobs(prefix=prefix, fields="items(name),nextPageToken"))


def wait_for_sync(
    bucket: Any, transaction_id: str, after: int, seconds: float
) -> dict[str, Any] | None:
    """The document once a sync newer than ``after`` (sync log entries already there) shows
    in its log; None when ``seconds`` ran out first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log_size(bucket, transaction_id) > after:
            return read_document(bucket, transaction_id)
        time.sleep(0.5)
    return None


def render(doc: dict[str, Any], log: list[dict[str, Any]], *, log_size: int) -> str:
    lines = [f"transaction   {doc.get('transaction_id')}"]
    status = doc.get("status") or "not synced yet"
    lines.append(f"status        {status} (Universign: {doc.get('universign_state') or '-'})")
    lines.append(f"reference     {doc.get('reference') or '-'}")
    lines.append(f"tracked at    {doc.get('tracked_at') or '-'}")
    lines.append(
        f"last sync     {doc.get('last_sync_at') or '-'}  ({doc.get('sync_attempts', 0)} syncs)"
    )
    if doc.get("last_error"):
        lines.append(f"last error    {doc['last_error']}")
    # A signing URL lets whoever holds it sign: shown without query or fragment here (--json
    # prints the document as stored).
    for name in ("signer_url", "document_url"):
        value = doc.get(name)
        lines.append(f"{name.replace('_', ' '):<14}{safe_url(value) if value else '-'}")
    if doc.get("refusal"):
        refusal = doc["refusal"]
        lines.append(f"refusal       {refusal.get('reason')} by {refusal.get('participant')}")
    archive = doc.get("archive") or {}
    if archive:
        lines.append(f"archive       {archive.get('status')} ({len(archive.get('objects') or {})})")
    lines.append("signers")
    for signer in doc.get("signers") or []:
        lines.append(
            f"  {signer.get('order', 0) + 1}. {signer.get('email') or signer.get('id') or '?'}"
            f"  {signer.get('state') or '-'}  viewed {signer.get('viewed_at') or '-'}"
            f"  signed {signer.get('signed_at') or '-'}"
            + (f"  refused {signer['refused_at']}" if signer.get("refused_at") else "")
        )
    shown = log[-log_size:] if log_size > 0 else []
    lines.append(f"sync log (last {len(shown)} of {len(log)}, oldest first)")
    for entry in shown:
        moved = (
            f"{entry.get('previous') or 'new'} -> {entry.get('status')}"
            if "previous" in entry
            else str(entry.get("status"))
        )
        changes = ",".join(entry.get("changes") or []) or "-"
        took = f"{entry['response_ms']}ms" if entry.get("response_ms") is not None else "-"
        outcome = "ok" if entry.get("ok") else f"failed: {entry.get('error', '')}"
        lines.append(
            f"  {entry.get('at')}  {entry.get('source')}  {moved}  changes {changes}  "
            f"{took}  {outcome}"
        )
    return "\n".join(lines)


# --- handlers ----------------------------------------------------------------------------------


def _project(args: argparse.Namespace) -> str:
    project = args.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise CommandError("give --project or set GOOGLE_CLOUD_PROJECT")
    return str(project)


def _bucket(args: argparse.Namespace, project: str) -> Any:
    from google.cloud import storage  # type: ignore[attr-defined]

    name = args.bucket or os.environ.get("UNIVERSIGN_STATE_BUCKET") or f"{project}-universign-state"
    return storage.Client(project=project).bucket(name)


def _check_id(transaction_id: str) -> None:
    if not state.TRANSACTION_ID.fullmatch(transaction_id):
        raise CommandError(f"{transaction_id!r} is not a Universign transaction id")


def _publish_and_wait(
    args: argparse.Namespace, transaction_id: str, reference: str | None, verb: str
) -> int:
    project = _project(args)
    _check_id(transaction_id)
    message = track_message(transaction_id, reference)
    bucket = _bucket(args, project)
    before = log_size(bucket, transaction_id) if args.wait > 0 else 0
    message_id = publish(project, args.topic, message)
    print(f"{verb} {transaction_id}: published to {args.topic} (message {message_id})")
    if args.wait <= 0:
        return 0
    doc = wait_for_sync(bucket, transaction_id, before, args.wait)
    if doc is None:
        # Not an error of the request: the function may be busy; the poll keeps it.
        print(
            f"not synced within {args.wait:g}s; see `python -m cli universign show "
            f"{transaction_id}` later",
            file=sys.stderr,
        )
        return 1
    last = (doc.get("history") or [{}])[-1]
    if last.get("ok"):
        print(f"{transaction_id}: {doc.get('status')} (Universign: {doc.get('universign_state')})")
        return 0
    print(f"{transaction_id}: sync failed: {last.get('error') or doc.get('last_error')}")
    return 1


def cmd_track(args: argparse.Namespace) -> int:
    try:
        return _publish_and_wait(args, args.transaction_id, args.reference, "track")
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def cmd_sync(args: argparse.Namespace) -> int:
    try:
        return _publish_and_wait(args, args.transaction_id, None, "sync")
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def cmd_show(args: argparse.Namespace) -> int:
    try:
        project = _project(args)
        _check_id(args.transaction_id)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bucket = _bucket(args, project)
    doc = read_document(bucket, args.transaction_id)
    if doc is None:
        print(
            f"error: {args.transaction_id} is not tracked (track it with: python -m cli "
            f"universign track {args.transaction_id})",
            file=sys.stderr,
        )
        return 1
    log = read_log(bucket, args.transaction_id)
    if args.json:
        print(json.dumps({"document": doc, "sync_log": log}, indent=2, sort_keys=True))
    else:
        print(render(doc, log, log_size=args.log))
        print(f"(as of {clock.format_time(clock.now())})")
    return 0
