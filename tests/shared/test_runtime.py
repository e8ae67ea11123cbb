"""shared.runtime: a per-instance value built once however many threads ask, the Pub/Sub
prologue every triggered entry point runs, and the lock wait bounded by the run's deadline."""

from __future__ import annotations

import base64
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from shared import events, runtime
from shared.runtime import Lazy

# --- Lazy -------------------------------------------------------------------------------------


def test_built_once_when_many_threads_ask_at_once() -> None:
    builds: list[int] = []
    started = threading.Event()

    def build() -> object:
        builds.append(threading.get_ident())
        started.set()
        time.sleep(0.05)  # long enough for every other thread to arrive while building
        return object()

    lazy: Lazy[object] = Lazy(build)
    barrier = threading.Barrier(16)
    seen: list[object] = []

    def ask() -> None:
        barrier.wait()
        seen.append(lazy.get())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert started.is_set()
    assert len(builds) == 1
    assert len(seen) == 16 and all(value is seen[0] for value in seen)


def test_nothing_is_built_before_the_first_get() -> None:
    builds: list[str] = []

    def build() -> str:
        builds.append("built")
        return "value"

    lazy = Lazy(build)
    assert builds == []
    assert lazy.get() == "value" and lazy.get() == "value"
    assert builds == ["built"]


def test_a_failed_build_keeps_nothing_and_is_tried_again() -> None:
    answers: list[Any] = [RuntimeError("Secret Manager is down"), "value"]

    def build() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    lazy = Lazy(build)
    with pytest.raises(RuntimeError, match="down"):
        lazy.get()
    assert lazy.get() == "value"
    assert lazy.get() == "value" and answers == []


def test_reset_builds_a_new_value() -> None:
    lazy = Lazy(object)
    first = lazy.get()
    lazy.reset()
    assert lazy.get() is not first


# --- receive ----------------------------------------------------------------------------------

LOG = logging.getLogger("runtime-test")


def trigger(data: bytes, *, age: timedelta = timedelta()) -> CloudEvent:
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/t",
        "time": (datetime.now(UTC) - age).isoformat(),
    }
    message = {"data": base64.b64encode(data).decode(), "messageId": "m-9"}
    return CloudEvent(attributes, {"message": message})


def force(data: dict[str, Any]) -> bool:
    if set(data) - {"force"}:
        raise events.BadMessage("expected {} or force")
    return bool(data.get("force", False))


def test_the_parsed_request_and_its_publish_time() -> None:
    received = runtime.receive(
        trigger(b'{"force": true}'), force, max_age=timedelta(minutes=5), log=LOG
    )
    assert received is not None
    request, published_at = received
    assert request is True
    assert published_at is not None
    assert abs(datetime.now(UTC) - published_at) < timedelta(seconds=10)


def test_a_request_parse_refuses_is_logged_on_the_functions_logger_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        received = runtime.receive(
            trigger(b'{"delete": "all"}'), force, max_age=timedelta(minutes=5), log=LOG
        )
    assert received is None
    (record,) = [r for r in caplog.records if r.name == "runtime-test"]
    assert record.getMessage() == "ignoring message m-9: expected {} or force"


@pytest.mark.parametrize("data", [b"not json", b"[]"])
def test_a_message_that_is_no_request_is_dropped_without_parsing(data: bytes) -> None:
    def parse(_data: dict[str, Any]) -> None:
        raise AssertionError("not parsed")

    assert runtime.receive(trigger(data), parse, max_age=timedelta(minutes=5), log=LOG) is None


def test_a_stale_message_is_dropped() -> None:
    event = trigger(b"{}", age=timedelta(minutes=6))
    assert runtime.receive(event, force, max_age=timedelta(minutes=5), log=LOG) is None
    assert runtime.receive(event, force, max_age=timedelta(minutes=7), log=LOG) is not None


def test_only_the_named_refusals_are_dropped() -> None:
    class BadTime(ValueError):
        pass

    def parse(_data: dict[str, Any]) -> None:
        raise BadTime("time must be HH:MM")

    event = trigger(b"{}")
    with pytest.raises(BadTime):
        runtime.receive(event, parse, max_age=timedelta(minutes=5), log=LOG)
    dropped = runtime.receive(
        event, parse, max_age=timedelta(minutes=5), log=LOG, bad=(events.BadMessage, BadTime)
    )
    assert dropped is None


# --- lock_wait --------------------------------------------------------------------------------


def test_lock_wait_never_outlasts_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    assert runtime.lock_wait(60, deadline=2000.0) == 60
    assert runtime.lock_wait(60, deadline=1010.0) == 10
    assert runtime.lock_wait(60, deadline=990.0) == 0.0
    assert runtime.lock_wait(0, deadline=2000.0) == 0
