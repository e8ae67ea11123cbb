"""A lease lock per credential, held as an object in the state bucket.

Taking the lock creates ``locks/<name>.json`` with ``if_generation_match=0``, which Cloud
Storage grants to exactly one writer. The object records when the lease ends; a holder that
crashed is taken over after that, again with a generation precondition so only one waiter
wins. The lease must outlast the function's timeout, so a live holder never loses it.

A lock only serialises; callers re-read the stored credential after taking it and stop when
another run already did the work.

Fencing: a holder stalled past its lease (Cloud Run can keep running code after a timeout, a
process can be paused) no longer owns the lock, but nothing tells it so. Before each
irreversible step a holder calls ``fence(step)``: it measures, on the monotonic clock from the
moment the lock was written, how much of the lease is left, and raises ``LeaseLost`` (transient:
the message is delivered again) once no more than the safety margin remains. The stored expiry is
not consulted, so a wall clock that jumps cannot extend a lease.
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
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from shared import clock
from shared.errors import TransientError

log = logging.getLogger(__name__)

LOCK_PREFIX = "locks/"


class LockBusy(RuntimeError):
    """Another run holds the lock and did not release it in time."""


class LeaseLost(TransientError):
    """The lease has too little time left for an irreversible step: another run may own the
    lock by now, so this one stops and its message is delivered again."""


# Time a step may still need once it starts. Leases are set a minute longer than the function
# timeout, so only a holder that overran its own timeout (stalled) ever gets this close.
DEFAULT_FENCE_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class Lease:
    """A lease of ``length`` seconds taken at ``taken_at`` on the ``monotonic`` clock: the one
    fencing rule, for this module's lock and for any other claim with an expiry (Universign's
    event markers)."""

    what: str  # names the lock or claim in the warning
    length: float
    taken_at: float
    monotonic: Callable[[], float] = time.monotonic
    max_margin: float = DEFAULT_FENCE_MARGIN.total_seconds()

    @property
    def margin(self) -> float:
        # A short lease (tests, small functions) keeps half of itself for the work.
        return min(self.max_margin, self.length / 2)

    def remaining(self) -> float:
        """Seconds of lease left by the monotonic clock."""
        return self.length - (self.monotonic() - self.taken_at)

    def fence(self, step: str) -> None:
        """Raise ``LeaseLost`` unless more than the safety margin is left for ``step``."""
        left = self.remaining()
        # Strictly more: a step started with exactly the margin left may end past the lease.
        if left > self.margin:
            return
        log.warning(
            "%s: %.0f s of lease left before %s, within the %.0f s margin; stopping, "
            "another run may hold it now",
            self.what,
            max(left, 0.0),
            step,
            self.margin,
        )
        raise LeaseLost(f"lease on {self.what} ran short before {step}", code="lease_lost")


class LeaseLock:
    def __init__(
        self,
        bucket: storage.Bucket,
        name: str,
        *,
        lease: timedelta,
        margin: timedelta = DEFAULT_FENCE_MARGIN,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.blob = bucket.blob(f"{LOCK_PREFIX}{name}.json")
        self.name = name
        self.lease = lease
        self._max_margin = margin.total_seconds()
        self.owner = f"{socket.gethostname()}/{uuid.uuid4().hex[:12]}"
        self._generation: int | None = None
        self._held: Lease | None = None
        self._sleep = sleep
        self._monotonic = monotonic

    def _record(self) -> str:
        expires = clock.format_time(clock.now() + self.lease)
        return json.dumps({"owner": self.owner, "expires_at": expires})

    def _write(self, if_generation_match: int) -> bool:
        blob = self.blob.bucket.blob(self.blob.name)
        # Read before the request: the lease counts from no later than the stored expiry does.
        started = self._monotonic()
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
        self._held = self._lease(started)
        return True

    def _lease(self, taken_at: float) -> Lease:
        what = f"lock {self.name}"
        length = self.lease.total_seconds()
        return Lease(what, length, taken_at, self._monotonic, self._max_margin)

    @property
    def margin(self) -> timedelta:
        return timedelta(seconds=self._lease(0.0).margin)

    def remaining(self) -> float:
        """Seconds of lease left by the monotonic clock; 0 when the lock is not held."""
        return self._held.remaining() if self._held is not None else 0.0

    def fence(self, step: str) -> None:
        """Raise ``LeaseLost`` unless more than the safety margin of the lease is left for
        ``step`` (always, when the lock is not held)."""
        if self._held is None:
            log.warning("lock %s is not held before %s; stopping", self.name, step)
            raise LeaseLost(f"lock {self.name} not held before {step}", code="lease_lost")
        self._held.fence(step)

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
        # A record no holder wrote (corrupt, another shape) has no lease to wait for: taken over,
        # like an expired one, rather than blocking the credential or raising on every run.
        stamp = record.get("expires_at")
        expires = clock.parse_time(stamp) if isinstance(stamp, str) else None
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
            self._held = None

    @contextmanager
    def held(self, wait: float) -> Iterator[LeaseLock]:
        if not self.acquire(wait):
            raise LockBusy(f"lock {self.name} is held by another run")
        try:
            yield self
        finally:
            self.release()
