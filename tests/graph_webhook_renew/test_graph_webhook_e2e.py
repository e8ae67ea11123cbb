"""graph_webhook_renew and graph_webhook_notify on the emulators, against the Graph fake.

The notify function runs under functions-framework as a subprocess, so the fake's validation
POST on create really reaches it; secrets live in the Secret Manager stand-in; what the notify
function publishes is pulled from the Pub/Sub emulator. The reconciler runs in-process
(``functions_framework.create_app``) with a Pub/Sub CloudEvent, except in the last test, where
the whole chain runs: lifecycle event -> notify -> Pub/Sub push -> reconciler subprocess.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest
import requests

from devtools import gcp, shipenv
from devtools import stack as devstack
from devtools.fakes.graph import GraphFake
from shared.secrets import SecretStore

SOURCE = Path(__file__).resolve().parents[2] / "functions" / "graph_webhook_renew" / "main.py"
INBOX = "/users/11111111-2222-3333-4444-555555555555/mailFolders('Inbox')/messages"
EVENTS = "/users/11111111-2222-3333-4444-555555555555/events"
MAX_NOTIFY_BYTES = 4096

pytestmark = pytest.mark.e2e


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class GraphWorld:
    project: str
    fake: GraphFake
    notify: devstack.FunctionServer
    client_state: str
    secrets: dict[str, str]  # env var -> secret id
    notifications_topic: str
    renew_topic: str
    store: SecretStore
    state_bucket: str

    @property
    def notify_url(self) -> str:
        return f"{self.notify.url}/"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "GRAPH_LOGIN_URL": self.fake.url,
            "GRAPH_API_URL": self.fake.url,
            "GRAPH_NOTIFICATION_URL": self.notify_url,
            "GRAPH_USER_ID": "11111111-2222-3333-4444-555555555555",
            "GRAPH_NOTIFICATIONS_TOPIC": self.notifications_topic,
            "GRAPH_RENEW_TOPIC": self.renew_topic,
            "STATE_BUCKET": self.state_bucket,
            **self.secrets,
            **extra,
        }


@pytest.fixture(scope="module")
def world(stack: devstack.Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphWorld]:
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    fake = GraphFake()
    fake.start()
    store = SecretStore(project)
    client_state = secrets.token_urlsafe(32)
    values = {
        "GRAPH_TENANT_ID_SECRET": fake.tenant_id,
        "GRAPH_CLIENT_ID_SECRET": fake.client_id,
        "GRAPH_CLIENT_SECRET_SECRET": fake.client_secret,
        "GRAPH_CLIENT_STATE_SECRET": client_state,
    }
    names: dict[str, str] = {}
    for variable, value in values.items():
        secret_id = unique(variable.lower().replace("_", "-"))
        store.create(secret_id)
        store.add_version(secret_id, value)
        names[variable] = secret_id
    notifications_topic, renew_topic = unique("graph-notifications"), unique("graph-renew")
    gcp.create_topic(project, notifications_topic)
    gcp.create_topic(project, renew_topic)
    notify = devstack.start_function(
        "graph_webhook_renew",
        "graph_webhook_notify",
        signature_type="http",
        env={
            "GRAPH_CLIENT_STATE_SECRET": names["GRAPH_CLIENT_STATE_SECRET"],
            "GRAPH_NOTIFICATIONS_TOPIC": notifications_topic,
            "GRAPH_RENEW_TOPIC": renew_topic,
            "GRAPH_NOTIFY_MAX_BYTES": str(MAX_NOTIFY_BYTES),
        },
        log_dir=tmp_path_factory.mktemp("graph-notify-logs"),
    )
    state_bucket = unique("graph-state")
    gcp.create_bucket(state_bucket)
    try:
        yield GraphWorld(
            project,
            fake,
            notify,
            client_state,
            names,
            notifications_topic,
            renew_topic,
            store,
            state_bucket,
        )
    finally:
        notify.stop()
        print(f"--- notify function log ---\n{notify.log_text()}")
        fake.stop()


@pytest.fixture
def graph(world: GraphWorld) -> GraphWorld:
    """The module's world with the fake emptied, so each test starts from no subscriptions."""
    fake = world.fake
    with fake.lock:
        fake.subscriptions.clear()
        fake.validations.clear()
        fake.page_size = 100
    fake.reset_observations()
    return world


