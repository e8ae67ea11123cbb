"""What a Cegid run decides: which message it got, whether the SAS can do the job, which files
to move, skip or leave for the next run, what the objects are named, which queries to force.

Pure: no environment variables, no framework, no I/O of its own. What a decision needs from
Cloud Storage (an existing object's size, checksums, metadata) comes in as an argument shaped
by ``StoredObject``, so these rules are tested without any service.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from shared import clock, events
from shared.errors import TerminalError

MIB = 1024 * 1024

# Metadata on every staging object (and so on what it is published as): the source it copies.
SOURCE_NAME_KEY = "cegid-source-name"
SOURCE_ETAG_KEY = "cegid-source-etag"

# A scheduler's next run is written the way the API returns it: milliseconds and a Z.
NEXT_EXECUTION_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"


# -- the run's result ----------------------------------------------------------------------


@dataclass
class Summary:
    result: str = "done"  # done | sas_invalid | needs_reauth | busy | failed
    listed: int = 0
    files: int = 0
    bytes: int = 0
    already_present: int = 0
    failed: int = 0
    deferred: int = 0
    failed_names: list[str] = field(default_factory=list)


# The last successful transfer, in the state bucket: ``python -m cli status`` shows it.
STATUS_OBJECT = "status/cegid-transfer.json"


def is_success(summary: Summary) -> bool:
    """A run that counts as a success (docs/operations.md): done, no file failed."""
    return summary.result == "done" and summary.failed == 0


def transfer_status(summary: Summary, finished_at: datetime) -> dict[str, Any]:
    """The status object of a successful run: counters only, never a name or a URL."""
    return {
        "last_success_at": clock.format_time(finished_at),
        "listed": summary.listed,
        "files": summary.files,
        "bytes": summary.bytes,
        "already_present": summary.already_present,
        "deferred": summary.deferred,
    }


# -- the source: a SAS that can do the job -------------------------------------------------


class SasError(TerminalError):
    """The SAS cannot do the job (expired, missing a permission): a person must act."""


def check_sas(container_url: str, now: datetime | None = None) -> None:
    """Refuse a SAS that is expired or lacks read, list or delete, before anything is copied,
    so a half-capable SAS never leaves copies whose sources cannot be removed."""
    query = parse_qs(urlsplit(container_url).query)
    if "sig" not in query:
        raise SasError(
            "the SAS URL carries no signature (sig=); give the full container URL with its SAS",
            code="sas_malformed",
        )
    expiry_text = (query.get("se") or [""])[0]
    expiry = clock.parse_time(expiry_text) if expiry_text else None
    if expiry is not None and expiry <= (now or clock.now()):
        raise SasError(
            f"the SAS expired at {clock.format_time(expiry)}; generate a new one",
            code="sas_expired",
        )
    if "sp" not in query and "si" in query:
        return  # permissions live in a stored access policy: Azure will tell us
    permissions = (query.get("sp") or [""])[0]
    missing = [word for letter, word in (("r", "read"), ("l", "list"), ("d", "delete"))
               if letter not in permissions]  # fmt: skip
    if missing:
        raise SasError(
            f"the SAS lacks {' and '.join(missing)} permission (sp={permissions}); "
            "it needs read, list and delete",
            code="sas_missing_permission",
        )


def sas_advice(mode: str, sas_url_secret: str, sas_path: str) -> str:
    """What a person does about an unusable SAS, by where it came from (CEGID_MODE)."""
    if mode == "sas_url":
        return (
            f"Generate a new container SAS URL (read, list, delete) in the Cegid portal and add "
            f"it as a new version of secret {sas_url_secret}."
        )
    return (
        f"The SAS came from {sas_path}; it must grant read, list and delete "
        "(GetSASTokenLRD), see CEGID_SAS_PATH."
    )


# -- which files: move, skip, or leave for the next run --------------------------------------


@dataclass(frozen=True)
class SourceBlob:
    name: str
    size: int
    etag: str
    content_md5: bytes | None
    content_type: str | None


@dataclass(frozen=True)
class Digest:
    size: int
    md5: bytes
    crc32c: bytes

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(self.md5).decode()

    @property
    def crc32c_b64(self) -> str:
        return base64.b64encode(self.crc32c).decode()


class StoredObject(Protocol):
    """What a decision reads of a Cloud Storage object (google.cloud.storage.Blob has it)."""

    @property
    def size(self) -> int | None: ...

    @property
    def md5_hash(self) -> str | None: ...

    @property
    def crc32c(self) -> str | None: ...

    @property
    def metadata(self) -> dict[str, Any] | None: ...


def is_folder_marker(name: str, size: int | None) -> bool:
    """A folder marker (hierarchical namespace), not a file: never listed as a source."""
    return name.endswith("/") and not size


def fits_in_run(size: int, mib_per_second: int, now: float, deadline: float) -> bool:
    """Whether a file of ``size`` bytes still fits before ``deadline`` (monotonic seconds),
    planning at ``mib_per_second`` (a lower bound of throughput) plus 5 s per file. A file that
    does not fit stays in Azure for the next run."""
    needed = 5 + size / (mib_per_second * MIB)
    return not now + needed > deadline


def is_copy_of(obj: StoredObject, blob: SourceBlob) -> bool:
    """Whether ``obj`` already holds this source version without reading it again: only an
    object this function published from a verified read of that very version (its
    ``cegid-source-etag``; see cegid_copy's docstring, step 1).

    Azure's Content-MD5 is no proof. Azure validates it only on a single Put Blob; for a blob
    committed from blocks it is whatever the uploader claimed, and Set Blob Properties replaces
    it on any blob, single put included, leaving no trace in the properties or the block list.
    So a stored MD5 equal to the source's Content-MD5 proves nothing about the source's bytes,
    and an object that merely looks the same is compared with the bytes read instead
    (cegid_copy.publish)."""
    return obj.size == blob.size and (obj.metadata or {}).get(SOURCE_ETAG_KEY) == blob.etag


def mismatches(obj: StoredObject, digest: Digest) -> list[str]:
    """How ``obj`` differs from the bytes read (empty: the same bytes)."""
    problems = []
    if obj.size != digest.size:
        problems.append(f"size {obj.size} != {digest.size} bytes read")
    if obj.md5_hash is None and obj.crc32c is None:
        problems.append("Cloud Storage reported no checksum")
    if obj.md5_hash is not None and obj.md5_hash != digest.md5_b64:
        problems.append("MD5 differs from the bytes read")
    if obj.crc32c is not None and obj.crc32c != digest.crc32c_b64:
        problems.append("CRC32C differs from the bytes read")
    return problems


# -- naming ------------------------------------------------------------------------------


def run_id(now: datetime, token: str) -> str:
    """``<UTC time>-<8 hex>``: the folder of one run's staging objects."""
    return f"{now:%Y%m%dT%H%M%S}-{token[:8]}"


def final_name(prefix: str, source_name: str) -> str:
    """Where a blob lands: ``cegid/<blob name>`` (the prefix is CEGID_PREFIX)."""
    return prefix + source_name


def staging_name(staging_prefix: str, run: str, source_name: str) -> str:
    """A unique staging object per run and source name: ``<staging prefix><run id>/<hash>``."""
    key = hashlib.sha256(source_name.encode()).hexdigest()[:32]
    return f"{staging_prefix}{run}/{key}"


def alternate_name(name: str, digest: Digest) -> str:
    """``dir/file.csv`` -> ``dir/file.<12 hex of md5>.csv``: stable for the same bytes."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        stem, ext = base, ""
    tagged = f"{stem}.{digest.md5.hex()[:12]}" + (f".{ext}" if ext else "")
    return f"{folder}/{tagged}" if folder else tagged


# -- forcing scheduled queries -------------------------------------------------------------


class BadForceRequest(ValueError):
    """A force request that can never succeed (bad time)."""


def parse_force(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """``{"action": "force", "name"?: str, "time"?: "HH:MM"}``; anything else is refused."""
    events.refuse_unknown_fields(data, {"action", "name", "time"}, "action, name, time")
    if data.get("action") != "force":
        raise events.BadMessage('action must be "force"')
    name, at = data.get("name"), data.get("time")
    if name is not None and not isinstance(name, str):
        raise events.BadMessage("name must be a string")
    if at is not None and not isinstance(at, str):
        raise events.BadMessage("time must be HH:MM")
    return name or None, at or None


def parse_hhmm(value: str) -> time:
    try:
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        # Quoted short: enough to see the mistake, never a whole payload.
        raise BadForceRequest(f"time must be HH:MM (UTC), got {value[:16]!r}") from None


def force_time(at: str | None, default: str | None, now: datetime | None = None) -> datetime:
    """When to run: ``at`` (HH:MM UTC), else ``default`` (CEGID_FORCE_TIME), else now + 15
    minutes. An HH:MM already past today means tomorrow, so the run is always in the future."""
    now = now or clock.now()
    chosen = at or default
    if not chosen:
        return (now + timedelta(minutes=15)).replace(second=0, microsecond=0)
    when = datetime.combine(now.date(), parse_hhmm(chosen), tzinfo=now.tzinfo)
    return when if when > now else when + timedelta(days=1)


def scheduler_name(scheduler: dict[str, Any]) -> str:
    query = scheduler.get("query")
    name = query.get("name") if isinstance(query, dict) else None
    return str(name if name is not None else scheduler.get("name") or scheduler.get("id") or "")


def matching(schedulers: list[dict[str, Any]], name_part: str | None) -> list[dict[str, Any]]:
    if not name_part:
        return schedulers
    wanted = name_part.casefold()
    return [s for s in schedulers if wanted in scheduler_name(s).casefold()]


def forced(scheduler: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The scheduler object unchanged but for ``nextExecution`` (the cron stays as it is)."""
    updated = copy.deepcopy(scheduler)
    updated["nextExecution"] = when.strftime(NEXT_EXECUTION_FORMAT)
    return updated


# -- the messages --------------------------------------------------------------------------


def parse_trigger(data: dict[str, Any]) -> dict[str, Any]:
    """The hourly trigger is ``{}``; anything else is refused (a force request that went to the
    wrong topic, most likely)."""
    if data:
        raise events.BadMessage("the transfer takes {} (force requests go to cegid-queries)")
    return data


def force_request(data: dict[str, Any], default_time: str | None) -> tuple[str | None, datetime]:
    """A force message as (name part, when): ``parse_force``, then ``force_time`` with
    ``default_time`` (CEGID_FORCE_TIME)."""
    name, at = parse_force(data)
    return name, force_time(at, default_time)
