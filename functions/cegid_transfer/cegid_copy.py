"""Move one Azure blob into Cloud Storage: streamed, verified, never overwriting, crash-safe.

The path of one file (each step may fail or the process may die; the next run finishes):

1. Shortcut: ``cegid/<name>`` already holds a copy of this very source version (its
   ``cegid-source-etag`` metadata matches, written only by step 4 from a verified upload)
   -> delete the source, done. An object that only has the same size and MD5 as Azure's
   Content-MD5 is not taken on trust (Azure does not validate that property for blobs
   uploaded in blocks, and anyone may set it; cegid_plan.is_copy_of): the blob is read and
   step 4 compares that object with the bytes read.
2. Stream: Azure ranged GETs (``chunk_bytes`` each, one at a time, conditioned on the listed
   ETag) feed a resumable upload (``upload_chunk_bytes`` per request) to a staging object
   with a unique name (``<staging prefix><run id>/...``). A reader thread and a bounded queue
   overlap download and upload, so memory is a few chunks whatever the file size. MD5 and
   CRC32C are computed over the bytes as they arrive from Azure.
3. Verify: size, MD5 and CRC32C that Cloud Storage stored for the staging object against the
   bytes read, and the bytes read against Azure's Content-MD5 when the blob has one (a
   mismatch keeps the source: either the read or the property is wrong, and a person looks).
4. Publish: server-side copy (rewrite) of the staging object to ``cegid/<name>`` with
   ``if_generation_match=0``. Same name with the same bytes -> nothing to write. Same name
   with other bytes -> the copy goes to ``<stem>.<md5 prefix><ext>`` instead (content
   addressed, so a rerun finds it), and the other file is never touched.
5. Delete the staging object, then the source blob (conditioned on its ETag, so a newer
   version Cegid dropped meanwhile is kept for the next run), but only while the run's lease
   lock still has its safety margin (``LeaseLock.fence``): a run stalled past its lease stops
   with ``LeaseLost`` before the one step that cannot be undone, and the next run, finding
   the published copy by its ``cegid-source-etag``, deletes the source.

Why a staging object rather than uploading straight to the final name: the final name only
ever receives complete, verified content, and correctness does not rest on a precondition
holding during a resumable upload (the GCS emulator ignores it there). Before writing we look
(under the run's lock, so no other run of ours races us) and the precondition on the copy is a
second guard against anyone else. Staging leftovers of crashed runs are deleted at the start of
the next run (and by a bucket lifecycle rule after a day).

The rules this path applies without I/O (is an object already a copy, do checksums match, the
staging, final and alternate names, the SAS check) are cegid_plan's; this module does the I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import google_crc32c
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient
from cegid_plan import (
    SOURCE_ETAG_KEY,
    SOURCE_NAME_KEY,
    Digest,
    SasError,
    SourceBlob,
    alternate_name,
    final_name,
    is_copy_of,
    is_folder_marker,
    mismatches,
    staging_name,
)
from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from shared.errors import TransientError
from shared.lock import LeaseLock

log = logging.getLogger(__name__)


class IntegrityError(TransientError):
    """What Cloud Storage stored is not what was read from Azure; the source stays."""


# -- the source --------------------------------------------------------------------------


def open_container(container_url: str, chunk_bytes: int) -> ContainerClient:
    return ContainerClient.from_container_url(
        container_url,
        max_single_get_size=chunk_bytes,
        max_chunk_get_size=chunk_bytes,
    )


def list_source(container: ContainerClient) -> list[SourceBlob]:
    """Every blob in the container, oldest name first. An authorisation failure is a SasError
    naming what Azure said, so nothing is attempted with a SAS that does not work."""
    found: list[SourceBlob] = []
    try:
        for props in container.list_blobs():
            settings = props.content_settings
            md5 = settings.content_md5 if settings is not None else None
            if is_folder_marker(props.name, props.size):
                continue
            found.append(
                SourceBlob(
                    name=props.name,
                    size=int(props.size or 0),
                    etag=str(props.etag),
                    content_md5=bytes(md5) if md5 else None,
                    content_type=settings.content_type if settings is not None else None,
                )
            )
    except HttpResponseError as error:
        code = getattr(error, "error_code", None) or ""
        if error.status_code in (401, 403):
            raise SasError(
                f"Azure refused to list the container ({code or error.status_code}): the SAS "
                "is expired, revoked or lacks list permission",
                code="sas_refused",
            ) from None
        raise TransientError(f"listing the Azure container failed ({code})", code="list") from None
    return sorted(found, key=lambda b: b.name)


def delete_source(container: ContainerClient, blob: SourceBlob) -> None:
    # Gone already is fine: an earlier run deleted it just before dying.
    with contextlib.suppress(ResourceNotFoundError):
        container.delete_blob(
            blob.name, etag=blob.etag, match_condition=MatchConditions.IfNotModified
        )


# -- streaming ---------------------------------------------------------------------------


_END = object()


class HashingPipe:
    """A read-only stream over an iterator of chunks, filled by a thread through a bounded
    queue (so download and upload overlap) and hashing every byte that comes through."""

    def __init__(self, chunks: Iterator[bytes], depth: int = 2) -> None:
        self._chunks = chunks
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._md5 = hashlib.md5(usedforsecurity=False)  # integrity against GCS and Azure
        self._crc = 0  # google_crc32c.extend: the C implementation, one call per chunk
        self._size = 0
        self._position = 0
        self._pending = b""
        self._offset = 0
        self._ended = False
        self._thread = threading.Thread(target=self._produce, name="cegid-download", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for chunk in self._chunks:
                self._md5.update(chunk)
                self._crc = google_crc32c.extend(self._crc, chunk)
                self._size += len(chunk)
                if not self._put(bytes(chunk)):
                    return
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the reading side
            self._put(error)

    def _next(self) -> bool:
        if self._ended:
            return False
        item = self._queue.get()
        if item is _END:
            self._ended = True
            return False
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        self._pending, self._offset = item, 0
        return True

    # The file-object surface the resumable upload uses.
    def read(self, size: int = -1) -> bytes:
        # Views, not slices: the only copy made is the join into the request body.
        parts: list[memoryview] = []
        wanted = size if size >= 0 else 1 << 62
        while wanted > 0:
            if self._offset >= len(self._pending) and not self._next():
                break
            piece = memoryview(self._pending)[self._offset : self._offset + wanted]
            self._offset += len(piece)
            wanted -= len(piece)
            parts.append(piece)
        data = b"".join(parts)
        parts.clear()
        if self._offset >= len(self._pending):
            self._pending, self._offset = b"", 0
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset != self._position:
            raise OSError("a streamed copy cannot seek")
        return self._position

    def seekable(self) -> bool:
        return False

    def finish(self) -> Digest:
        """Drain to the end (there must be nothing left) and return the digest of all bytes."""
        if self.read(1):
            raise IntegrityError("Azure sent more bytes than the blob's size", code="size")
        self._thread.join()
        return Digest(self._size, self._md5.digest(), int(self._crc).to_bytes(4, "big"))

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)


def download_ranges(
    container: ContainerClient, blob: SourceBlob, chunk_bytes: int
) -> Iterator[bytes]:
    """The blob as consecutive ranged GETs of ``chunk_bytes``, each conditioned on the listed
    ETag (a blob replaced meanwhile fails the copy instead of mixing two versions). Our own
    loop rather than the SDK's chunk iterator, which was seen holding far larger buffers."""
    offset = 0
    while offset < blob.size:
        length = min(chunk_bytes, blob.size - offset)
        data = container.download_blob(
            blob.name,
            offset=offset,
            length=length,
            etag=blob.etag,
            match_condition=MatchConditions.IfNotModified,
            max_concurrency=1,
        ).readall()
        if len(data) != length:
            raise IntegrityError(
                f"{blob.name}: Azure sent {len(data)} bytes at offset {offset}, expected {length}",
                code="short_read",
            )
        yield data
        offset += length


