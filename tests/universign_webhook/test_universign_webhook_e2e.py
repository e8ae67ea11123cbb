"""The webhook and the worker served by functions-framework in their own processes, signed
deliveries from the Universign fake over real HTTP, the work topic and state on the emulators:
webhook -> universign-sync (push, as Eventarc delivers it) -> universign_sync -> status change."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import requests

from devtools import gcp
from devtools.fakes.universign import JWKS_ROUTE, TRANSACTION_ROUTE, SigningKey, UniversignFake
from shared.secrets import SecretStore
from tests.universign_webhook.universign_testkit import (
    Kit,
    logged,
    make_kit,
    summaries,
    unique,
)

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() > deadline:
            assert found, "timed out"
            return found
        time.sleep(0.2)


def serve_worker(kit: Kit, function_server: Any) -> Any:
    """universign_sync served, and pushed every message of the kit's work topic."""
    worker = function_server(
        "universign_webhook", "universign_sync", signature_type="cloudevent", env=kit.env
    )
    push = gcp.push_endpoint(worker.url, kit.project, kit.sync_topic)
    gcp.create_subscription(kit.project, kit.sync_topic, unique("push-sync"), push_url=push)
    return worker


def work_lines(worker: Any) -> list[dict[str, Any]]:
    return logged(worker.log_text(), "sync_message")


@pytest.fixture
def served(stack: Any, fake: UniversignFake, function_server: Any) -> tuple[Kit, str]:
    kit = make_kit(stack, fake)
    serve_worker(kit, function_server)
    server = function_server("universign_webhook", "universign_webhook", env=kit.env)
    return kit, server.url


def test_valid_signature_is_queued_and_synced(served: tuple[Kit, str]) -> None:
    kit, url = served
    tx = kit.fake.create_transaction(state="started").id
    answer = kit.fake.deliver(url, kit.fake.event(tx))
    assert answer.status_code == 202, answer.text
    assert answer.json()["result"] == "queued"
    assert [m["status"] for m in kit.messages(1, timeout=60)] == ["EN_COURS"]
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "EN_COURS"


def _refused(kit: Kit, answer: requests.Response, tx: str) -> None:
    assert answer.status_code == 401, answer.text
    assert kit.fake.count(TRANSACTION_ROUTE) == 0  # nothing processed
    assert kit.doc(tx) is None
    assert kit.names("universign/events/") == []


def test_tampered_body_is_refused(served: tuple[Kit, str]) -> None:
    kit, url = served
    tx = kit.fake.create_transaction(state="started").id
    body = kit.fake.encode(kit.fake.event(tx))
    signature = kit.fake.key.sign(body)
    tampered = body.replace(b"started", b"completed")
    _refused(kit, kit.fake.deliver(url, tampered, signature=signature), tx)


def test_missing_signature_is_refused(served: tuple[Kit, str]) -> None:
    kit, url = served
    tx = kit.fake.create_transaction(state="started").id
    _refused(kit, kit.fake.deliver(url, kit.fake.event(tx), signature=""), tx)


def test_wrong_key_is_refused(served: tuple[Kit, str]) -> None:
    kit, url = served
    tx = kit.fake.create_transaction(state="started").id
    intruder = SigningKey.generate()
    body = kit.fake.encode(kit.fake.event(tx))
    _refused(
        kit, kit.fake.deliver(url, body, signature=intruder.sign(body, kid=kit.fake.key.kid)), tx
    )
    _refused(kit, kit.fake.deliver(url, body, key=intruder), tx)


def test_signature_in_another_header_is_not_looked_for(served: tuple[Kit, str]) -> None:
    kit, url = served
    tx = kit.fake.create_transaction(state="started").id
    _refused(kit, kit.fake.deliver(url, kit.fake.event(tx), header="X-Other-Signature"), tx)
    # The documented fallback header is accepted.
    assert (
        kit.fake.deliver(url, kit.fake.event(tx), header="X-Universign-Signature").status_code
        == 202
    )


