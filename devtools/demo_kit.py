"""What every integration's demo story shares (devtools/demo_<integration>.py): announced
steps, functions served under functions-framework behind push subscriptions, Scheduler jobs
run as ``gcloud scheduler jobs run`` runs them, and Pub/Sub topics read as a subscriber app
would read them.

Every step prints what it is about to do before doing it; a step that fails raises
:class:`DemoFailed` naming the step and the log to read.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from devtools import gcp, scheduler
from devtools.fakes.base import FakeServer
from devtools.stack import FunctionServer, start_function
from shared.secrets import SecretStore

FakeServerT = TypeVar("FakeServerT", bound=FakeServer)

# Every function's run or request ends well within this on the local stack.
WAIT_SECONDS = 60.0


def say(text: str = "") -> None:
    print(text, flush=True)


class DemoFailed(Exception):
    """A step failed: which one, what went wrong and where its logs are."""

    def __init__(self, step: str, error: BaseException, logs: Path) -> None:
        super().__init__(f"{step}: {type(error).__name__}: {error}")
        self.step, self.error, self.logs = step, error, logs


@contextlib.contextmanager
def step(text: str, logs: Path) -> Iterator[None]:
    """Announce ``text``, then run the block; a failure in it names this step and ``logs``."""
    say(f"  > {text}")
    try:
        yield
    except DemoFailed:
        raise
    except Exception as error:  # every failure stops the demo here, named
        raise DemoFailed(text, error, logs) from error


@dataclass
class Demo:
    """One demo run: the project on the local stack, its log folder, the functions it serves."""

    project: str
    log_dir: Path
    stack_env: dict[str, str]
    store: SecretStore
    servers: list[FunctionServer] = field(default_factory=list)
    fakes: list[FakeServer] = field(default_factory=list)
    # What `python -m cli status` needs besides the emulators (a provider's endpoint), as an
    # operator would export it.
    status_env: dict[str, str] = field(default_factory=dict)

    @property
    def state_bucket(self) -> str:
        """The shared state bucket (locks, state documents), named as Terraform names it."""
        return f"{self.project}-keepalive-state"

    def env(self, **settings: str) -> dict[str, str]:
        """A function's environment: the emulators, the state bucket, then ``settings``."""
        return {**self.stack_env, "STATE_BUCKET": self.state_bucket, **settings}

    def step(self, text: str, logs: Path | None = None) -> contextlib.AbstractContextManager[None]:
        return step(text, logs or self.log_dir)

    def start_fake(self, fake: FakeServerT) -> FakeServerT:
        """Start a provider fake; it serves until the demo stops (cli status may ask it)."""
        fake.start()
        self.fakes.append(fake)
        return fake

    # --- functions ----------------------------------------------------------------------

    def serve(
        self,
        name: str,
        target: str,
        env: Mapping[str, str],
        *,
        trigger: str | None = None,
    ) -> FunctionServer:
        """``functions/<name>/main.py:<target>`` served as it ships (its own venv, its archive's
        files); with ``trigger``, a CloudEvent function behind a push subscription to that
        topic (as Eventarc delivers it), otherwise an HTTP function on a local port."""
        how = f"pushed from topic {trigger}" if trigger else "HTTP on a local port"
        with self.step(f"serve {target} under functions-framework, {how}"):
            server = start_function(
                name,
                target,
                signature_type="cloudevent" if trigger else "http",
                env=env,
                log_dir=self.log_dir,
            )
            self.servers.append(server)
            if trigger:
                gcp.create_push_subscription(self.project, trigger, f"{target}-push", server.url)
        say(f"    {target} on {server.url} (log {server.log_path.name})")
        return server

    def run_job(self, job_name: str, server: FunctionServer) -> dict[str, Any]:
        """Run a Scheduler job now, as ``gcloud scheduler jobs run`` does (its body published
        to its topic), and wait for the run's ``run_summary`` line in ``server``'s log."""
        job = scheduler.JOBS[job_name]
        return self.await_run(
            server,
            f"gcloud scheduler jobs run {job_name}  (publishes {job.body.decode()} to {job.topic})",
            lambda: scheduler.run(job_name, project=self.project),
        )

    def publish_run(
        self, server: FunctionServer, topic: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        """``gcloud pubsub topics publish`` a request, and wait for the run it causes."""
        return self.await_run(
            server,
            f"gcloud pubsub topics publish {topic} --message='{json.dumps(data)}'",
            lambda: self.publish(topic, data),
        )

    def await_run(
        self, server: FunctionServer, text: str, action: Callable[[], object]
    ) -> dict[str, Any]:
        seen = len(summaries(server))
        with self.step(f"{text}; waiting for the run's summary", server.log_path):
            action()
            return wait_for_summary(server, seen)

    def publish(self, topic: str, data: Mapping[str, Any]) -> None:
        """``gcloud pubsub topics publish TOPIC --message=JSON``."""
        client = gcp.publisher()
        try:
            body = json.dumps(data).encode()
            client.publish(gcp.topic_path(self.project, topic), body).result(30)
        finally:
            client.transport.close()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for fake in self.fakes:
            fake.stop()
        self.servers.clear()
        self.fakes.clear()


def summaries(server: FunctionServer) -> list[dict[str, Any]]:
    return logged(server, "run_summary")


def log_lines(server: FunctionServer) -> list[dict[str, Any]]:
    """The function's structured log lines (one JSON object per line), in order."""
    entries = []
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
    return entries


def logged(server: FunctionServer, event: str) -> list[dict[str, Any]]:
    """The structured log lines of ``server`` whose ``event`` is ``event``."""
    return [entry for entry in log_lines(server) if entry.get("event") == event]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """``condition()``'s first truthy value, polled; TimeoutError naming ``what`` after
    ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > give_up:
            raise TimeoutError(f"no {what} within {timeout:g}s")
        time.sleep(0.1)


def wait_for_summary(server: FunctionServer, seen: int) -> dict[str, Any]:
    """The first ``run_summary`` line after the ``seen`` ones already in the log."""
    found: list[dict[str, Any]] = wait_until(
        lambda: summaries(server)[seen:], f"run_summary line from {server.name}"
    )
    return found[0]


class Inbox:
    """A pull subscription on ``topic``, as a downstream app would read it: sees what is
    published from its creation on."""

    def __init__(self, project: str, topic: str, name: str) -> None:
        self.project, self.topic = project, topic
        gcp.create_topic(project, topic)
        self.path = gcp.create_subscription(project, topic, name)

    def take(self, count: int, timeout: float = WAIT_SECONDS) -> list[Any]:
        """The next ``count`` messages (acknowledged)."""
        return self._pull_until(lambda got: len(got) >= count, timeout)

    def published_until_now(self) -> list[Any]:
        """Whatever was published before now: a marker published now comes after everything a
        request that already answered has published (the webhooks publish before they answer)."""
        marker = uuid.uuid4().hex
        client = gcp.publisher()
        try:
            client.publish(gcp.topic_path(self.project, self.topic), b"{}", marker=marker).result(
                30
            )
        finally:
            client.transport.close()
        got = self._pull_until(lambda got: any(m.attributes.get("marker") == marker for m in got))
        return [m for m in got if "marker" not in m.attributes]

    def _pull_until(
        self, done: Callable[[list[Any]], bool], timeout: float = WAIT_SECONDS
    ) -> list[Any]:
        client = gcp.subscriber()
        got: list[Any] = []
        give_up = time.monotonic() + timeout
        try:
            while not done(got):
                if time.monotonic() > give_up:
                    raise TimeoutError(f"{len(got)} message(s) on {self.topic} in {timeout:g}s")
                response = client.pull(
                    request={"subscription": self.path, "max_messages": 50}, timeout=10
                )
                if response.received_messages:
                    ack_ids = [m.ack_id for m in response.received_messages]
                    client.acknowledge(request={"subscription": self.path, "ack_ids": ack_ids})
                    got.extend(m.message for m in response.received_messages)
        finally:
            client.close()
        return got