# --- Pub/Sub helpers ---------------------------------------------------------------------


class Pull:
    """A pull subscription created now, so it only sees what is published from now on."""

    def __init__(self, project: str, topic: str) -> None:
        self.project, self.topic = project, topic
        self.path = gcp.create_subscription(project, topic, unique("pull"))

    def until(self, done: Callable[[list[Any]], bool], timeout: float = 30.0) -> list[Any]:
        client = gcp.subscriber()
        got: list[Any] = []
        give_up = time.monotonic() + timeout
        try:
            while not done(got):
                assert time.monotonic() < give_up, f"gave up waiting; got {len(got)} messages"
                response = client.pull(
                    request={"subscription": self.path, "max_messages": 50}, timeout=5
                )
                if response.received_messages:
                    client.acknowledge(
                        request={
                            "subscription": self.path,
                            "ack_ids": [m.ack_id for m in response.received_messages],
                        }
                    )
                    got.extend(m.message for m in response.received_messages)
        finally:
            client.close()
        return got

    def count(self, n: int) -> list[Any]:
        return self.until(lambda got: len(got) >= n)

    def all_before_sentinel(self) -> list[Any]:
        """Everything published before a sentinel we publish now. Whatever a request whose
        response already came back published is in Pub/Sub before the sentinel is."""
        marker = uuid.uuid4().hex
        client = gcp.publisher()
        try:
            client.publish(gcp.topic_path(self.project, self.topic), b"{}", sentinel=marker).result(
                timeout=10
            )
        finally:
            client.transport.close()
        got = self.until(lambda msgs: any(m.attributes.get("sentinel") == marker for m in msgs))
        return [m for m in got if "sentinel" not in m.attributes]


@pytest.fixture
def notifications(graph: GraphWorld) -> Pull:
    return Pull(graph.project, graph.notifications_topic)


@pytest.fixture
def triggers(graph: GraphWorld) -> Pull:
    return Pull(graph.project, graph.renew_topic)


# --- running the reconciler in-process ------------------------------------------------------


@dataclass
class Run:
    status: int
    summary: dict[str, Any]
    lines: list[dict[str, Any]]


def run_reconciler(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    graph: GraphWorld,
    data: dict[str, Any] | None = None,
    **env: str,
) -> Run:
    for key, value in graph.env(**env).items():
        monkeypatch.setenv(key, value)
    app = functions_framework.create_app("graph_webhook_renew", str(SOURCE), "cloudevent")
    now = datetime.now(UTC).isoformat()
    payload = base64.b64encode(json.dumps(data or {}).encode()).decode()
    capsys.readouterr()
    response = app.test_client().post(
        "/",
        headers={
            "ce-id": uuid.uuid4().hex,
            "ce-specversion": "1.0",
            "ce-source": f"//pubsub.googleapis.com/projects/{graph.project}/topics/t",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-time": now,
            "Content-Type": "application/json",
        },
        json={"message": {"data": payload, "messageId": "1", "publishTime": now}},
    )
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    summaries = [line for line in lines if line.get("event") == "run_summary"]
    assert len(summaries) == 1, out
    assert graph.fake.client_secret not in out and graph.client_state not in out
    return Run(response.status_code, summaries[0], lines)


def counters(run: Run) -> dict[str, int]:
    keys = ("created", "renewed", "recreated", "deleted", "unchanged", "failed")
    return {k: run.summary[k] for k in keys if run.summary[k]}


def ours(graph: GraphWorld, resource: str = INBOX, hours: float = 48, **kw: Any) -> Any:
    """A subscription as the reconciler would have created it."""
    return graph.fake.add(
        resource=resource,
        notification_url=graph.notify_url,
        lifecycle_url=graph.notify_url,
        client_state=graph.client_state,
        expires_in=timedelta(hours=hours),
        **kw,
    )


