"""graph_notify without the framework or an emulator: a Flask request in, a reply out, with a
recording publisher and a clientState held in memory.

The end-to-end tests send the same kinds of requests to the function served by
functions-framework; here each answer is checked against what was (not) read and published.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import flask
import pytest
from graph_notify import MAX_FIELD_CHARS, Batch, notify, publish, sort_items
from werkzeug.test import EnvironBuilder

from shared.errors import TerminalError

SECRET = "the-client-state"
SETTINGS = SimpleNamespace(
    project="p",
    notifications_topic="notes",
    renew_topic="renew",
    publish_timeout_seconds=2,
    notify_max_bytes=4096,
)
NOTES = "projects/p/topics/notes"
RENEW = "projects/p/topics/renew"


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.waited = False

    def result(self, timeout: float) -> str:
        assert 0 < timeout <= SETTINGS.publish_timeout_seconds
        self.waited = True
        if self.error is not None:
            raise self.error
        return "message-id"


class Publisher:
    """Records what is published; every publish answers with a future that fails when
    ``error`` is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.futures: list[Future] = []

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future:
        self.sent.append((topic, json.loads(data), attributes))
        self.futures.append(Future(self.error))
        return self.futures[-1]


class Clients:
    """The two things graph_notify asks of main.Clients, counting their use."""

    def __init__(self, *, publisher: Publisher | None = None, state_error: bool = False) -> None:
        self._publisher = publisher or Publisher()
        self.state_error = state_error
        self.state_reads = 0
        self.publisher_uses = 0

    @property
    def publisher(self) -> Publisher:
        self.publisher_uses += 1
        return self._publisher

    def client_state(self) -> bytes:
        self.state_reads += 1
        if self.state_error:
            raise TerminalError("secret graph-webhook-client-state has no readable version")
        return SECRET.encode()


def request(
    body: bytes = b"",
    *,
    method: str = "POST",
    query: dict[str, str] | None = None,
    content_type: str | None = "application/json",
) -> flask.Request:
    environ = EnvironBuilder(
        method=method, query_string=query, data=body, content_type=content_type
    ).get_environ()
    return flask.Request(environ)


def change(sub_id: str = "sub-1", **extra: Any) -> dict[str, Any]:
    return {
        "subscriptionId": sub_id,
        "clientState": SECRET,
        "changeType": "created",
        "tenantId": "tenant-1",
        "resource": "Users/u1/Messages/m1",
        **extra,
    }


def lifecycle(event: str, sub_id: str = "sub-1") -> dict[str, Any]:
    return {
        "subscriptionId": sub_id,
        "clientState": SECRET,
        "lifecycleEvent": event,
        "tenantId": "tenant-1",
    }


def batch_body(*items: Any) -> bytes:
    return json.dumps({"value": list(items)}).encode()


# --- the handshake and the answers -----------------------------------------------------------


def test_handshake_echoes_the_token_without_reading_the_secret() -> None:
    clients = Clients()
    token = "Validation: <b>reachability</b> & é"
    text, status, headers = notify(SETTINGS, clients, request(query={"validationToken": token}))
    assert (text, status) == (token, 200)
    assert headers == {
        "Content-Type": "text/plain; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
    }
    assert clients.state_reads == 0 and clients.publisher_uses == 0


def test_overlong_token_is_400() -> None:
    _, status, _ = notify(SETTINGS, Clients(), request(query={"validationToken": "t" * 4097}))
    assert status == 400
    _, status, _ = notify(SETTINGS, Clients(), request(query={"validationToken": "t" * 4096}))
    assert status == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_even_with_a_token(method: str) -> None:
    reply = notify(SETTINGS, Clients(), request(method=method, query={"validationToken": "t"}))
    assert reply[1] == 405
    assert json.loads(reply[0]) == {"error": "POST only"}
    assert reply[2]["Content-Type"] == "application/json"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(content_type: str | None) -> None:
    reply = notify(SETTINGS, Clients(), request(batch_body(change()), content_type=content_type))
    assert reply[1] == 415


def test_json_content_type_with_parameters_is_accepted() -> None:
    body = batch_body(change())
    reply = notify(
        SETTINGS, Clients(), request(body, content_type="Application/JSON; charset=utf-8")
    )
    assert reply[1] == 202