@dataclass(frozen=True)
class CopyConfig:
    chunk_bytes: int  # one Azure ranged GET
    upload_chunk_bytes: int  # one resumable-upload PUT (a multiple of 256 KiB)
    queue_depth: int
    timeout_seconds: float


def stream_to_gcs(
    container: ContainerClient, blob: SourceBlob, target: storage.Blob, config: CopyConfig
) -> Digest:
    pipe = HashingPipe(download_ranges(container, blob, config.chunk_bytes), config.queue_depth)
    try:
        target.chunk_size = config.upload_chunk_bytes
        target.upload_from_file(
            pipe,
            size=blob.size,
            content_type=blob.content_type or "application/octet-stream",
            # A unique staging name: the precondition costs nothing and turns on retries.
            if_generation_match=0,
            checksum=None,  # our own MD5 and CRC32C are compared after the upload
            timeout=config.timeout_seconds,
        )
        return pipe.finish()
    finally:
        pipe.close()


# -- verification and publication ----------------------------------------------------------


def verify_copy(obj: storage.Blob, digest: Digest, blob: SourceBlob) -> None:
    """What Cloud Storage stored == the bytes read == what Azure says the blob holds."""
    obj.reload()
    problems = mismatches(obj, digest)
    if digest.size != blob.size:
        problems.append(f"read {digest.size} bytes of {blob.size}")
    if blob.content_md5 is not None and blob.content_md5 != digest.md5:
        problems.append("bytes read do not match Azure's Content-MD5")
    if problems:
        raise IntegrityError(f"{blob.name}: {'; '.join(problems)}", code="integrity")


