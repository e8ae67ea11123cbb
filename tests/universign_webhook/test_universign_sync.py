"""The webhook and the poll in-process, on the emulators (real fake-gcs-server, Pub/Sub
emulator, Secret Manager stand-in) against the Universign fake."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.fakes.universign import DOWNLOAD_ROUTE, TRANSACTION_ROUTE, UniversignFake
from shared import clock
from tests.universign_webhook.universign_testkit import (  # noqa: F401 - fixtures
    Kit,
    fake_fixture,
    kit_fixture,
    load_main,
    make_kit,
    post_event,
    webhook_client,
)


@pytest.fixture
def main(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> Any:
    return load_main(kit.env, monkeypatch)


@pytest.fixture
def client(main: Any) -> Any:
    return webhook_client(main)


def deliver(client: Any, kit: Kit, tx: str, event_type: str | None = None, **kw: Any) -> Any:
    return post_event(client, kit.fake, kit.fake.event(tx, event_type, **kw))


# --- every state path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        (["draft", "started", "completed"], ["EN_ATTENTE", "EN_COURS", "SIGNE"]),
        (["started", "paused", "started", "completed"], ["EN_COURS", "SIGNE"]),
        (["draft", "cancelled"], ["EN_ATTENTE", "ANNULE"]),
        (["started", "expired"], ["EN_COURS", "EXPIRE"]),
        (["started", "completed", "archived"], ["EN_COURS", "SIGNE"]),
        (["started", "archived"], ["EN_COURS", "SIGNE"]),
    ],
)
def test_state_paths(kit: Kit, client: Any, path: list[str], statuses: list[str]) -> None:
    tx = kit.fake.create_transaction(state=path[0]).id
    for state in path:
        kit.fake.set_state(tx, state)
        answer = deliver(client, kit, tx)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    doc = kit.doc(tx)
    assert doc is not None
    assert doc["status"] == statuses[-1]
    assert doc["universign_state"] == path[-1]
    messages = kit.messages(len(statuses))
    assert [m["status"] for m in messages] == statuses
    assert [m["previous"] for m in messages] == [None, *statuses[:-1]]
    assert all(m["transaction_id"] == tx for m in messages)
    assert messages[-1]["universign_state"] in path
    assert doc["outbox"] == []
    assert doc["webhook_received"] is True
    assert len(doc["history"]) == len(path)


def test_refusal_from_participant_data(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(client, kit, tx).status_code == 200
    kit.fake.refuse(tx, "signature_refusal")
    # A lifecycle-free event (opened) still makes us read the participants.
    assert deliver(client, kit, tx, "action.opened").status_code == 200
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "REFUSE" and doc["refused_at"]
    assert doc["refusal"]["reason"] == "signature_refusal"
    assert [s["state"] for s in doc["signers"]] == ["refused"]
    kit.fake.set_state(tx, "cancelled")  # the requester cancels afterwards
    assert deliver(client, kit, tx).status_code == 200
    assert kit.must(tx)["status"] == "REFUSE"
    assert [m["status"] for m in kit.messages(2)] == ["EN_COURS", "REFUSE"]


def test_refusal_from_an_action_stalled_event(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    answer = deliver(client, kit, tx, "action.stalled", reason="consultation_refusal")
    assert answer.status_code == 200
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "REFUSE"
    assert doc["refusal"]["reason"] == "consultation_refusal"


def test_a_stall_that_is_not_a_refusal_changes_nothing(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(client, kit, tx, "action.stalled", reason="waiting_period").status_code == 200
    assert kit.must(tx)["status"] == "EN_COURS"


def test_payload_state_is_never_trusted(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    event["payload"]["object"]["state"] = "completed"  # signed, but the API says started
    event["type"] = "transaction.lifecycle.completed"
    assert post_event(client, kit.fake, event).status_code == 200
    assert kit.must(tx)["status"] == "EN_COURS"
    assert kit.fake.count(TRANSACTION_ROUTE) == 1


def test_final_status_never_regresses_even_if_the_api_says_so(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="completed").id
    assert deliver(client, kit, tx).status_code == 200
    kit.fake.set_state(tx, "started")  # nonsense, but the function must hold its ground
    assert deliver(client, kit, tx).status_code == 200
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(1)] == ["SIGNE"]


def test_events_without_a_transaction_are_acknowledged(kit: Kit, client: Any) -> None:
    event = {"object": "event", "id": "evt_key1", "type": "apikey.created", "payload": {}}
    answer = post_event(client, kit.fake, event)
    assert answer.status_code == 200 and answer.get_json()["result"] == "ignored"
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


# --- duplicates and the archive ----------------------------------------------------------------


def test_the_same_event_twice_is_processed_once(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    first = post_event(client, kit.fake, event)
    second = post_event(client, kit.fake, event)
    assert first.status_code == 200 and first.get_json()["result"] == "synced"
    assert second.status_code == 200 and second.get_json()["result"] == "duplicate"
    assert kit.fake.count(TRANSACTION_ROUTE) == 1
    assert kit.must(tx)["sync_attempts"] == 1


def test_signed_documents_are_archived_once(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(
        state="started",
        documents={"contrat.pdf": b"%PDF contract", "annexe/1.pdf": b"%PDF annex"},
    ).id
    assert deliver(client, kit, tx).status_code == 200
    assert kit.archived(tx) == {}
    kit.fake.set_state(tx, "completed")
    assert deliver(client, kit, tx).status_code == 200
    archived = kit.archived(tx)
    assert sorted(archived) == ["annexe_1.pdf", "contrat.pdf"]
    assert archived["contrat.pdf"].download_as_bytes() == b"%PDF contract"
    generations = {n: b.generation for n, b in archived.items()}
    doc = kit.doc(tx)
    assert doc is not None and doc["archive"]["status"] == "done"
    assert kit.fake.downloads == 2
    kit.fake.set_state(tx, "archived")
    for _ in range(2):
        assert deliver(client, kit, tx).status_code == 200
    assert kit.fake.downloads == 2
    assert {n: b.generation for n, b in kit.archived(tx).items()} == generations


def test_archive_failure_is_retried_by_the_poll(kit: Kit, client: Any, main: Any) -> None:
    tx = kit.fake.create_transaction(state="completed").id
    kit.fake.inject(DOWNLOAD_ROUTE, 503, count=2)
    assert deliver(client, kit, tx).status_code == 200
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "SIGNE" and doc["archive"]["status"] == "pending"
    assert kit.archived(tx) == {}
    assert any(n.endswith(tx) for n in kit.names("universign/index/pending/"))
    stats = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert stats.archived_documents == 1
    assert list(kit.archived(tx)) == ["contrat.pdf"]
    assert kit.must(tx)["archive"]["status"] == "done"
    assert not any(n.endswith(tx) for n in kit.names("universign/index/pending/"))
    assert any(n.endswith(tx) for n in kit.names("universign/index/recheck/"))


# --- API failures --------------------------------------------------------------------------------


def test_api_key_refused_answers_503_and_asks_a_person(
    kit: Kit, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tx = kit.fake.create_transaction(state="started").id
    good_key = kit.fake.api_key
    kit.fake.api_key = "apikey_revoked_by_someone"
    event = kit.fake.event(tx)
    with caplog.at_level(logging.ERROR):
        answer = post_event(client, kit.fake, event)
    assert answer.status_code == 503
    assert kit.doc(tx) is None
    assert any(getattr(r, "json_fields", {}).get("event") == "needs_reauth" for r in caplog.records)
    assert kit.fake.unauthorized == 2  # the cached key, then the secret re-read once
    assert good_key not in caplog.text
    # Universign redelivers the same event once the key works again.
    kit.fake.api_key = good_key
    assert post_event(client, kit.fake, event).status_code == 200
    assert kit.must(tx)["status"] == "EN_COURS"


def test_unknown_transaction_is_not_tracked(kit: Kit, client: Any) -> None:
    event = {"object": "event", "id": "evt_ghost", "type": "transaction.lifecycle.started",
             "payload": {"object": {"object": "transaction", "id": "tx_ghost"}}}  # fmt: skip
    answer = post_event(client, kit.fake, event)
    assert answer.status_code == 200 and answer.get_json()["result"] == "untracked"
    assert kit.doc("tx_ghost") is None
    assert kit.names("universign/index/") == []


def test_provider_5xx_answers_503_and_the_retry_is_processed(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(client, kit, tx).status_code == 200
    kit.fake.set_state(tx, "completed")
    event = kit.fake.event(tx)
    kit.fake.inject(TRANSACTION_ROUTE, 502, count=2)  # both attempts of this delivery
    answer = post_event(client, kit.fake, event)
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "EN_COURS" and "502" in doc["last_error"]
    assert post_event(client, kit.fake, event).status_code == 200  # the redelivery
    assert kit.must(tx)["status"] == "SIGNE"


def test_poll_records_404_on_a_tracked_transaction(kit: Kit, client: Any, main: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(client, kit, tx).status_code == 200
    del kit.fake.transactions[tx]
    stats = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert stats.not_found == 1
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "EN_COURS" and "404" in doc["last_error"]


def test_poll_stops_on_a_refused_key(kit: Kit, main: Any) -> None:
    ids = [kit.fake.create_transaction(state="started").id for _ in range(3)]
    for tx in ids:
        main.sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    kit.fake.api_key = "apikey_revoked_by_someone"
    stats = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert stats.stopped == "api_key_refused" and stats.failed == 1


# --- malformed input never 500 ---------------------------------------------------------------


def test_client_mistakes_are_4xx(kit: Kit, client: Any, main: Any) -> None:
    fake: UniversignFake = kit.fake
    signed = fake.key.sign(b"{not json")
    assert client.get("/").status_code == 405
    assert client.post("/", data=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert (
        client.post("/", data=b"{}", headers={"Content-Type": "application/json"}).status_code
        == 401
    )
    assert post_event(client, fake, b"{not json", signature=signed).status_code == 400
    assert post_event(client, fake, b"[1,2]").status_code == 400
    assert post_event(client, fake, b"\xff\xfe").status_code == 400
    big = b'{"pad":"' + b"x" * (main.SETTINGS.max_body_bytes + 10) + b'"}'
    assert post_event(client, fake, big).status_code == 413
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        ["id", "type", "payload", "object", "transaction", "reason", "x"]
                    ),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    signed=st.booleans(),
)
def test_fuzzed_bodies_never_answer_500(kit: Kit, client: Any, body: bytes, signed: bool) -> None:
    answer = post_event(client, kit.fake, body, signature=None if signed else "x..y")
    assert answer.status_code != 500
    assert answer.status_code in (200, 400, 401, 409, 503)


# --- the poll ------------------------------------------------------------------------------------


class Clock:
    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


@pytest.fixture
def moving_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(clock, "now", c)
    return c


def test_poll_batch_limit_order_and_round_robin(
    stack: Any, fake: UniversignFake, monkeypatch: pytest.MonkeyPatch, moving_clock: Clock
) -> None:
    kit = make_kit(stack, fake, UNIVERSIGN_POLL_BATCH="2")
    main = load_main(kit.env, monkeypatch)
    ids = []
    for _ in range(3):
        tx = fake.create_transaction(state="started").id
        main.sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
        ids.append(tx)
        moving_clock.advance(seconds=1)
    fake.reset_observations()
    first = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert first.order == ids[:2] and first.synced == 2
    assert fake.count(TRANSACTION_ROUTE) == 2
    second = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert second.order == [ids[2], ids[0]]
    fake.set_state(ids[1], "completed")
    third = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert third.order == [ids[1], ids[2]] and third.status_changes == 1
    # ids[1] is final now: only the other two are polled from here on.
    fourth = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert sorted(fourth.order) == sorted([ids[0], ids[2]])


def test_final_transaction_is_rechecked_once_after_an_hour(
    kit: Kit, main: Any, moving_clock: Clock
) -> None:
    tx = kit.fake.create_transaction(state="expired").id
    main.sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    assert kit.must(tx)["index"] == "recheck"
    assert kit.names("universign/index/pending/") == []
    kit.fake.reset_observations()
    moving_clock.advance(minutes=59)
    early = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert early.selected == 0 and kit.fake.count(TRANSACTION_ROUTE) == 0
    moving_clock.advance(minutes=2)
    due = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert due.rechecked == 1 and kit.fake.count(TRANSACTION_ROUTE) == 1
    doc = kit.doc(tx)
    assert doc is not None and doc["final_checked"] is True and doc["index"] == "none"
    assert kit.names("universign/index/") == []
    moving_clock.advance(hours=5)
    later = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert later.selected == 0 and kit.fake.count(TRANSACTION_ROUTE) == 1


def test_poll_tidies_a_marker_left_by_a_crash(kit: Kit, main: Any) -> None:
    tx = kit.fake.create_transaction(state="cancelled").id
    main.sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    doc = kit.doc(tx)
    assert doc is not None
    name = f"universign/index/pending/{main.pending_name(doc).rsplit('/', 1)[-1]}"
    kit.state.blob(name).upload_from_string(b"")  # as if the run died before removing it
    kit.fake.reset_observations()
    stats = main.run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert stats.repaired == 1 and kit.fake.count(TRANSACTION_ROUTE) == 0
    assert kit.names("universign/index/pending/") == []


# --- a webhook and a poll racing -------------------------------------------------------------


def test_webhook_and_poll_racing_on_one_transaction(
    kit: Kit, client: Any, main: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx = kit.fake.create_transaction(state="started", documents={"c.pdf": b"%PDF c"}).id
    main.sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    kit.fake.set_state(tx, "completed")
    event = kit.fake.event(tx)
    barrier = threading.Barrier(2)
    answers: dict[str, Any] = {}
    # The worst interleaving, every time: both have read the same generation of the document
    # before either writes. Only the generation precondition keeps one update from being lost
    # (and the change from being announced twice).
    in_step = threading.Barrier(2, timeout=20)
    first_read = threading.local()
    real_apply = main.apply_observation

    def apply_in_lockstep(doc: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not getattr(first_read, "done", False):
            first_read.done = True
            in_step.wait()
        return real_apply(doc, *args, **kwargs)

    monkeypatch.setattr(main, "apply_observation", apply_in_lockstep)
    # And both download the signed document before either stores it: only the archive's
    # creation precondition keeps the copy from being written twice.
    api = main.clients().api
    real_download = api.download_document
    download_step = threading.Barrier(2, timeout=20)

    def download_in_lockstep(*args: Any, **kwargs: Any) -> Any:
        result = real_download(*args, **kwargs)
        download_step.wait()
        return result

    monkeypatch.setattr(api, "download_document", download_in_lockstep)
    stored: list[int] = []
    blob_class: Any = type(kit.archive.blob("probe"))  # google.cloud.storage.Blob
    real_upload = blob_class.upload_from_string

    def counting_upload(blob: Any, *args: Any, **kwargs: Any) -> Any:
        result = real_upload(blob, *args, **kwargs)  # raises PreconditionFailed for a loser
        if blob.bucket.name == kit.archive.name:
            stored.append(blob.generation)
        return result

    monkeypatch.setattr(blob_class, "upload_from_string", counting_upload)

    def webhook() -> None:
        barrier.wait()
        answers["webhook"] = post_event(client, kit.fake, event).status_code

    def poll() -> None:
        barrier.wait()
        answers["poll"] = main.run_poll(
            main.SETTINGS, main.clients(), deadline=time.monotonic() + 60
        )

    threads = [threading.Thread(target=webhook), threading.Thread(target=poll)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers["webhook"] == 200 and answers["poll"].failed == 0
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "SIGNE" and doc["archive"]["status"] == "done"
    sources = [h["source"] for h in doc["history"]]
    # Both readings are in the history: the loser re-read and re-applied after its 412.
    assert "poll" in sources and any(s.startswith("webhook") for s in sources)
    assert doc["sync_attempts"] == 3  # the initial sync, the poll, the webhook
    archived = kit.archived(tx)
    assert list(archived) == ["c.pdf"]
    (recorded,) = doc["archive"]["objects"].values()
    assert archived["c.pdf"].generation == recorded["generation"]  # created once, never replaced
    assert kit.fake.downloads == 2  # both fetched it; one copy was kept
    assert stored == [archived["c.pdf"].generation]  # written exactly once
    statuses = [m["status"] for m in kit.messages(2)]
    assert statuses == ["EN_COURS", "SIGNE"]  # the change announced once, by its winner


def test_missing_api_key_secret_says_what_to_fix(
    stack: Any,
    fake: UniversignFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kit = make_kit(stack, fake, UNIVERSIGN_API_KEY_SECRET="universign-api-key-never-created")
    client = webhook_client(load_main(kit.env, monkeypatch))
    tx = fake.create_transaction(state="started").id
    with caplog.at_level(logging.ERROR):
        answer = post_event(client, fake, fake.event(tx))
    assert answer.status_code == 503
    assert kit.names("universign/") == []  # the event claim was released
    fields = [getattr(r, "json_fields", {}) for r in caplog.records]
    assert any(f.get("event") == "needs_config" for f in fields)