def test_body_over_the_limit_is_413_before_the_secret_is_read() -> None:
    clients = Clients()
    body = batch_body(change(resource="x" * SETTINGS.notify_max_bytes))
    assert notify(SETTINGS, clients, request(body))[1] == 413
    assert clients.state_reads == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'"value"',
        b"{}",
        b'{"value": []}',
        b'{"value": "x"}',
        b'{"value": [null, 1, "x", []]}',
        b'{"value": [{"clientState": "s", "changeType": "created"}]}',
    ],
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    assert notify(SETTINGS, Clients(), request(body))[1] == 400


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def item_with(**raw_fields: str) -> bytes:
    """A batch of one real-looking item (right clientState) whose fields are raw JSON text."""
    fields = {k: json.dumps(v) for k, v in change().items()} | raw_fields
    return ('{"value": [{' + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}]}").encode()


# The function's default body limit: deep nesting takes room.
ROOMY = SimpleNamespace(**vars(SETTINGS) | {"notify_max_bytes": 1_000_000})

# Input that made json.loads or str.encode raise (a 500 and an ERROR traceback) or that would
# reach Pub/Sub in a form it cannot carry. Each is refused as a whole batch, before the secret
# is read: Graph never sends any of it.
PATHOLOGICAL_BODIES = {
    "deep body": b"[" * 100_000,
    "deep value": ('{"value": ' + nested(5000) + "}").encode(),
    "deep item": ('{"value": [' + nested(5000, json.dumps(change())) + "]}").encode(),
    "deep resourceData": item_with(resourceData=nested(3000, "{}")),
    "deep clientState": item_with(clientState=nested(3000, json.dumps(SECRET))),
    "deep objects": item_with(resourceData='{"a": ' * 3000 + "{}" + "}" * 3000),
    "just past the depth limit": item_with(resourceData=nested(29, "{}")),
    "huge integer subscriptionId": item_with(subscriptionId="7" * 5000),
    "huge integer in resourceData": item_with(resourceData='{"n": -' + "1" * 4301 + "}"),
    "huge integer body": b"9" * 10_000,
    "lone surrogate clientState": item_with(clientState='"\\ud800"'),
    "lone surrogate after the secret": item_with(clientState=f'"{SECRET}\\udfff"'),
    "lone surrogate subscriptionId": item_with(subscriptionId='"sub-\\ud800"'),
    "lone surrogate tenantId": item_with(tenantId='"\\udc00"'),
    "lone surrogate key": item_with(**{"\\udc00": '"x"'}),
    "NaN": item_with(resourceData='{"n": NaN}'),
    "number too large": item_with(resourceData="1e999"),
    "invalid UTF-8": item_with(clientState='"x"').replace(b'"x"', b'"\xff\xfe"'),
}


