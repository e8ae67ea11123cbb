"""Fixtures and helpers shared by the Universign tests (imported by the test modules, and by
tests/hardening for its Universign set-up).

Named uniquely (not conftest) so other folders' tests can import it without clashing with
other integrations' helpers.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import function_loading
import pytest
from alerting import alerts, feeds
from cloudevents.http import CloudEvent

from devtools import gcp
from devtools.fakes.universign import UniversignFake
from devtools.stack import Stack
from shared.secrets import SecretStore

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "functions" / "universign_webhook"
# The entry points; monitored() files a line under the Cloud Run service deploying it.
WEBHOOK, POLL, SYNC = "universign_webhook", "universign_poll", "universign_sync"
SIGNATURE_TYPES = {WEBHOOK: "http", POLL: "cloudevent", SYNC: "cloudevent"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Kit:
    fake: UniversignFake
    env: dict[str, str]
    project: str
    state: Any  # google.cloud.storage.Bucket
    archive: Any
    subscription: str
    # The work topic the webhook publishes to, and a pull subscription on it for the tests.
    sync_topic: str = ""
    sync_subscription: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)

    def doc(self, transaction_id: str) -> dict[str, Any] | None:
        blob = self.state.get_blob(f"universign/transactions/{transaction_id}.json")
        return None if blob is None else json.loads(blob.download_as_bytes())

    def must(self, transaction_id: str) -> dict[str, Any]:
        doc = self.doc(transaction_id)
        assert doc is not None, f"no document for {transaction_id}"
        return doc

    def names(self, prefix: str) -> list[str]:
        return sorted(b.name for b in self.state.list_blobs(prefix=prefix))

    def archived(self, transaction_id: str) -> dict[str, Any]:
        prefix = f"universign/{transaction_id}/"
        return {b.name[len(prefix) :]: b for b in self.archive.list_blobs(prefix=prefix)}

    def messages(self, expect: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Status-change messages published so far: waits until at least ``expect`` arrived,
        then collects any extra that is already there."""
        subscriber = gcp.subscriber()
        try:
            deadline = time.monotonic() + timeout
            while len(self.received) < expect and time.monotonic() < deadline:
                self._pull(subscriber, immediate=False)
            for _ in range(2):
                self._pull(subscriber, immediate=True)
        finally:
            subscriber.close()
        return list(self.received)

    def _pull(self, subscriber: Any, *, immediate: bool) -> None:
        try:
            response = subscriber.pull(
                request={
                    "subscription": self.subscription,
                    "max_messages": 100,
                    "return_immediately": immediate,
                },
                timeout=3 if immediate else 5,
            )
        except Exception:  # noqa: BLE001 - a pull timeout just means nothing yet
            return
        if response.received_messages:
            subscriber.acknowledge(
                request={
                    "subscription": self.subscription,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
        for m in response.received_messages:
            self.received.append(json.loads(m.message.data))

    def queued(self, expect: int = 1, timeout: float = 10.0) -> list[Any]:
        """The work messages the webhook published (PubsubMessage), acknowledged: waits until
        ``expect`` arrived, then takes any extra already there."""
        found: list[Any] = []
        subscriber = gcp.subscriber()
        try:
            deadline = time.monotonic() + timeout
            immediate = False
            while True:
                try:
                    response = subscriber.pull(
                        request={
                            "subscription": self.sync_subscription,
                            "max_messages": 100,
                            "return_immediately": immediate,
                        },
                        timeout=3 if immediate else 5,
                    )
                    received = list(response.received_messages)
                except Exception:  # noqa: BLE001 - a pull timeout just means nothing yet
                    received = []
                if received:
                    subscriber.acknowledge(
                        request={
                            "subscription": self.sync_subscription,
                            "ack_ids": [m.ack_id for m in received],
                        }
                    )
                found.extend(m.message for m in received)
                if len(found) >= expect:
                    if immediate and not received:
                        break
                    immediate = True
                elif time.monotonic() >= deadline:
                    break
        finally:
            subscriber.close()
        return found


def make_kit(stack: Stack, fake: UniversignFake, **extra: str) -> Kit:
    project = stack.project
    state_name, archive_name = unique("uni-state"), unique("uni-archive")
    state = gcp.create_bucket(state_name, project=project)
    archive = gcp.create_bucket(archive_name, project=project)
    key_secret = unique("universign-api-key")
    store = SecretStore(project)
    store.create(key_secret)
    store.add_version(key_secret, fake.api_key)
    topic = unique("universign-status")
    gcp.create_topic(project, topic)
    subscription = gcp.create_subscription(project, topic, unique("sub"))
    sync_topic = unique("universign-sync")
    gcp.create_topic(project, sync_topic)
    sync_subscription = gcp.create_subscription(project, sync_topic, unique("sync-sub"))
    env = {
        **stack.env(),
        "STATE_BUCKET": state_name,
        "ARCHIVE_BUCKET": archive_name,
        "UNIVERSIGN_API_URL": fake.url,
        "UNIVERSIGN_API_KEY_SECRET": key_secret,
        "UNIVERSIGN_STATUS_TOPIC": topic,
        "UNIVERSIGN_SYNC_TOPIC": sync_topic,
        "HTTP_ATTEMPTS": "2",
        **extra,
    }
    return Kit(fake, env, project, state, archive, subscription, sync_topic, sync_subscription)


@pytest.fixture(name="fake")
def fake_fixture() -> Iterator[UniversignFake]:
    server = UniversignFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="kit")
def kit_fixture(stack: Stack, fake: UniversignFake) -> Kit:
    return make_kit(stack, fake)


def load_main(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *, entry_point: str = WEBHOOK
) -> ModuleType:
    """main.py executed afresh under functions_framework serving ``entry_point`` (WEBHOOK or
    POLL), with ``env`` set, for tests that need the whole function: its SETTINGS, clients()
    and entry points (see tests/function_loading.py ``boot``). Its settings are read when it
    executes, SETTINGS.entry_point (its logger's name) from the FUNCTION_TARGET boot sets."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module: ModuleType = function_loading.boot(
        FOLDER / "main.py", entry_point, SIGNATURE_TYPES[entry_point]
    )
    return module


def webhook_client(module: ModuleType) -> Any:
    """A Flask test client that hands every request to the module's webhook entry point."""
    app = flask.Flask(f"test-{module.__name__}")

    def view() -> Any:
        return module.universign_webhook(flask.request)

    app.add_url_rule("/", "webhook", view, methods=["GET", "POST", "PUT"])
    return app.test_client()


class _WorkResults(logging.Handler):
    """Collects the ``result`` of each sync_message line the worker writes."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "json_fields", {}) or {}
        if fields.get("event") == "sync_message":
            self.results.append(str(fields["result"]))


def pipeline_client(module: ModuleType, kit: Kit) -> Any:
    """A Flask test client for the whole path a delivery takes: the webhook, then (when it
    queued the event) universign_sync on the work message, as Pub/Sub would deliver it. It
    answers the worker's result: 200 when the message was acknowledged, 503 when it was handed
    back for redelivery; the webhook's own answer when it queued nothing. For tests about what
    a sync does, not about the webhook's answer (test_universign_delivery has those)."""
    app = flask.Flask(f"pipeline-{module.__name__}")

    def view() -> Any:
        answer = module.universign_webhook(flask.request)
        if answer.status_code != 202:
            return answer
        handler = _WorkResults()
        module.log.addHandler(handler)
        try:
            outcomes = run_work(module, kit.queued(1))
        finally:
            module.log.removeHandler(handler)
        status = 200 if outcomes == ["acked"] else 503
        return flask.jsonify({"result": ",".join(handler.results)}), status

    app.add_url_rule("/", "pipeline", view, methods=["GET", "POST", "PUT"])
    return app.test_client()


def deliver(client: Any, kit: Kit, tx: str, event_type: str | None = None, **kw: Any) -> Any:
    """A signed event about ``tx`` from the fake, posted to the webhook."""
    return post_event(client, kit.fake, kit.fake.event(tx, event_type, **kw))


def post_event(client: Any, fake: UniversignFake, event: dict[str, Any] | bytes, **kw: Any) -> Any:
    body = event if isinstance(event, bytes) else fake.encode(event)
    headers = {"Content-Type": "application/json"}
    signature = kw.pop("signature", None)
    headers["X-JWS-Signature"] = signature if signature is not None else fake.key.sign(body)
    return client.post("/" + kw.pop("query", ""), data=body, headers=headers)


def work_event(
    data: bytes,
    *,
    message_id: str = "m-work-1",
    published: datetime | None = None,
    attributes: dict[str, str] | None = None,
) -> CloudEvent:
    """A work message as Eventarc delivers it to universign_sync."""
    when = (published or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    message: dict[str, Any] = {
        "data": base64.b64encode(data).decode("ascii"),
        "messageId": message_id,
        "publishTime": when,
        "attributes": attributes or {},
    }
    event_attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/universign-sync",
        "id": message_id,
        "time": when,
    }
    return CloudEvent(event_attributes, {"message": message})


def as_work_event(message: Any, *, published: datetime | None = None) -> CloudEvent:
    """A PubsubMessage pulled from the work subscription (Kit.queued) as Eventarc's CloudEvent;
    ``published`` overrides its publish time (an old redelivery)."""
    when = published or message.publish_time
    return work_event(
        bytes(message.data),
        message_id=message.message_id,
        published=when,
        attributes=dict(message.attributes),
    )


def run_work(module: ModuleType, messages: list[Any]) -> list[str]:
    """Hand each work message to ``module.universign_sync`` as Pub/Sub would: ``acked`` when it
    returned, else the redelivery it asked for (``redeliver``)."""
    outcomes: list[str] = []
    for message in messages:
        try:
            module.universign_sync(as_work_event(message))
        except module.Redeliver:
            outcomes.append("redeliver")
        else:
            outcomes.append("acked")
    return outcomes


def deliver_and_work(
    client: Any, module: ModuleType, kit: Kit, event: dict[str, Any] | bytes, **kw: Any
) -> tuple[Any, list[str]]:
    """Post a signed event to the webhook, then run the worker on what it queued: the webhook's
    answer and the worker's outcomes (none when nothing was queued)."""
    answer = post_event(client, kit.fake, event, **kw)
    queued = kit.queued(1) if answer.status_code == 202 else []
    return answer, run_work(module, queued)


def env_without_stack(fake: UniversignFake) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": os.environ.get("GOOGLE_CLOUD_PROJECT", "local-project"),
        "STATE_BUCKET": "unused",
        "ARCHIVE_BUCKET": "unused",
        "UNIVERSIGN_API_URL": fake.url,
    }


def logged(out: str, event: str) -> list[dict[str, Any]]:
    """The JSON lines with this ``event`` among what a test captured of stdout (capsys)."""
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def summaries(out: str) -> list[dict[str, Any]]:
    """The poll's run_summary lines (one per run) in ``out``."""
    return logged(out, "run_summary")


def monitored(out: str, entry_point: str) -> tuple[dict[str, int], set[str]]:
    """What the lines in ``out`` do to monitoring, as terraform/ defines it (tests/alerting.py):
    how many times each log-based metric is incremented, and the alert policies fed."""
    return feeds(out, entry_point=entry_point), alerts(out, entry_point=entry_point)


class Clock:
    """Stands in for shared.clock.now: time moves only when a test says so."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)