def publish(
    bucket: storage.Bucket, staging: storage.Blob, final_name: str, digest: Digest
) -> tuple[str, bool]:
    """Copy the verified staging object to ``final_name`` (or its content-addressed alternate
    when another file holds that name). Returns (name, already_present)."""
    for candidate in (final_name, alternate_name(final_name, digest)):
        for _attempt in range(3):
            existing = bucket.get_blob(candidate)
            if existing is not None:
                if not mismatches(existing, digest):
                    return candidate, True
                break  # another file: never overwrite, try the next name
            target = bucket.blob(candidate)
            try:
                token, _, _ = target.rewrite(staging, if_generation_match=0)
                while token is not None:
                    token, _, _ = target.rewrite(staging, token=token, if_generation_match=0)
            except gexc.PreconditionFailed:
                continue  # someone wrote it meanwhile: look again
            target.reload()
            problems = mismatches(target, digest)
            if problems:
                raise IntegrityError(
                    f"{candidate}: server-side copy differs ({'; '.join(problems)})",
                    code="integrity",
                )
            return candidate, False
    raise IntegrityError(f"{final_name}: both names hold other content", code="name_taken")


# -- one file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    bucket: storage.Bucket
    prefix: str
    staging_prefix: str
    run_id: str
    config: CopyConfig


@dataclass(frozen=True)
class FileResult:
    source: str
    landed_as: str
    already_present: bool
    bytes_copied: int


def transfer_one(
    dest: Destination, container: ContainerClient, blob: SourceBlob, lock: LeaseLock
) -> FileResult:
    """Move ``blob``; ``lock`` is the run's lease lock, held, fenced before the source delete."""
    landing = final_name(dest.prefix, blob.name)
    existing = dest.bucket.get_blob(landing)
    if existing is not None and is_copy_of(existing, blob):
        _delete_source_fenced(container, blob, lock)
        return FileResult(blob.name, landing, True, 0)

    staging = dest.bucket.blob(staging_name(dest.staging_prefix, dest.run_id, blob.name))
    staging.metadata = {SOURCE_NAME_KEY: blob.name, SOURCE_ETAG_KEY: blob.etag}
    try:
        digest = stream_to_gcs(container, blob, staging, dest.config)
        verify_copy(staging, digest, blob)
        landed, already = publish(dest.bucket, staging, landing, digest)
    finally:
        _delete_quietly(staging)
    _delete_source_fenced(container, blob, lock)
    return FileResult(blob.name, landed, already, 0 if already else digest.size)


def _delete_source_fenced(container: ContainerClient, blob: SourceBlob, lock: LeaseLock) -> None:
    # Raises LeaseLost when the lease ran short: the copy is published, the source stays.
    lock.fence(f"deleting {blob.name} from Azure")
    delete_source(container, blob)


def _delete_quietly(obj: storage.Blob) -> None:
    try:
        obj.delete()
    except gexc.NotFound:
        pass
    except gexc.GoogleAPICallError as error:
        log.warning("could not delete staging object %s (%s); the next run does", obj.name, error)


def clean_staging(bucket: storage.Bucket, staging_prefix: str) -> int:
    """Delete what crashed runs left in staging (called under the run's lock, so none of it
    belongs to a live run)."""
    removed = 0
    for obj in bucket.list_blobs(prefix=staging_prefix):
        try:
            obj.delete()
            removed += 1
        except gexc.NotFound:
            pass
    return removed
