"""The Microsoft Graph story of ``make demo``: graph_webhook_renew (behind
graph-webhook-renew-trigger) creates the subscription once Graph's validation handshake against
graph_webhook_notify succeeds; a change notification reaches ``graph-notifications`` without
its clientState; a forged one is dropped."""

from __future__ import annotations

import json
import secrets

from devtools import gcp, scheduler
from devtools.demo_kit import Demo, Inbox, log_lines, say, wait_until
from devtools.fakes.graph import GraphFake

TITLE = "Microsoft Graph: graph_webhook_renew every hour, graph_webhook_notify for Graph's calls"
SERVICES = ("pubsub", "gcs", "secretmanager")
JOB = "graph-webhook-renew-job"
NOTIFICATIONS_TOPIC = "graph-notifications"
# The mailbox whose new messages are watched (GRAPH_USER_ID: one subscription to its Inbox).
USER_ID = "11111111-2222-3333-4444-555555555555"


def run(demo: Demo) -> None:
    with demo.step("start the Graph fake (Entra ID token endpoint, /v1.0/subscriptions)"):
        fake = demo.start_fake(GraphFake())
    client_state = secrets.token_urlsafe(32)
    with demo.step(
        "seed graph-tenant-id, graph-client-id, graph-client-secret and "
        "graph-webhook-client-state as deploy.sh does; a downstream app subscribes to "
        f"{NOTIFICATIONS_TOPIC}"
    ):
        for secret_id, value in (
            ("graph-tenant-id", fake.tenant_id),
            ("graph-client-id", fake.client_id),
            ("graph-client-secret", fake.client_secret),
            ("graph-webhook-client-state", client_state),
        ):
            demo.store.create(secret_id, labels={"integration": "graph"})
            demo.store.add_version(secret_id, value)
        gcp.create_bucket(demo.state_bucket, project=demo.project)
        inbox = Inbox(demo.project, NOTIFICATIONS_TOPIC, "downstream-app-graph-notifications")
    notify = demo.serve("graph_webhook_renew", "graph_webhook_notify", demo.env())
    renew = demo.serve(
        "graph_webhook_renew",
        "graph_webhook_renew",
        demo.env(
            GRAPH_LOGIN_URL=fake.url,
            GRAPH_API_URL=fake.url,
            GRAPH_NOTIFICATION_URL=f"{notify.url}/",
            GRAPH_USER_ID=USER_ID,
        ),
        trigger=scheduler.JOBS[JOB].topic,
    )
    demo.status_env.update(GRAPH_LOGIN_URL=fake.url, GRAPH_API_URL=fake.url)

    summary = demo.run_job(JOB, renew)
    with demo.step("list the app's subscriptions at Graph and the validation requests it sent"):
        live = fake.live()
        if len(live) != 1:
            raise LookupError(f"Graph holds {len(live)} subscriptions, not 1")
        sub = live[0]
        echoed = sum(v.accepted for v in fake.validations)
    say(
        f"  graph: run {summary['result']}: {summary['created']} created, after Graph's "
        f"validation handshake ({echoed} of {len(fake.validations)} echoed by graph_webhook_notify)"
    )
    say(
        f"  graph: subscription {sub.id} to {sub.resource} ({sub.change_type}), "
        f"expires {sub.expires_at:%Y-%m-%dT%H:%MZ}"
    )

    with demo.step(
        "Graph posts a change notification (a new message) to graph_webhook_notify; the "
        f"downstream app pulls {NOTIFICATIONS_TOPIC}",
        notify.log_path,
    ):
        answer = fake.notify(sub)
        (message,) = inbox.take(1)
        data = json.loads(message.data)
        stripped = "clientState" not in data and client_state.encode() not in message.data
        assert stripped, "the published message carries the clientState"
    say(
        f"  graph: HTTP {answer.status_code}; published to {NOTIFICATIONS_TOPIC}: "
        f"{data['changeType']} {data['resource']}"
    )
    say(f"  graph: message attributes {dict(message.attributes)}; clientState stripped")

    with demo.step(
        "a forged notification (wrong clientState) posted to graph_webhook_notify",
        notify.log_path,
    ):
        forged = fake.notify(sub, client_state=secrets.token_urlsafe(32))
        published = inbox.published_until_now()
        assert not published, f"{len(published)} forged message(s) published"
        (refusal, *_) = wait_until(
            lambda: [
                line
                for line in log_lines(notify)
                if "wrong clientState" in str(line.get("message"))
            ],
            "log line about the wrong clientState",
        )
    say(
        f"  graph: forged notification refused: HTTP {forged.status_code} (Graph must not "
        f"retry), nothing published; the function logged: {refusal['message']}"
    )
