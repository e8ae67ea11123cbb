"""``python -m cli cegid discover|list|force|pull``: Cegid Data Access scheduled queries, and
the exported files brought to a local folder.

Settings (tenant, provider id, API URL, force time, the secret names, the bucket) come from a
flag, else the environment (CEGID_TENANT_ID, CEGID_PROVIDER_ID, CEGID_API_URL,
CEGID_FORCE_TIME, CEGID_BUCKET, ...), else the deployed function's environment read through
the Cloud Functions API (``cegid-queries``; ``cegid-transfer`` for ``pull``), else the code's
default; ``--verbose`` says which. The API secrets are read from Secret Manager of the project
with your own credentials. ``force`` moves only ``nextExecution``; the cron of each scheduled
query stays as it is.

``pull --to DIR`` downloads the files of ``gs://$CEGID_BUCKET/cegid/`` that DIR does not have
yet (same relative paths), each checked against its CRC32C and written to a temporary file
renamed into place, so a reader of DIR never sees a partial file. It never deletes or changes
anything in the bucket, prints one line per new file and nothing when there is none, and a
run that finds another still going (a lock file in DIR) leaves it the work: safe from cron
every minute.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import importlib
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from cli._functions import Settings, region, use_function_folder

QUERIES_FUNCTION = "cegid-queries"  # terraform/cegid.tf: the API settings and CEGID_FORCE_TIME
TRANSFER_FUNCTION = "cegid-transfer"  # terraform/cegid.tf: the bucket and its prefix
API_SETTINGS = [
    "CEGID_API_URL",
    "CEGID_TENANT_ID",
    "CEGID_PROVIDER_ID",
    "CEGID_TOKEN_PATH",
    "CEGID_SAS_PATH",
    "CEGID_DISCOVERY_PATH",
    "CEGID_SCHEDULERS_PATH",
    "CEGID_SCHEDULER_UPDATE_PATH",
    "CEGID_API_KEY_ID_SECRET",
    "CEGID_API_KEY_SECRET_SECRET",
    "CEGID_SUBSCRIPTION_KEY_SECRET",
]
# What --verbose reports: the values a person checks first.
SHOWN = ("CEGID_TENANT_ID", "CEGID_PROVIDER_ID", "CEGID_API_URL", "CEGID_FORCE_TIME")
LOCK_NAME = ".cegid-pull.lock"
PART_SUFFIX = ".cegid-part"


class UsageError(RuntimeError):
    """A setting is missing or wrong; the message says how to give it (exit status 2)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cegid",
        help="Cegid Data Access: discover the provider, list or force scheduled queries, "
        "pull the exported files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(parser, None)
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
    pull = commands.add_parser(
        "pull", help="download the files of gs://$CEGID_BUCKET/cegid/ that DIR does not have"
    )
    pull.add_argument("--to", required=True, type=Path, metavar="DIR", help="local folder")
    pull.add_argument("--bucket", help="export bucket (default CEGID_BUCKET, else deployed)")
    pull.set_defaults(handler=_pull)
    for command in (discover, listing, force, pull):
        # Also accepted after the command; SUPPRESS keeps a value given before it.
        _common_options(command, argparse.SUPPRESS)


def _common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--project", default=default, help="Google Cloud project (default GOOGLE_CLOUD_PROJECT)"
    )
    parser.add_argument(
        "--region", default=default, help="region of the functions (default REGION)"
    )
    parser.add_argument("--api-url", default=default, help="Cegid API (default CEGID_API_URL)")
    parser.add_argument("--tenant-id", default=default, help="default CEGID_TENANT_ID")
    parser.add_argument("--provider-id", default=default, help="default CEGID_PROVIDER_ID")
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default if default is argparse.SUPPRESS else False,
        help="say where each setting came from",
    )


# --------------------------------------------------------------------------- settings


def _project(args: argparse.Namespace) -> str:
    # cli/__main__.py refuses to start without one; the flag wins over the environment.
    return str(args.project or os.environ["GOOGLE_CLOUD_PROJECT"])


def _settings(args: argparse.Namespace, function: str, **flags: str | None) -> Settings:
    return Settings(_project(args), region(args.region), function, flags)