# --- the reconciler ----------------------------------------------------------------------


def test_first_run_creates_after_the_handshake(graph, monkeypatch, capsys) -> None:
    run = run_reconciler(monkeypatch, capsys, graph)

    assert run.status == 200
    assert counters(run) == {"created": 1}
    (sub,) = graph.fake.live()
    assert sub.resource == INBOX and sub.change_type == "created"
    assert sub.notification_url == sub.lifecycle_url == graph.notify_url
    assert sub.client_state == graph.client_state
    # Graph validated both URLs and the notify function echoed the token each time.
    assert [v.url for v in graph.fake.validations] == [graph.notify_url] * 2
    assert all(
        v.accepted and v.content_type.startswith("text/plain") for v in graph.fake.validations
    )
    # Requested at most 4200 minutes (under the 4230 maximum); the summary reports Graph's answer.
    lifetime = sub.expires_at - datetime.now(UTC)
    assert timedelta(minutes=4190) < lifetime <= timedelta(minutes=4200)
    assert run.summary["earliest_expiry"] == sub.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    second = run_reconciler(monkeypatch, capsys, graph)
    assert counters(second) == {"unchanged": 1}
    assert graph.fake.count("patch") == 0 and graph.fake.count("create") == 1


def test_renews_inside_the_window_only(graph, monkeypatch, capsys) -> None:
    soon = ours(graph, INBOX, hours=10)
    later = ours(graph, EVENTS, hours=40)
    wanted = json.dumps(
        [
            {"resource": INBOX, "changeType": "created"},
            {"resource": EVENTS, "changeType": "created"},
        ]
    )
    before_later = later.expires_at

    run = run_reconciler(monkeypatch, capsys, graph, GRAPH_SUBSCRIPTIONS=wanted)

    assert counters(run) == {"renewed": 1, "unchanged": 1}
    assert graph.fake.count("patch") == 1
    assert soon.expires_at - datetime.now(UTC) > timedelta(minutes=4190)
    assert later.expires_at == before_later
    assert run.summary["earliest_expiry"] == later.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_never_asks_above_the_maximum(graph, monkeypatch, capsys) -> None:
    # The fake refuses anything above 4230 minutes for Outlook messages, as Graph documents.
    run = run_reconciler(monkeypatch, capsys, graph, GRAPH_SUBSCRIPTION_MINUTES="10080")
    assert counters(run) == {"created": 1}
    (sub,) = graph.fake.live()
    assert sub.expires_at - datetime.now(UTC) <= timedelta(minutes=4230)

    # maxMinutes lowers it per subscription.
    graph.fake.subscriptions.clear()
    wanted = json.dumps([{"resource": INBOX, "changeType": "created", "maxMinutes": 600}])
    run = run_reconciler(monkeypatch, capsys, graph, GRAPH_SUBSCRIPTIONS=wanted)
    (sub,) = graph.fake.live()
    assert sub.expires_at - datetime.now(UTC) <= timedelta(minutes=600)


def test_patch_404_creates_it_again(graph, monkeypatch, capsys) -> None:
    old = ours(graph, hours=2)
    # Graph deleted it between our list and our PATCH.
    graph.fake.inject(
        "patch", 404, body={"error": {"code": "ResourceNotFound", "message": "not found"}}
    )

    run = run_reconciler(monkeypatch, capsys, graph)

    assert counters(run) == {"recreated": 1}
    (new,) = [s for s in graph.fake.live() if s.id != old.id]
    assert new.expires_at > old.expires_at


def test_expired_while_down_is_created_again(graph, monkeypatch, capsys) -> None:
    old = ours(graph, hours=30)
    graph.fake.advance(timedelta(hours=31))  # the seed's gap: nobody renewed it in time
    try:
        run = run_reconciler(monkeypatch, capsys, graph)
    finally:
        graph.fake.advance(timedelta(hours=-31))
    assert counters(run) == {"created": 1}
    assert old not in graph.fake.live()


