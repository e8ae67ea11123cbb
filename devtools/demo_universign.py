"""The Universign story of ``make demo``: a signed webhook for a completed transaction reaches
universign_webhook, its status change is published and the signed document archived once; the
poll (behind universign-poll-trigger) finds nothing left to do; a forged webhook is refused."""

from __future__ import annotations

import json

from devtools import gcp, scheduler
from devtools.demo_kit import Demo, Inbox, say
from devtools.fakes.universign import TRANSACTION_ROUTE, SigningKey, UniversignFake

TITLE = "Universign: universign_webhook for signed events, universign_poll every 5 minutes"
SERVICES = ("pubsub", "gcs", "secretmanager")
JOB = "universign-poll-job"
STATUS_TOPIC = "universign-status-changes"
DOCUMENT = "contrat-de-service.pdf"


def run(demo: Demo) -> None:
    with demo.step("start the Universign fake (transactions API, JWKS, signed webhooks)"):
        fake = demo.start_fake(UniversignFake())
    state, archive = f"{demo.project}-universign-state", f"{demo.project}-universign-archive"
    with demo.step(
        f"seed universign-api-key as deploy.sh does; create buckets {state} and {archive}; "
        f"a downstream app subscribes to {STATUS_TOPIC}"
    ):
        demo.store.create("universign-api-key", labels={"integration": "universign"})
        demo.store.add_version("universign-api-key", fake.api_key)
        gcp.create_bucket(state, project=demo.project)
        archived = gcp.create_bucket(archive, project=demo.project)
        inbox = Inbox(demo.project, STATUS_TOPIC, "downstream-app-universign-status")
    env = demo.env(STATE_BUCKET=state, ARCHIVE_BUCKET=archive, UNIVERSIGN_API_URL=fake.url)
    webhook = demo.serve("universign_webhook", "universign_webhook", env)
    poll = demo.serve(
        "universign_webhook", "universign_poll", env, trigger=scheduler.JOBS[JOB].topic
    )

    with demo.step(
        "a client signs a transaction at Universign, which posts its signed (JWS) webhook "
        "to universign_webhook; the downstream app pulls the status change",
        webhook.log_path,
    ):
        tx = fake.create_transaction(state="started", documents={DOCUMENT: b"%PDF-1.7 signed"}).id
        fake.set_state(tx, "completed")
        event = fake.event(tx)
        answer = fake.deliver(webhook.url, event)
        assert answer.status_code == 200, f"HTTP {answer.status_code}: {answer.text[:200]}"
        (change,) = inbox.take(1)
    say(f"  universign: webhook HTTP {answer.status_code} ({answer.json()['result']})")
    published = json.loads(change.data)
    say(
        f"  universign: published to {STATUS_TOPIC}: transaction {tx} "
        f"{published['previous'] or '(new)'} -> {published['status']}"
    )

    with demo.step("Universign delivers the same event again (it retries)", webhook.log_path):
        again = fake.deliver(webhook.url, event)
    say(f"  universign: the retry: HTTP {again.status_code} ({again.json()['result']})")

    summary = demo.run_job(JOB, poll)
    say(
        f"  universign: poll run {summary['result']}: {summary['synced']} synced, "
        f"{summary['status_changes']} status changes"
    )
    with demo.step(f"list gs://{archive}/universign/{tx}/"):
        copies = [b.name for b in archived.list_blobs(prefix=f"universign/{tx}/")]
        assert copies == [f"universign/{tx}/{DOCUMENT}"], copies
        assert fake.downloads == 1, f"{fake.downloads} downloads"
    say(f"  universign: signed document archived once: gs://{archive}/{copies[0]} (1 download)")

    with demo.step(
        "a forged webhook (signed with a key that is not Universign's) posted to "
        "universign_webhook",
        webhook.log_path,
    ):
        reads = fake.count(TRANSACTION_ROUTE)
        body = fake.encode(fake.event(tx))
        forged = fake.deliver(
            webhook.url, body, signature=SigningKey.generate().sign(body, kid=fake.key.kid)
        )
        assert forged.status_code == 401, f"HTTP {forged.status_code}"
        assert fake.count(TRANSACTION_ROUTE) == reads, "the forged event was processed"
    say(f"  universign: forged webhook refused: HTTP {forged.status_code}, nothing read or stored")