def _explain(settings: Settings, names: tuple[str, ...]) -> None:
    """--verbose: each value and where it came from, on stderr (none of them is a secret)."""
    from shared.redact import redact

    for name in names:
        value = settings.get(name)
        shown = redact(value) if value else "(not set)"
        print(f"{name}={shown}  [{settings.sources[name]}]", file=sys.stderr)


def _module() -> Any:
    """The function folder's cegid_api module (a top-level module there, as deployed)."""
    use_function_folder("cegid_transfer")
    return importlib.import_module("cegid_api")


def _api_settings(args: argparse.Namespace) -> tuple[Any, Settings]:
    settings = _settings(
        args,
        QUERIES_FUNCTION,
        CEGID_API_URL=args.api_url,
        CEGID_TENANT_ID=args.tenant_id,
        CEGID_PROVIDER_ID=args.provider_id,
    )
    api_settings = _module().ApiSettings.from_env(settings.mapping(API_SETTINGS))
    if args.verbose:
        _explain(settings, SHOWN)
    if not api_settings.tenant_id:
        raise UsageError(
            "no tenant: give --tenant-id or set CEGID_TENANT_ID"
            + (f" ({settings.deployed_error})" if settings.deployed_error else "")
        )
    return api_settings, settings


def _api(args: argparse.Namespace, *, needs_provider: bool = True) -> tuple[Any, Settings]:
    """A Cegid API client, and the settings it was made from."""
    from shared.http import HttpClient
    from shared.secrets import SecretStore

    api = _module()
    api_settings, settings = _api_settings(args)
    if needs_provider and not api_settings.provider_id:
        raise UsageError(
            "no provider id: give --provider-id or set CEGID_PROVIDER_ID "
            "(python -m cli cegid discover prints it)"
        )
    store = SecretStore(_project(args))
    credentials = api.read_credentials(store, api_settings)
    return api.CegidApi(api_settings, credentials, HttpClient(timeout=30)), settings


def _fail(error: Exception) -> int:
    print(f"cegid: {error}", file=sys.stderr)
    return 2 if isinstance(error, UsageError) else 1


# --------------------------------------------------------------------------- scheduled queries