def test_duplicates_are_removed_keeping_the_latest(graph, monkeypatch, capsys) -> None:
    graph.fake.page_size = 2  # the list spans pages: nextLink must be followed
    subs = [ours(graph, hours=h) for h in (30, 60, 40, 50, 35)]
    foreign = graph.fake.add(resource=INBOX, notification_url="https://elsewhere.test/hook")

    run = run_reconciler(monkeypatch, capsys, graph)

    assert counters(run) == {"unchanged": 1, "deleted": 4}
    assert {s.id for s in graph.fake.live()} == {subs[1].id, foreign.id}
    assert graph.fake.count("list") == 3


def test_subscription_matching_nothing_is_reported_not_touched(graph, monkeypatch, capsys) -> None:
    ours(graph)
    stray = ours(graph, "/users/11111111-2222-3333-4444-555555555555/contacts", hours=5)
    run = run_reconciler(monkeypatch, capsys, graph)
    assert counters(run) == {"unchanged": 1} and run.summary["unmanaged"] == 1
    assert stray in graph.fake.live() and graph.fake.count("patch") == 0
    (warning,) = [line for line in run.lines if line.get("event") == "unmanaged_subscriptions"]
    assert "contacts" in warning["message"]


def test_seed_era_subscription_without_lifecycle_url_is_replaced(
    graph, monkeypatch, capsys
) -> None:
    old = graph.fake.add(
        resource=INBOX, notification_url=graph.notify_url, client_state=graph.client_state
    )
    run = run_reconciler(monkeypatch, capsys, graph)
    assert counters(run) == {"created": 1, "deleted": 1}
    (new,) = graph.fake.live()
    assert new.id != old.id and new.lifecycle_url == graph.notify_url


def test_429_waits_retry_after(graph, monkeypatch, capsys, caplog) -> None:
    graph.fake.inject("list", 429, headers={"Retry-After": "1"})
    graph.fake.inject("create", 429, headers={"Retry-After": "2"})

    run = run_reconciler(monkeypatch, capsys, graph)

    assert counters(run) == {"created": 1}
    assert graph.fake.count("list") == 2 and graph.fake.count("create") == 2
    warnings = [line["message"] for line in run.lines if line["severity"] == "WARNING"]
    # The waits are the server's Retry-After values, not the client's own backoff.
    assert any("http_429" in w and "in 1.0s" in w for w in warnings), warnings
    assert any("http_429" in w and "in 2.0s" in w for w in warnings), warnings


def test_persistent_429_raises_so_pubsub_retries(graph, monkeypatch, capsys) -> None:
    graph.fake.inject("list", 429, count=10, headers={"Retry-After": "0"})
    run = run_reconciler(monkeypatch, capsys, graph)
    assert run.status == 500  # the function raised: Pub/Sub delivers the trigger again
    assert run.summary["failed"] == 1 and run.summary["result"] == "failed"
    assert graph.fake.live() == []


def test_refused_credentials_need_a_person_not_retries(graph, monkeypatch, capsys) -> None:
    wrong = unique("graph-client-secret-wrong")
    graph.store.create(wrong)
    graph.store.add_version(wrong, secrets.token_urlsafe(30))

    run = run_reconciler(monkeypatch, capsys, graph, GRAPH_CLIENT_SECRET_SECRET=wrong)

    assert run.status == 200  # acknowledged: retrying cannot fix a wrong secret
    assert run.summary["failed"] == 1
    (error,) = [line for line in run.lines if line.get("event") == "needs_reauth"]
    assert error["severity"] == "ERROR" and "graph-client-secret" in error["message"]
    assert graph.fake.count("list") == 0