@pytest.mark.parametrize("body", PATHOLOGICAL_BODIES.values(), ids=list(PATHOLOGICAL_BODIES.keys()))
def test_pathological_bodies_are_400_before_the_secret_is_read(
    body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clients = Clients()
    text, status, _ = notify(ROOMY, clients, request(body))
    assert status == 400
    assert json.loads(text)["error"].startswith("body is not usable JSON: ")
    assert clients.state_reads == 0 and clients.publisher_uses == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_the_depth_limit_leaves_room_for_real_notifications() -> None:
    publisher = Publisher()
    body = item_with(resourceData=nested(28, '{"id": "m1"}'))  # 32 levels in all
    assert notify(SETTINGS, Clients(publisher=publisher), request(body))[1] == 202
    assert len(publisher.sent) == 1


def test_unreadable_secret_is_503_and_says_why(logged: Any) -> None:
    clients = Clients(state_error=True)
    assert notify(SETTINGS, clients, request(batch_body(change())))[1] == 503
    (error,) = logged("config_error")
    assert error == {"event": "config_error", "provider": "graph"}
    assert clients.publisher_uses == 0


def test_pubsub_refusal_is_503_so_graph_retries() -> None:
    clients = Clients(publisher=Publisher(error=TimeoutError()))
    assert notify(SETTINGS, clients, request(batch_body(change())))[1] == 503


def test_mixed_batch_is_202_and_counted(caplog: pytest.LogCaptureFixture, logged: Any) -> None:
    caplog.set_level(logging.INFO)
    publisher = Publisher()
    body = batch_body(
        change("a"),
        change("b", clientState="guess"),
        change("c", clientState=None),
        {"clientState": SECRET, "changeType": "created"},
        lifecycle("missed", "d"),
    )

    text, status, _ = notify(SETTINGS, Clients(publisher=publisher), request(body))

    assert (text, status) == ("", 202)
    assert [(topic, data["subscriptionId"]) for topic, data, _ in publisher.sent] == [
        (NOTES, "a"),
        (NOTES, "d"),
    ]
    assert logged("forged_notification") == [
        {"event": "forged_notification", "provider": "graph", "count": 2}
    ]
    assert logged("notifications_received") == [
        {
            "event": "notifications_received",
            "provider": "graph",
            "published": 1,
            "lifecycle": 1,
            "forged": 2,
            "malformed": 1,
        }
    ]
    assert SECRET not in caplog.text and "guess" not in caplog.text


# --- sort_items ------------------------------------------------------------------------------


def test_sort_items_checks_and_strips_the_client_state() -> None:
    batch = sort_items([change("a"), lifecycle("reauthorizationRequired", "b")], SECRET.encode())
    assert [item["subscriptionId"] for item in batch.changes] == ["a"]
    assert [item["subscriptionId"] for item in batch.lifecycle] == ["b"]
    assert all("clientState" not in item for item in batch.changes + batch.lifecycle)
    assert (batch.forged, batch.malformed) == (0, 0)


@pytest.mark.parametrize(
    "item",
    [
        change(clientState=SECRET[:-1]),
        change(clientState=SECRET + " "),
        change(clientState=""),
        change(clientState=None),
        change(clientState=["the-client-state"]),
        change(clientState="\ud800"),
        change(clientState=SECRET + "\udfff"),
        {k: v for k, v in change().items() if k != "clientState"},
        lifecycle("reauthorizationRequired") | {"clientState": "nope"},
    ],
)
def test_sort_items_counts_a_wrong_client_state_as_forged(item: dict[str, Any]) -> None:
    batch = sort_items([item], SECRET.encode())
    assert batch == Batch(forged=1)


@pytest.mark.parametrize(
    "item",
    [
        None,
        "x",
        [],
        change(subscriptionId=""),
        change(subscriptionId=5),
        change(subscriptionId="s" * (MAX_FIELD_CHARS + 1)),
        change(changeType=""),
        change(changeType=None),
        lifecycle("somethingElse"),
    ],
)
def test_sort_items_counts_items_without_the_expected_fields_as_malformed(item: Any) -> None:
    assert sort_items([item], SECRET.encode()) == Batch(malformed=1)


# --- publish ---------------------------------------------------------------------------------


def test_nothing_to_publish_does_not_touch_pubsub() -> None:
    clients = Clients()
    publish(SETTINGS, clients, Batch(forged=3, malformed=1))
    assert clients.publisher_uses == 0


def test_change_notifications_go_to_the_notifications_topic() -> None:
    publisher = Publisher()
    item = {k: v for k, v in change("a", tenantId="t" * 300).items() if k != "clientState"}

    publish(SETTINGS, Clients(publisher=publisher), Batch(changes=[item]))

    ((topic, data, attributes),) = publisher.sent
    assert topic == NOTES and data == item
    assert attributes == {"subscriptionId": "a", "changeType": "created", "tenantId": "t" * 256}
    assert all(f.waited for f in publisher.futures)


def test_lifecycle_events_become_one_trigger_and_resync_events(
    caplog: pytest.LogCaptureFixture, logged: Any
) -> None:
    caplog.set_level(logging.INFO)
    publisher = Publisher()
    events = [
        lifecycle("reauthorizationRequired", "a"),
        lifecycle("reauthorizationRequired", "a"),
        lifecycle("subscriptionRemoved", "b"),
        lifecycle("missed", "c"),
    ]
    for item in events:
        del item["clientState"]

    publish(SETTINGS, Clients(publisher=publisher), Batch(lifecycle=events))

    resyncs = [
        (data["lifecycleEvent"], attrs) for topic, data, attrs in publisher.sent if topic == NOTES
    ]
    assert resyncs == [
        (
            "subscriptionRemoved",
            {
                "lifecycleEvent": "subscriptionRemoved",
                "subscriptionId": "b",
                "tenantId": "tenant-1",
            },
        ),
        ("missed", {"lifecycleEvent": "missed", "subscriptionId": "c", "tenantId": "tenant-1"}),
    ]
    triggers = [(data, attrs) for topic, data, attrs in publisher.sent if topic == RENEW]
    assert triggers == [
        ({"reauthorize": ["a"], "reason": "reauthorizationRequired,subscriptionRemoved"}, {})
    ]
    assert [f["lifecycle_event"] for f in logged("lifecycle")] == [
        "reauthorizationRequired",
        "reauthorizationRequired",
        "subscriptionRemoved",
        "missed",
    ]


def test_missed_alone_needs_no_reconciler_run() -> None:
    publisher = Publisher()
    item = lifecycle("missed")
    del item["clientState"]
    publish(SETTINGS, Clients(publisher=publisher), Batch(lifecycle=[item]))
    assert [topic for topic, _, _ in publisher.sent] == [NOTES]


def test_a_failed_publish_is_raised() -> None:
    publisher = Publisher(error=RuntimeError("pubsub down"))
    with pytest.raises(RuntimeError, match="pubsub down"):
        publish(SETTINGS, Clients(publisher=publisher), Batch(changes=[change()]))
