"""The Universign story of ``make demo``: a signed webhook for a completed transaction reaches
universign_webhook, which queues it on universign-sync (202); universign_sync (pushed from that
topic) publishes its status change and archives the signed document once; Universign's retry of
the same event is queued again and acknowledged as a duplicate; the poll (behind
universign-poll-trigger) finds nothing left to do; a forged webhook is refused."""

from __future__ import annotations

import json
import time
from typing import Any

from devtools import gcp, scheduler
from devtools.demo_kit import Demo, Inbox, say
from devtools.fakes.universign import TRANSACTION_ROUTE, SigningKey, UniversignFake

TITLE = (
    "Universign: universign_webhook queues signed events, universign_sync syncs them, "
    "universign_poll every 5 minutes"
)
SERVICES = ("pubsub", "gcs", "secretmanager")
JOB = "universign-poll-job"
STATUS_TOPIC = "universign-status-changes"
SYNC_TOPIC = "universign-sync"
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
    gcp.create_topic(demo.project, SYNC_TOPIC)
    webhook = demo.serve("universign_webhook", "universign_webhook", env)
    worker = demo.serve("universign_webhook", "universign_sync", env, trigger=SYNC_TOPIC)
    poll = demo.serve(
        "universign_webhook", "universign_poll", env, trigger=scheduler.JOBS[JOB].topic
    )

    with demo.step(
        "a client signs a transaction at Universign, which posts its signed (JWS) webhook "
        f"to universign_webhook; it is queued on {SYNC_TOPIC} and universign_sync syncs it; "
        "the downstream app pulls the status change",
        worker.log_path,
    ):
        tx = fake.create_transaction(state="started", documents={DOCUMENT: b"%PDF-1.7 signed"}).id
        fake.set_state(tx, "completed")
        event = fake.event(tx)
        answer = fake.deliver(webhook.url, event)
        assert answer.status_code == 202, f"HTTP {answer.status_code}: {answer.text[:200]}"
        (change,) = inbox.take(1)
        first = _work_results(worker, 1)
    say(f"  universign: webhook HTTP {answer.status_code} ({answer.json()['result']})")
    say(f"  universign: universign_sync: {first[0]}")
    published = json.loads(change.data)
    say(
        f"  universign: published to {STATUS_TOPIC}: transaction {tx} "
        f"{published['previous'] or '(new)'} -> {published['status']}"
    )

    with demo.step("Universign delivers the same event again (it retries)", worker.log_path):
        again = fake.deliver(webhook.url, event)
        second = _work_results(worker, 2)
    say(
        f"  universign: the retry: HTTP {again.status_code} ({again.json()['result']}); "
        f"universign_sync: {second[-1]}"
    )

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


def _work_results(worker: Any, count: int, timeout: float = 60.0) -> list[str]:
    """The results of the worker's sync_message lines, once there are ``count`` of them
    other than a message handed back for redelivery (in_progress while another holds it)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")
        ]
        results = [
            line["result"]
            for line in lines
            if line.get("event") == "sync_message" and not line.get("retry")
        ]
        if len(results) >= count or time.monotonic() > deadline:
            assert len(results) >= count, f"universign_sync handled {results}"
            return results
        time.sleep(0.2)