def test_missing_secret_is_reported_not_retried(graph, monkeypatch, capsys) -> None:
    run = run_reconciler(
        monkeypatch, capsys, graph, GRAPH_CLIENT_STATE_SECRET=unique("graph-no-such-secret")
    )
    assert run.status == 200
    assert counters(run) == {"failed": 1}
    (error,) = [line for line in run.lines if line.get("event") == "config_error"]
    assert "graph-no-such-secret" in error["message"] and error["severity"] == "ERROR"
    assert graph.fake.live() == []


def test_endpoint_that_does_not_echo_is_refused_by_graph(graph, monkeypatch, capsys) -> None:
    # The fake itself answers 404 on this path, so the handshake fails.
    run = run_reconciler(
        monkeypatch, capsys, graph, GRAPH_NOTIFICATION_URL=f"{graph.fake.url}/not-a-webhook"
    )
    assert run.status == 200
    assert counters(run) == {"failed": 1}
    (error,) = [line for line in run.lines if line.get("event") == "subscription_failed"]
    assert "ValidationError" in error["message"]
    assert graph.fake.live() == []


def test_missing_configuration_is_reported(graph, monkeypatch, capsys) -> None:
    monkeypatch.delenv("GRAPH_USER_ID", raising=False)
    run = run_reconciler(monkeypatch, capsys, graph, GRAPH_USER_ID="")
    assert run.summary["result"] == "config_error" and run.summary["desired"] == 0
    assert any(line.get("event") == "config_error" for line in run.lines)
    assert graph.fake.count("token") == 0


def test_bad_trigger_message_is_acknowledged(graph, monkeypatch, capsys) -> None:
    for key, value in graph.env().items():
        monkeypatch.setenv(key, value)
    app = functions_framework.create_app("graph_webhook_renew", str(SOURCE), "cloudevent")
    now = datetime.now(UTC).isoformat()
    response = app.test_client().post(
        "/",
        headers={
            "ce-id": "1",
            "ce-specversion": "1.0",
            "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-time": now,
            "Content-Type": "application/json",
        },
        json={"message": {"data": base64.b64encode(b'{"delete": "all"}').decode()}},
    )
    assert response.status_code == 200
    assert graph.fake.count("token") == 0 and graph.fake.count("list") == 0


# --- the notify endpoint -----------------------------------------------------------------


def post(graph: GraphWorld, body: bytes | None = None, **kwargs: Any) -> requests.Response:
    return requests.post(graph.notify_url, data=body, timeout=10, **kwargs)


def test_handshake_echoes_the_decoded_token_as_plain_text(graph) -> None:
    token = "Validation: Testing client application reachability <script>alert(1)</script> & é"
    response = post(graph, b"", params={"validationToken": token})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.text == token


