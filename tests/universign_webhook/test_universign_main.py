"""main.py's entry points on their own: the webhook writes the Reply it is given and one
webhook_request line (a request, never counted as a run), hides unexpected failures behind a
500; the poll runs only for the scheduler's empty message. No emulator: the work below the
entry points is replaced."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from cloudevents.http import CloudEvent
from universign_delivery import WorkOutcome
from universign_plan import Reply

from devtools.fakes.universign import UniversignFake
from tests.universign_webhook.universign_testkit import (
    POLL,
    SYNC,
    WEBHOOK,
    env_without_stack,
    load_main,
    logged,
    monitored,
    webhook_client,
    work_event,
)

# A refused request is counted by reason; it is never a run, failed or not. No alert reads
# the reasons these tests produce (retry_later, internal_error): the poll's runs and
# needs_reauth are what say the integration is broken.
REJECTED = {"keepalive_run_duration_seconds": 1, "keepalive_webhook_rejected": 1}


def bare(fake: UniversignFake, monkeypatch: pytest.MonkeyPatch, entry_point: str) -> ModuleType:
    """main.py serving ``entry_point`` with nothing behind it: building its clients would fail
    the test."""
    module = load_main(env_without_stack(fake), monkeypatch, entry_point=entry_point)

    def no_clients() -> Any:
        raise AssertionError("no clients expected")

    monkeypatch.setattr(module, "clients", no_clients)
    return module


@pytest.fixture
def bare_main(fake: UniversignFake, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return bare(fake, monkeypatch, WEBHOOK)


@pytest.fixture
def bare_sync(fake: UniversignFake, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return bare(fake, monkeypatch, SYNC)


@pytest.fixture
def bare_poll(fake: UniversignFake, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return bare(fake, monkeypatch, POLL)


def test_the_webhook_writes_the_reply_and_one_request_line(
    bare_main: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = Reply(503, "retry_later", "TransientError", fields={"event_id": "evt_1"})
    monkeypatch.setattr(bare_main, "clients", lambda: "the clients")
    seen: list[Any] = []

    def handle(settings: Any, clients: Any, request: Any, *, deadline: float) -> Reply:
        seen.append((settings, clients, request.method))
        return reply

    monkeypatch.setattr(bare_main, "handle_webhook", handle)
    answer = webhook_client(bare_main).post("/", data=b"{}")
    assert seen == [(bare_main.SETTINGS, "the clients", "POST")]
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "60"
    assert answer.get_json() == {"result": "retry_later", "detail": "TransientError"}
    out = capsys.readouterr().out
    assert logged(out, "run_summary") == []
    (line,) = logged(out, "webhook_request")
    assert line["entry_point"] == "universign_webhook" and line["http_status"] == 503
    assert line["result"] == "retry_later" and line["event_id"] == "evt_1"
    assert line["duration_seconds"] >= 0
    assert monitored(out, WEBHOOK) == (REJECTED, set())


def test_an_unexpected_failure_answers_500_without_details(
    bare_main: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bare_main, "clients", lambda: "the clients")

    def handle(*_args: Any, **_kwargs: Any) -> Reply:
        raise RuntimeError("a detail no caller may see")

    monkeypatch.setattr(bare_main, "handle_webhook", handle)
    answer = webhook_client(bare_main).post("/", data=b"{}")
    assert answer.status_code == 500
    assert answer.get_json() == {"result": "internal_error"}
    assert "a detail" not in answer.get_data(as_text=True)
    out = capsys.readouterr().out
    (line,) = logged(out, "webhook_request")
    assert line["http_status"] == 500 and line["result"] == "internal_error"
    # The ERROR line with the traceback is no metric's: only the request line counts.
    assert monitored(out, WEBHOOK) == (REJECTED, set())


def trigger(data: bytes) -> CloudEvent:
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/universign-poll-trigger",
        "time": datetime.now(UTC).isoformat(),
    }
    message = {"data": base64.b64encode(data).decode(), "messageId": "m1"}
    return CloudEvent(attributes, {"message": message})


def test_the_poll_runs_for_the_schedulers_empty_message(
    bare_poll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[Any] = []
    monkeypatch.setattr(bare_poll, "clients", lambda: "the clients")
    monkeypatch.setattr(
        bare_poll, "run_poll", lambda s, c, *, deadline: runs.append((s, c, deadline))
    )
    bare_poll.universign_poll(trigger(b"{}"))
    assert [(s, c) for s, c, _ in runs] == [(bare_poll.SETTINGS, "the clients")]


@pytest.mark.parametrize("data", [b'{"force": true}', b"not json"])
def test_the_poll_ignores_any_other_message(
    bare_poll: Any, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    monkeypatch.setattr(bare_poll, "run_poll", lambda *_a, **_k: pytest.fail("no poll expected"))
    bare_poll.universign_poll(trigger(data))  # acknowledged, never raised


WORK = json.dumps(
    {
        "event_id": "evt_1",
        "event_type": "transaction.lifecycle.completed",
        "transaction_id": "tx_1",
        "refusal": None,
        "received_at": "2026-01-01T00:00:00.000Z",
    }
).encode()


@pytest.mark.parametrize(
    ("outcome", "severity"),
    [
        (WorkOutcome("synced", fields={"transaction_id": "tx_1"}), "INFO"),
        (WorkOutcome("duplicate", fields={"transaction_id": "tx_1"}), "INFO"),
        (WorkOutcome("retry_later", True, "ProviderError", {"transaction_id": "tx_1"}), "WARNING"),
    ],
)
def test_the_worker_writes_one_line_per_message_and_raises_to_be_redelivered(
    bare_sync: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    outcome: WorkOutcome,
    severity: str,
) -> None:
    monkeypatch.setattr(bare_sync, "clients", lambda: "the clients")
    seen: list[Any] = []

    def process(settings: Any, clients: Any, event: Any, *, deadline: float) -> WorkOutcome:
        seen.append((settings, clients, event.event_id, event.transaction_id))
        return outcome

    monkeypatch.setattr(bare_sync, "process_work", process)
    if outcome.retry:
        with pytest.raises(bare_sync.Redeliver, match="retry_later"):
            bare_sync.universign_sync(work_event(WORK))
    else:
        bare_sync.universign_sync(work_event(WORK))  # returns: acknowledged
    assert seen == [(bare_sync.SETTINGS, "the clients", "evt_1", "tx_1")]
    out = capsys.readouterr().out
    (line,) = logged(out, "sync_message")
    assert (line["result"], line["retry"], line["severity"]) == (
        outcome.result,
        outcome.retry,
        severity,
    )
    assert line["entry_point"] == "universign_sync" and line["transaction_id"] == "tx_1"
    assert line["queued_seconds"] > 0  # received long ago: the queue's delay is reported
    assert logged(out, "run_summary") == [] and logged(out, "webhook_request") == []


def test_an_unforeseen_worker_failure_is_logged_and_redelivered(
    bare_sync: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never an acknowledged, unsynced event: the failure propagates (Pub/Sub redelivers,
    then dead-letters) and still writes the message's line."""
    monkeypatch.setattr(bare_sync, "clients", lambda: "the clients")

    def process(*_args: Any, **_kwargs: Any) -> WorkOutcome:
        raise RuntimeError("a bug")

    monkeypatch.setattr(bare_sync, "process_work", process)
    with pytest.raises(RuntimeError, match="a bug"):
        bare_sync.universign_sync(work_event(WORK))
    (line,) = logged(capsys.readouterr().out, "sync_message")
    assert (line["result"], line["retry"], line["severity"]) == ("internal_error", True, "WARNING")
    assert line["event_id"] == "evt_1" and line["transaction_id"] == "tx_1"