def test_same_event_twice_is_processed_once(
    stack: Any, fake: UniversignFake, function_server: Any
) -> None:
    """Universign delivering twice, or the webhook publishing twice: two work messages, one
    API call, one status-change event."""
    kit = make_kit(stack, fake)
    worker = serve_worker(kit, function_server)
    url = function_server("universign_webhook", "universign_webhook", env=kit.env).url
    tx = fake.create_transaction(state="started").id
    event = fake.event(tx)
    assert fake.deliver(url, event).json()["result"] == "queued"
    again = fake.deliver(url, event)
    assert again.status_code == 202 and again.json()["result"] == "queued"
    # The second may arrive while the first holds the claim: handed back (in_progress), its
    # redelivery is then acknowledged as the duplicate it is.
    wait_for(lambda: any(x["result"] == "duplicate" for x in work_lines(worker)))
    results = [line["result"] for line in work_lines(worker)]
    assert results.count("synced") == 1
    assert set(results) <= {"synced", "duplicate", "in_progress"}
    assert fake.count(TRANSACTION_ROUTE) == 1
    assert [m["status"] for m in kit.messages(1)] == ["EN_COURS"]


def test_a_failed_publish_answers_503_and_universigns_retry_is_processed(
    stack: Any, fake: UniversignFake, function_server: Any
) -> None:
    """The webhook's work topic does not exist: Pub/Sub refuses the publish for real, the
    webhook answers 503 and nothing is processed. Universign's retry, to a webhook that can
    publish, is then processed once."""
    kit = make_kit(stack, fake)
    worker = serve_worker(kit, function_server)
    broken = function_server(
        "universign_webhook",
        "universign_webhook",
        env={**kit.env, "UNIVERSIGN_SYNC_TOPIC": unique("universign-sync-missing")},
    )
    tx = fake.create_transaction(state="started").id
    event = fake.event(tx)
    answer = fake.deliver(broken.url, event)
    assert answer.status_code == 503, answer.text
    assert answer.json()["result"] == "retry_later" and answer.headers["Retry-After"]
    assert [line["result"] for line in logged(broken.log_text(), "webhook_request")] == [
        "retry_later"
    ]
    assert fake.count(TRANSACTION_ROUTE) == 0 and kit.doc(tx) is None
    fixed = function_server("universign_webhook", "universign_webhook", env=kit.env)
    assert fake.deliver(fixed.url, event).status_code == 202
    assert [m["status"] for m in kit.messages(1, timeout=60)] == ["EN_COURS"]
    assert [line["result"] for line in wait_for(lambda: work_lines(worker))] == ["synced"]


def test_a_message_the_worker_failed_is_redelivered_and_processed_once(
    stack: Any, fake: UniversignFake, function_server: Any
) -> None:
    """Universign answers 502 to the worker's first delivery: the worker hands the message
    back (HTTP 500 to the push), Pub/Sub redelivers it, and the redelivery syncs it. A copy
    of the same message published again (a duplicate publish) changes nothing."""
    kit = make_kit(stack, fake)
    worker = serve_worker(kit, function_server)
    url = function_server("universign_webhook", "universign_webhook", env=kit.env).url
    tx = fake.create_transaction(state="started").id
    fake.inject(TRANSACTION_ROUTE, 502, count=2)  # both attempts of the first delivery
    assert fake.deliver(url, fake.event(tx)).status_code == 202
    assert [m["status"] for m in kit.messages(1, timeout=90)] == ["EN_COURS"]
    lines = wait_for(lambda: [x for x in work_lines(worker) if x["result"] == "synced"])
    results = [line["result"] for line in work_lines(worker)]
    assert results[0] == "retry_later" and results.count("synced") == 1
    assert len(lines) == 1
    calls = fake.count(TRANSACTION_ROUTE)
    # The duplicate: the same work message published once more.
    (queued,) = kit.queued(1)
    publisher = gcp.publisher()
    try:
        publisher.publish(gcp.topic_path(kit.project, kit.sync_topic), queued.data).result(30)
    finally:
        publisher.transport.close()
    wait_for(lambda: any(x["result"] == "duplicate" for x in work_lines(worker)))
    assert fake.count(TRANSACTION_ROUTE) == calls  # no second call to Universign
    assert [m["status"] for m in kit.messages(1, timeout=5)] == ["EN_COURS"]


def test_key_rotation_new_kid_is_fetched(served: tuple[Kit, str]) -> None:
    kit, url = served
    tx = kit.fake.create_transaction(state="started").id
    assert kit.fake.deliver(url, kit.fake.event(tx)).status_code == 202
    old = kit.fake.key
    # A forged key id a moment before costs the new key nothing: each new kid is checked.
    forged = kit.fake.deliver(url, kit.fake.event(tx), key=SigningKey.generate())
    assert forged.status_code == 401
    kit.fake.set_state(tx, "completed")
    new = kit.fake.rotate_key()
    assert new.kid != old.kid
    answer = kit.fake.deliver(url, kit.fake.event(tx))
    assert answer.status_code == 202, answer.text
    assert kit.fake.count(JWKS_ROUTE) == 3
    wait_for(lambda: (kit.doc(tx) or {}).get("status") == "SIGNE")
    # The withdrawn key no longer works once the set was refetched.
    _event = kit.fake.event(tx)
    assert kit.fake.deliver(url, _event, key=old).status_code == 401