def cold_python(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter, as a cold instance starts: nothing imported yet, the
    function's own venv (its requirements.txt only), the archive's files as cwd and only path
    (``main.py``, siblings, shared/), a project id and no emulator."""
    python = shipenv.ensure(SOURCE.parent)
    with tempfile.TemporaryDirectory(prefix="graph-cold-") as tmp:
        app = shipenv.stage(SOURCE.parent, Path(tmp) / "app")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(app),
            "GOOGLE_CLOUD_PROJECT": "p",
        }
        return subprocess.run(
            [str(python), "-c", script],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


def test_handshake_needs_no_secret_manager_pubsub_or_requests() -> None:
    """The cold-start design: the handshake answers before the heavy clients are imported."""
    script = (
        "import sys, functions_framework\n"
        "app = functions_framework.create_app('graph_webhook_notify', 'main.py')\n"
        "r = app.test_client().post('/?validationToken=a%20b')\n"
        "assert r.status_code == 200 and r.get_data(as_text=True) == 'a b', r.status_code\n"
        "heavy = ['google.cloud.pubsub_v1', 'google.cloud.secretmanager', 'requests', 'grpc']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = cold_python(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_each_entry_point_loads_only_its_own_module() -> None:
    """The notify function never imports the reconciler (nor requests, through graph_api), and
    the reconciler never the notify module: each is imported by its entry point."""
    bad_trigger = base64.b64encode(b'{"delete": "all"}').decode()
    script = (
        "import sys, functions_framework\n"
        f"notify = functions_framework.create_app('graph_webhook_notify', 'main.py')\n"
        "assert notify.test_client().post('/?validationToken=t').status_code == 200\n"
        "ours = ('graph_notify', 'graph_reconcile', 'graph_api', 'requests')\n"
        "print(sorted(m for m in ours if m in sys.modules))\n"
        "for m in ('graph_notify', 'graph_reconcile'):\n"
        "    sys.modules.pop(m, None)\n"
        f"renew = functions_framework.create_app('graph_webhook_renew', 'main.py')\n"
        "r = renew.test_client().post('/', headers={'ce-id': '1', 'ce-specversion': '1.0',"
        " 'ce-source': '//pubsub.googleapis.com/projects/p/topics/t',"
        " 'ce-type': 'google.cloud.pubsub.topic.v1.messagePublished'},"
        f" json={{'message': {{'data': {bad_trigger!r}}}}})\n"
        "assert r.status_code == 200, r.status_code\n"
        "print(sorted(m for m in ours if m in sys.modules))\n"
    )
    done = cold_python(script)
    assert done.returncode == 0, done.stderr
    # The functions' own log lines are JSON objects; the two listings are Python lists.
    notify_loaded, renew_loaded = [x for x in done.stdout.splitlines() if x.startswith("[")]
    assert notify_loaded == "['graph_notify']"
    assert renew_loaded == "['graph_reconcile']"


def test_valid_notification_is_published_without_the_secret(graph, notifications) -> None:
    sub = ours(graph)
    item = graph.fake.change_notification(sub)

    response = graph.fake.deliver(graph.notify_url, [item])

    assert response.status_code == 202
    (message,) = notifications.count(1)
    assert dict(message.attributes) == {
        "subscriptionId": sub.id,
        "changeType": "created",
        "tenantId": graph.fake.tenant_id,
    }
    data = json.loads(message.data)
    assert "clientState" not in data and graph.client_state.encode() not in message.data
    assert data["resourceData"]["id"] == item["resourceData"]["id"]


def test_forged_client_state_is_dropped(graph, notifications) -> None:
    sub = ours(graph)
    response = graph.fake.notify(sub, client_state=graph.client_state[:-1] + "x")
    assert response.status_code == 202
    missing = graph.fake.notify(sub, client_state="")
    assert missing.status_code == 202
    assert notifications.all_before_sentinel() == []
    assert "wrong clientState" in graph.notify.log_text()


def test_mixed_batch_publishes_only_the_valid_items(graph, notifications) -> None:
    sub = ours(graph)
    good = [graph.fake.change_notification(sub) for _ in range(3)]
    forged = graph.fake.change_notification(sub, client_state="guess")
    malformed = {"clientState": graph.client_state, "changeType": "created"}  # no subscriptionId

    response = graph.fake.deliver(graph.notify_url, [good[0], forged, good[1], malformed, good[2]])

    assert response.status_code == 202
    published = notifications.all_before_sentinel()
    assert sorted(json.loads(m.data)["id"] for m in published) == sorted(g["id"] for g in good)


def test_reauthorization_required_reauthorizes(graph, triggers, monkeypatch, capsys) -> None:
    sub = ours(graph)

    response = graph.fake.lifecycle(sub, "reauthorizationRequired")

    assert response.status_code == 202
    (message,) = triggers.count(1)
    request = json.loads(message.data)
    assert request == {"reauthorize": [sub.id], "reason": "reauthorizationRequired"}
    run = run_reconciler(monkeypatch, capsys, graph, data=request)
    assert sub.reauthorized == 1
    assert run.summary["reauthorized"] == 1 and counters(run) == {"unchanged": 1}


def test_failed_reauthorization_falls_back_to_renewal(graph, monkeypatch, capsys) -> None:
    sub = ours(graph, hours=40)  # outside the renewal window
    graph.fake.inject("reauthorize", 403, body={"error": {"code": "Forbidden", "message": "x"}})
    run = run_reconciler(
        monkeypatch, capsys, graph, data={"reauthorize": [sub.id], "reason": "test"}
    )
    assert counters(run) == {"renewed": 1}
    assert sub.reauthorized == 0 and sub.expires_at - datetime.now(UTC) > timedelta(hours=60)


def test_subscription_removed_recreates_and_tells_downstream(
    graph, triggers, notifications, monkeypatch, capsys
) -> None:
    sub = ours(graph)

    response = graph.fake.lifecycle(sub, "subscriptionRemoved")  # the fake drops it too

    assert response.status_code == 202
    (message,) = triggers.count(1)
    (resync,) = notifications.count(1)
    assert resync.attributes["lifecycleEvent"] == "subscriptionRemoved"
    run = run_reconciler(monkeypatch, capsys, graph, data=json.loads(message.data))
    assert counters(run) == {"created": 1}
    (new,) = graph.fake.live()
    assert new.id != sub.id


def test_missed_publishes_a_resync_event(graph, triggers, notifications) -> None:
    sub = ours(graph)

    response = graph.fake.lifecycle(sub, "missed")

    assert response.status_code == 202
    (message,) = notifications.count(1)
    assert dict(message.attributes) == {
        "lifecycleEvent": "missed",
        "subscriptionId": sub.id,
        "tenantId": graph.fake.tenant_id,
    }
    assert triggers.all_before_sentinel() == []  # nothing for the reconciler to do


def test_forged_lifecycle_event_is_ignored(graph, triggers) -> None:
    sub = ours(graph)
    response = graph.fake.lifecycle(sub, "reauthorizationRequired", client_state="nope")
    assert response.status_code == 202
    assert triggers.all_before_sentinel() == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"value"',
        b"{}",
        b'{"value": []}',
        b'{"value": "x"}',
        b"\xff\xfe",
        b'{"value": [null, 1, "x", []]}',
        b'{"value": [{"clientState": "s", "changeType": "created"}]}',
    ],
)
def test_malformed_bodies_are_400(graph, body: bytes) -> None:
    response = post(graph, body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/html", None]
)
def test_wrong_content_type_is_415(graph, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = post(graph, b'{"value": [{}]}', headers=headers)
    assert response.status_code == 415


def test_oversize_body_is_413(graph) -> None:
    body = json.dumps({"value": [{"subscriptionId": "x" * (MAX_NOTIFY_BYTES + 10)}]}).encode()
    response = post(graph, body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    token = "t" * 5000
    response = post(graph, b"", params={"validationToken": token})
    assert response.status_code == 400


def test_other_methods_are_405(graph) -> None:
    assert requests.get(graph.notify_url, timeout=10).status_code == 405
    assert requests.put(graph.notify_url, data=b"{}", timeout=10).status_code == 405


def test_notify_never_answers_5xx_to_junk(graph) -> None:
    junk = [
        (b'{"value": [null, 1, "x", []]}', "application/json"),
        (b'{"value": [{"subscriptionId": 5, "clientState": []}]}', "application/json"),
        (
            b'{"value": [{"subscriptionId": "s", "lifecycleEvent": "x", "clientState": 1}]}',
            "application/json",
        ),
        (b"\x00" * 100, "application/json; charset=utf-16"),
    ]
    for body, content_type in junk:
        response = post(graph, body, headers={"Content-Type": content_type})
        assert 200 <= response.status_code < 500, (body, response.status_code)
    assert "Traceback" not in graph.notify.log_text()


# --- the whole chain ---------------------------------------------------------------------


def test_lifecycle_event_reaches_the_reconciler_through_pubsub(graph, function_server) -> None:
    reconciler = function_server(
        "graph_webhook_renew",
        "graph_webhook_renew",
        signature_type="cloudevent",
        env=graph.env(),
    )
    gcp.create_subscription(
        graph.project,
        graph.renew_topic,
        unique("push"),
        push_url=gcp.push_endpoint(reconciler.url, graph.project, graph.renew_topic),
    )
    sub = ours(graph)

    assert graph.fake.lifecycle(sub, "subscriptionRemoved").status_code == 202

    give_up = time.monotonic() + 60
    while not graph.fake.live():
        assert time.monotonic() < give_up, reconciler.log_text()
        time.sleep(0.2)
    (new,) = graph.fake.live()
    assert new.id != sub.id and new.notification_url == graph.notify_url
    # Wait for the summary line (the run may still be writing it).
    while '"run_summary"' not in reconciler.log_text():
        assert time.monotonic() < give_up
        time.sleep(0.2)
    summary = next(
        json.loads(line) for line in reconciler.log_text().splitlines() if '"run_summary"' in line
    )
    assert summary["created"] == 1 and summary["reason"] == "subscriptionRemoved"


def _summaries(server: Any, count: int, give_up: float) -> list[dict[str, Any]]:
    """The first ``count`` run_summary lines of ``server``, waiting for them."""
    while True:
        found = [
            json.loads(line)
            for line in server.log_text().splitlines()
            if '"run_summary"' in line and line.startswith("{")
        ]
        if len(found) >= count:
            return found[:count]
        assert time.monotonic() < give_up, server.log_text()
        time.sleep(0.2)


def test_forced_renewal_through_pubsub(graph, function_server) -> None:
    """The seed's ``python renew_webhook.py``: ``{"force": true}`` on the trigger topic renews
    every configured subscription now (and creates a missing one); with ``subscriptions`` only
    those. A forced message naming a resource that is not configured is acknowledged, unused."""
    wanted = json.dumps(
        [
            {"resource": INBOX, "changeType": "created"},
            {"resource": EVENTS, "changeType": "created"},
        ]
    )
    reconciler = function_server(
        "graph_webhook_renew",
        "graph_webhook_renew",
        signature_type="cloudevent",
        env=graph.env(GRAPH_SUBSCRIPTIONS=wanted),
    )
    topic = unique("graph-renew-forced")
    gcp.create_topic(graph.project, topic)
    gcp.create_subscription(
        graph.project,
        topic,
        unique("push"),
        push_url=gcp.push_endpoint(reconciler.url, graph.project, topic),
    )
    inbox = ours(graph, INBOX, hours=40)  # not due: a scheduled run would leave it alone
    first_expiry = inbox.expires_at
    give_up = time.monotonic() + 90

    def publish(message: dict[str, Any]) -> None:
        client = gcp.publisher()
        try:
            client.publish(
                gcp.topic_path(graph.project, topic), json.dumps(message).encode()
            ).result(timeout=10)
        finally:
            client.transport.close()

    publish({"force": True})
    (forced,) = _summaries(reconciler, 1, give_up)
    assert (forced["result"], forced["reason"]) == ("ok", "forced")
    assert (forced["renewed"], forced["created"], forced["unchanged"]) == (1, 1, 0)
    assert graph.fake.count("patch") == 1
    assert inbox.expires_at - first_expiry > timedelta(hours=20)
    events = next(s for s in graph.fake.live() if s.resource == EVENTS)
    with graph.fake.lock:  # 40 hours left: not due, so only the force renews it
        events.expires_at -= timedelta(hours=30)
    events_expiry, inbox_expiry = events.expires_at, inbox.expires_at

    # A resource that is not configured: logged, acknowledged, nothing renewed.
    publish({"force": True, "subscriptions": ["/users/someone-else/events"]})
    publish({"force": True, "subscriptions": [EVENTS.lower()]})
    _, only = _summaries(reconciler, 2, give_up)
    assert (only["renewed"], only["unchanged"], only["created"]) == (1, 1, 0)
    assert graph.fake.count("patch") == 2 and graph.fake.count("create") == 1
    assert events.expires_at - events_expiry > timedelta(hours=20)
    assert inbox.expires_at == inbox_expiry
    log = reconciler.log_text()
    assert "not in GRAPH_SUBSCRIPTIONS" in log and "someone-else" not in log
