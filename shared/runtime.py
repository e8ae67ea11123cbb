"""What every function's main.py does the same way at run time: keep the clients an instance
builds once, receive and parse a Pub/Sub trigger, measure a run, bound a lock wait by the
run's deadline.

Light on purpose: importing it loads no client library, so an HTTP entry point that needs none
(graph_webhook_notify's validation handshake) still starts fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from shared import events

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built on first use and then kept for the life of the instance.

    Built once even when several threads ask at the same moment (a check, then a second check
    under a lock). A build that raises keeps nothing, so the next ``get`` tries again.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._built: tuple[T] | None = None

    def get(self) -> T:
        built = self._built
        if built is None:
            with self._lock:
                built = self._built
                if built is None:
                    built = self._built = (self._build(),)
        return built[0]

    def built(self) -> T | None:
        """The value if it was built, without building it."""
        built = self._built
        return None if built is None else built[0]

    def reset(self) -> None:
        """Forget the value (tests); the next ``get`` builds a new one."""
        with self._lock:
            self._built = None


def receive(
    cloud_event: Any,
    parse: Callable[[dict[str, Any]], T],
    *,
    max_age: timedelta,
    log: logging.Logger,
    bad: tuple[type[Exception], ...] = (events.BadMessage,),
) -> tuple[T, datetime | None] | None:
    """The Pub/Sub prologue of a triggered entry point: the request ``parse`` reads from the
    message, and the message's publish time.

    None when the message is to be acknowledged and dropped: not a usable message or too old
    (shared.events logs it), or refused by ``parse`` with one of ``bad`` (logged here on the
    function's ``log``). Returning acknowledges it; Pub/Sub must not redeliver what can never
    work.
    """
    message = events.receive(cloud_event, max_age=max_age)
    if message is None:
        return None
    try:
        request = parse(message.data)
    except bad as error:
        log.warning("ignoring message %s: %s", message.message_id, error)
        return None
    return request, message.published_at


class Meter:
    """What a run reports of its own cost: seconds since it started and the secret values it
    read, from ``reads`` (the instance's ``SecretStore.reads``) counted from the start. Runs of
    one function do not overlap on an instance (one request at a time), so the difference is
    this run's."""

    def __init__(self, reads: Callable[[], int]) -> None:
        self._reads = reads
        self._started = time.monotonic()
        self._reads_at_start = reads()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    @property
    def secret_reads(self) -> int:
        return self._reads() - self._reads_at_start


def lock_wait(seconds: float, deadline: float) -> float:
    """How long to wait for a lock: ``seconds`` (LOCK_WAIT_SECONDS), but never past the run's
    ``deadline`` (a ``time.monotonic()`` instant) and never less than nothing."""
    return max(0.0, min(seconds, deadline - time.monotonic()))