def _discover(args: argparse.Namespace) -> int:
    from shared.errors import ProviderError

    try:
        providers = _api(args, needs_provider=False)[0].discover_providers()
    except (ProviderError, UsageError) as error:
        return _fail(error)
    if not providers:
        print("no provider found in the tenant's data sources", file=sys.stderr)
        return 1
    for provider in providers:
        print(f"{provider['providerId']}  {provider['label']}  ({provider['sources']} sources)")
    print("set CEGID_PROVIDER_ID to the provider id above", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from shared.errors import ProviderError

    scheduler_name = _module().scheduler_name

    try:
        schedulers = _api(args)[0].schedulers()
    except (ProviderError, UsageError) as error:
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

    api = _module()
    try:
        client, settings = _api(args)
        # The flag is --time; CEGID_FORCE_TIME comes from where the API settings came from.
        when = api.force_time(args.time, settings.get("CEGID_FORCE_TIME"))
        done, failed = api.force(client, args.name, when)
    except (api.BadForceRequest, UsageError) as error:
        return _fail(error)
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


# --------------------------------------------------------------------------- pull


@dataclass
class PullResult:
    pulled: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    busy: bool = False


def local_path(target: Path, prefix: str, object_name: str) -> Path | None:
    """Where ``object_name`` lands under ``target``: its path below ``prefix``; None for a
    folder marker or a name that would leave ``target`` (``..``, absolute, empty parts)."""
    relative = object_name[len(prefix) :]
    parts = relative.split("/")
    if not relative or relative.endswith("/"):
        return None
    if any(part in ("", ".", "..") or "\x00" in part for part in parts):
        return None
    if PurePosixPath(relative).is_absolute():
        return None
    return target.joinpath(*parts)


class _Crc32cWriter:
    """The file the download writes into, with the CRC32C of every byte written."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.crc = 0

    def write(self, data: bytes) -> int:
        import google_crc32c

        self.crc = google_crc32c.extend(self.crc, data)
        return self.file.write(data)

    def digest_b64(self) -> str:
        return base64.b64encode(int(self.crc).to_bytes(4, "big")).decode()


@contextlib.contextmanager
def _pull_lock(target: Path) -> Iterator[bool]:
    """True while this run holds DIR's lock; False when another run holds it."""
    with (target / LOCK_NAME).open("a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(target: Path) -> None:
    # Temporary files of a run that died; under the lock, none belongs to a live run.
    for folder, _dirs, files in os.walk(target):
        for name in files:
            if name.startswith(".") and name.endswith(PART_SUFFIX):
                (Path(folder) / name).unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _download(blob: Any, destination: Path) -> int:
    """``blob`` (that very generation) into ``destination`` through a temporary file beside
    it, checked against the object's CRC32C; returns its size. Nothing is left on failure."""
    if not blob.crc32c:
        raise ValueError("Cloud Storage reported no CRC32C to check the download against")
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.parent / f".{destination.name}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}"
    try:
        with temporary.open("xb") as file:
            writer = _Crc32cWriter(file)
            # The stored bytes, as the CRC32C was computed over them (no decoding).
            blob.download_to_file(writer, raw_download=True, checksum=None)
            file.flush()
            os.fsync(file.fileno())
        if writer.digest_b64() != blob.crc32c:
            raise ValueError("CRC32C of the bytes downloaded differs from the object's")
        if destination.exists():
            raise FileExistsError(f"{destination} appeared meanwhile; it is left as it is")
        temporary.replace(destination)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(destination.parent)
    return destination.stat().st_size


def pull(bucket: Any, prefix: str, target: Path) -> PullResult:
    """Download what ``target`` does not have of ``bucket``'s objects under ``prefix``; never
    writes to the bucket. One file's failure is recorded; the others go on."""
    result = PullResult()
    target.mkdir(parents=True, exist_ok=True)
    with _pull_lock(target) as held:
        if not held:
            result.busy = True
            return result
        _remove_leftovers(target)
        for listed in bucket.list_blobs(prefix=prefix):
            if listed.name.endswith("/"):
                continue  # a folder marker, no file
            destination = local_path(target, prefix, listed.name)
            if destination is None:
                result.failed.append((listed.name, "refused: the name would leave the folder"))
                continue
            if destination.exists():
                continue
            blob = bucket.blob(listed.name, generation=listed.generation)
            blob.crc32c = listed.crc32c
            try:
                size = _download(blob, destination)
            except Exception as error:  # noqa: BLE001 - one file never stops the others
                result.failed.append((listed.name, f"{type(error).__name__}: {error}"))
                continue
            result.pulled.append(listed.name)
            print(f"pulled gs://{bucket.name}/{listed.name} -> {destination} ({size} bytes)")
    return result


def _pull(args: argparse.Namespace) -> int:
    from google.cloud import storage  # type: ignore[attr-defined]

    from shared.redact import redact

    settings = _settings(args, TRANSFER_FUNCTION, CEGID_BUCKET=args.bucket)
    bucket_name = settings.get("CEGID_BUCKET")
    prefix = settings.get("CEGID_PREFIX", "cegid/") or "cegid/"
    if args.verbose:
        _explain(settings, ("CEGID_BUCKET", "CEGID_PREFIX"))
    if not bucket_name:
        return _fail(
            UsageError(
                "no bucket: give --bucket or set CEGID_BUCKET"
                + (f" ({settings.deployed_error})" if settings.deployed_error else "")
            )
        )
    bucket = storage.Client(project=_project(args)).bucket(bucket_name)
    try:
        result = pull(bucket, prefix, args.to)
    except OSError as error:
        return _fail(error)
    except Exception as error:  # noqa: BLE001 - the listing failed: one line, no traceback
        return _fail(RuntimeError(redact(f"listing gs://{bucket_name}/{prefix}: {error}")[:300]))
    if result.busy:
        if args.verbose:
            print(f"another pull holds {args.to / LOCK_NAME}; it does the work", file=sys.stderr)
        return 0
    for name, problem in result.failed:
        print(f"failed gs://{bucket_name}/{name}: {redact(problem)[:300]}", file=sys.stderr)
    return 1 if result.failed else 0
