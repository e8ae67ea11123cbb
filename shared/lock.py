"""A lease lock per credential, held as an object in the state bucket.

Taking the lock creates ``locks/<name>.json`` with ``if_generation_match=0``, which Cloud
Storage grants to exactly one writer. The object records when the lease ends; a holder that
crashed is taken over after that, again with a generation precondition so only one waiter
wins. The lease must outlast the function's timeout, so a live holder never loses it.

A lock only serialises; callers re-read the stored credential after taking it and stop when
another run already did the work.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from shared import clock

log = logging.getLogger(__name__)

LOCK_PREFIX = "locks/"


class LockBusy(RuntimeError):
    """Another run holds the lock and did not release it in time."""


class LeaseLock:
    def __init__(
        self,
        bucket: storage.Bucket,
        name: str,
        *,
        lease: timedelta,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.blob = bucket.blob(f"{LOCK_PREFIX}{name}.json")
        self.name = name
        self.lease = lease
        self.owner = f"{socket.gethostname()}/{uuid.uuid4().hex[:12]}"
        self._generation: int | None = None
        self._sleep = sleep

    def _record(self) -> str:
        expires = clock.format_time(clock.now() + self.lease)
        return json.dumps({"owner": self.owner, "expires_at": expires})

    def _write(self, if_generation_match: int) -> bool:
        blob = self.blob.bucket.blob(self.blob.name)
        try:
            # A small string goes up as a single simple upload, where preconditions hold.
            blob.upload_from_string(
                self._record(),
                content_type="application/json",
                if_generation_match=if_generation_match,
            )
        except gexc.PreconditionFailed:
            return False
        self._generation = blob.generation
        return True

    def _holder(self) -> tuple[int, dict[str, Any]] | None:
        blob = self.blob.bucket.get_blob(self.blob.name)
        if blob is None:
            return None
        try:
            record = json.loads(blob.download_as_bytes(if_generation_match=blob.generation))
        except (gexc.NotFound, gexc.PreconditionFailed):
            return None  # released or replaced while we looked: try again
        except ValueError:
            record = {}
        return int(blob.generation), record if isinstance(record, dict) else {}

    def try_acquire(self) -> bool:
        if self._write(if_generation_match=0):
            return True
        holder = self._holder()
        if holder is None:
            return self._write(if_generation_match=0)
        generation, record = holder
        expires = clock.parse_time(record.get("expires_at"))
        if expires is not None and expires > clock.now():
            return False
        log.warning(
            "lock %s: lease of %s ran out, taking over",
            self.name,
            record.get("owner", "an unknown holder"),
        )
        return self._write(if_generation_match=generation)

    def acquire(self, wait: float) -> bool:
        """Try until ``wait`` seconds have passed; polling reads, so it costs no writes."""
        give_up = time.monotonic() + wait
        delay = 0.1
        while True:
            if self.try_acquire():
                return True
            if time.monotonic() + delay > give_up:
                return False
            self._sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
            delay = min(delay * 2, 2.0)

    def release(self) -> None:
        if self._generation is None:
            return
        try:
            self.blob.delete(if_generation_match=self._generation)
        except (gexc.NotFound, gexc.PreconditionFailed):
            log.warning("lock %s was taken over before release (lease too short?)", self.name)
        finally:
            self._generation = None

    @contextmanager
    def held(self, wait: float) -> Iterator[None]:
        if not self.acquire(wait):
            raise LockBusy(f"lock {self.name} is held by another run")
        try:
            yield
        finally:
            self.release()