def test_client_mistakes_are_4xx(served: tuple[Kit, str]) -> None:
    kit, url = served
    tx = kit.fake.create_transaction(state="started").id
    body = kit.fake.encode(kit.fake.event(tx))
    sig = {"X-JWS-Signature": kit.fake.key.sign(body)}
    assert requests.get(url, timeout=10).status_code == 405
    wrong_type = requests.post(
        url, data=body, headers={**sig, "Content-Type": "text/plain"}, timeout=10
    )
    assert wrong_type.status_code == 415
    huge = b"{" + b" " * 300_000 + b"}"
    too_big = requests.post(
        url, data=huge, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert too_big.status_code == 413
    bad_json = b"{oops"
    answer = requests.post(
        url,
        data=bad_json,
        headers={
            "Content-Type": "application/json",
            "X-JWS-Signature": kit.fake.key.sign(bad_json),
        },
        timeout=10,
    )
    assert answer.status_code == 400
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


def test_url_token_when_configured(stack: Any, fake: UniversignFake, function_server: Any) -> None:
    kit = make_kit(stack, fake)
    token_secret = kit.env["UNIVERSIGN_API_KEY_SECRET"] + "-hook"
    store = SecretStore(kit.project)
    store.create(token_secret)
    store.add_version(token_secret, "tok_" + "a" * 32)
    env = {**kit.env, "UNIVERSIGN_WEBHOOK_TOKEN_SECRET": token_secret}
    url = function_server("universign_webhook", "universign_webhook", env=env).url
    tx = fake.create_transaction(state="started").id
    assert fake.deliver(url, fake.event(tx)).status_code == 401
    assert fake.deliver(f"{url}?token=tok_{'b' * 32}", fake.event(tx)).status_code == 401
    assert fake.count(TRANSACTION_ROUTE) == 0
    assert fake.deliver(f"{url}?token=tok_{'a' * 32}", fake.event(tx)).status_code == 202


def test_poll_end_to_end_through_pubsub(
    stack: Any, fake: UniversignFake, function_server: Any
) -> None:
    """Scheduler message -> Pub/Sub emulator -> push -> universign_poll subprocess -> fake."""
    kit = make_kit(stack, fake)
    tx = fake.create_transaction(state="started", documents={"c.pdf": b"%PDF c"}).id
    hook = function_server("universign_webhook", "universign_webhook", env=kit.env)
    serve_worker(kit, function_server)
    assert fake.deliver(hook.url, fake.event(tx)).status_code == 202
    wait_for(lambda: (kit.doc(tx) or {}).get("status") == "EN_COURS")
    fake.set_state(tx, "completed")  # no webhook this time: only the poll can notice
    trigger = f"universign-poll-trigger-{tx[-8:]}"
    poll = function_server(
        "universign_webhook", "universign_poll", signature_type="cloudevent", env=kit.env
    )
    gcp.create_push_subscription(kit.project, trigger, f"push-{tx[-8:]}", poll.url)
    publisher = gcp.publisher()
    try:
        publisher.publish(gcp.topic_path(kit.project, trigger), b"{}").result(timeout=30)
    finally:
        publisher.transport.close()
    deadline = time.monotonic() + 60
    # The archive is the last thing the poll records.
    while (
        time.monotonic() < deadline
        and ((kit.doc(tx) or {}).get("archive") or {}).get("status") != "done"
    ):
        time.sleep(0.2)
    doc = kit.must(tx)
    assert doc["status"] == "SIGNE" and doc["archive"]["status"] == "done"
    assert list(kit.archived(tx)) == ["c.pdf"]
    assert [m["status"] for m in kit.messages(2)] == ["EN_COURS", "SIGNE"]
    runs = summaries(poll.log_text())
    while time.monotonic() < deadline and not runs:
        time.sleep(0.2)
        runs = summaries(poll.log_text())
    assert runs and runs[0]["status_changes"] == 1 and runs[0]["synced"] == 1
    assert runs[0]["result"] == "ok"
    # The webhook's request is no run: its line is a webhook_request.
    assert logged(hook.log_text(), "run_summary") == []
    assert [line["result"] for line in logged(hook.log_text(), "webhook_request")] == ["queued"]
