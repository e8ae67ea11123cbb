"""main.py in-process, without emulators: the entry points hand over to their module, the
trigger prologue, the secret reads and the clients kept per instance.

main.py comes from ``load_main`` (conftest.py), executed afresh with the test's environment.
The end-to-end tests serve the same entry points under functions-framework.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar

import flask
import graph_notify
import graph_reconcile
import pytest
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc
from graph_plan import RenewRequest
from werkzeug.test import EnvironBuilder

from shared.errors import TerminalError, TransientError
from shared.settings import ConfigError


def trigger(data: dict[str, Any] | bytes, *, age: timedelta = timedelta()) -> CloudEvent:
    published = (datetime.now(UTC) - age).isoformat()
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/graph-webhook-renew-trigger",
            "time": published,
        },
        {"message": {"data": base64.b64encode(raw).decode(), "messageId": "m-1"}},
    )


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What graph_reconcile.reconcile was called with, instead of running it."""
    calls: list[tuple[Any, ...]] = []

    def record(settings: Any, clients: Any, request: RenewRequest, *, deadline: float) -> None:
        calls.append((settings, clients, request, deadline))

    monkeypatch.setattr(graph_reconcile, "reconcile", record)
    return calls


# --- graph_webhook_renew ---------------------------------------------------------------------


def test_trigger_is_handed_to_the_reconciler_with_the_run_deadline(load_main, runs) -> None:
    main = load_main(RUN_DEADLINE_SECONDS="100")
    before = time.monotonic()

    main.graph_webhook_renew(trigger({"reauthorize": ["s1", "s1"], "reason": "test"}))

    ((settings, clients, request, deadline),) = runs
    assert settings is main.SETTINGS and clients is main.clients()
    assert request == RenewRequest(("s1",), "test")
    assert before + 100 <= deadline <= time.monotonic() + 100


@pytest.mark.parametrize(
    "event",
    [
        trigger({"delete": "all"}),
        trigger({"reauthorize": "s1"}),
        trigger(b"not json"),
        trigger(b"[]"),
        trigger({}, age=timedelta(minutes=61)),
    ],
)
def test_bad_or_stale_trigger_is_acknowledged_without_a_run(load_main, runs, event) -> None:
    main = load_main()
    assert main.graph_webhook_renew(event) is None
    assert runs == []


def test_max_age_comes_from_the_environment(load_main, runs) -> None:
    main = load_main(EVENT_MAX_AGE_MINUTES="5")
    main.graph_webhook_renew(trigger({}, age=timedelta(minutes=6)))
    assert runs == []
    main.graph_webhook_renew(trigger({}, age=timedelta(minutes=4)))
    assert len(runs) == 1


def test_bad_subscription_list_fails_at_start_up(load_main) -> None:
    with pytest.raises(ConfigError, match="GRAPH_SUBSCRIPTIONS"):
        load_main(GRAPH_SUBSCRIPTIONS="[]")


# --- graph_webhook_notify --------------------------------------------------------------------


def notify_request(**kwargs: Any) -> flask.Request:
    return flask.Request(EnvironBuilder(method="POST", **kwargs).get_environ())


def test_notify_hands_the_request_to_graph_notify(load_main) -> None:
    main = load_main(entry_point="graph_webhook_notify")
    text, status, headers = main.graph_webhook_notify(
        notify_request(query_string={"validationToken": "a b"})
    )
    assert (text, status, headers["Content-Type"]) == ("a b", 200, "text/plain; charset=utf-8")


def test_unexpected_failure_is_a_logged_500(load_main, monkeypatch, caplog) -> None:
    main = load_main(entry_point="graph_webhook_notify")

    def broken(settings: Any, clients: Any, request: flask.Request) -> Any:
        assert settings is main.SETTINGS and clients is main.clients()
        raise KeyError("surprise")

    monkeypatch.setattr(graph_notify, "notify", broken)
    text, status, headers = main.graph_webhook_notify(notify_request(data=b"{}"))
    assert (json.loads(text), status) == ({"error": "internal error"}, 500)
    assert headers["Content-Type"] == "application/json"
    assert "notification handling failed unexpectedly" in caplog.text


# --- secrets and clients ---------------------------------------------------------------------


class Store:
    """Stands in for shared.secrets.SecretStore: ``answers`` maps a secret id to its value, or
    to the exception reading it raises."""

    answers: ClassVar[dict[str, Any]] = {}
    reads: ClassVar[list[str]] = []

    def __init__(self, project: str) -> None:
        assert project == "p"

    def read(self, secret_id: str) -> SimpleNamespace:
        Store.reads.append(secret_id)
        answer = Store.answers[secret_id]
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(value=answer)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> type[Store]:
    monkeypatch.setattr("shared.secrets.SecretStore", Store)
    monkeypatch.setattr(Store, "answers", {})
    monkeypatch.setattr(Store, "reads", [])
    return Store


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (gexc.NotFound("no"), TerminalError, "secret_missing"),
        (gexc.FailedPrecondition("disabled"), TerminalError, "secret_missing"),
        (gexc.PermissionDenied("no"), TerminalError, "secret_missing"),
        (gexc.ServiceUnavailable("down"), TransientError, "secret_manager"),
        (gexc.DeadlineExceeded("slow"), TransientError, "secret_manager"),
    ],
)
def test_secret_reads_are_terminal_only_when_a_person_must_add_one(
    load_main, store, error, kind, code
) -> None:
    main = load_main(GRAPH_CLIENT_STATE_SECRET="s1")
    store.answers["s1"] = error
    with pytest.raises(kind) as raised:
        main.clients().client_state()
    assert raised.value.code == code
    assert "s1" in str(raised.value) and type(error).__name__ in str(raised.value)
    store.answers["s1"] = "value"
    assert main.clients().client_state() == b"value"


def test_client_state_is_read_once_and_a_failed_read_is_tried_again(load_main, store) -> None:
    main = load_main(GRAPH_CLIENT_STATE_SECRET="state-id")
    store.answers["state-id"] = gexc.ServiceUnavailable("down")
    clients = main.clients()
    with pytest.raises(TransientError):
        clients.client_state()
    store.answers["state-id"] = "s3cret"
    assert clients.client_state() == b"s3cret"
    assert clients.client_state() == b"s3cret"
    assert store.reads == ["state-id", "state-id"]


def test_graph_client_is_built_once_and_reads_credentials_only_when_calling(
    load_main, store
) -> None:
    main = load_main()
    clients = main.clients()
    assert clients.graph is clients.graph
    assert store.reads == []
