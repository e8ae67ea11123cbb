"""universign_sync in-process, on the emulators (real fake-gcs-server, Pub/Sub emulator, Secret
Manager stand-in) against the Universign fake: every state path, refusals, the payload never
trusted, a final status never regressing, an unknown transaction, and a webhook and a poll
racing on one transaction."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import universign_sync
from universign_poll import run_poll
from universign_sync import sync_transaction

from devtools.fakes.universign import TRANSACTION_ROUTE
from tests.universign_webhook.universign_testkit import Kit, deliver, post_event

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
def test_state_paths(kit: Kit, pipeline: Any, path: list[str], statuses: list[str]) -> None:
    tx = kit.fake.create_transaction(state=path[0]).id
    for state in path:
        kit.fake.set_state(tx, state)
        answer = deliver(pipeline, kit, tx)
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


def test_refusal_from_participant_data(kit: Kit, pipeline: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(pipeline, kit, tx).status_code == 200
    kit.fake.refuse(tx, "signature_refusal")
    # A lifecycle-free event (opened) still makes us read the participants.
    assert deliver(pipeline, kit, tx, "action.opened").status_code == 200
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "REFUSE" and doc["refused_at"]
    assert doc["refusal"]["reason"] == "signature_refusal"
    assert [s["state"] for s in doc["signers"]] == ["refused"]
    kit.fake.set_state(tx, "cancelled")  # the requester cancels afterwards
    assert deliver(pipeline, kit, tx).status_code == 200
    assert kit.must(tx)["status"] == "REFUSE"
    assert [m["status"] for m in kit.messages(2)] == ["EN_COURS", "REFUSE"]


def test_refusal_from_an_action_stalled_event(kit: Kit, pipeline: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    answer = deliver(pipeline, kit, tx, "action.stalled", reason="consultation_refusal")
    assert answer.status_code == 200
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "REFUSE"
    assert doc["refusal"]["reason"] == "consultation_refusal"


def test_a_stall_that_is_not_a_refusal_changes_nothing(kit: Kit, pipeline: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(pipeline, kit, tx, "action.stalled", reason="waiting_period").status_code == 200
    assert kit.must(tx)["status"] == "EN_COURS"


def test_payload_state_is_never_trusted(kit: Kit, pipeline: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    event["payload"]["object"]["state"] = "completed"  # signed, but the API says started
    event["type"] = "transaction.lifecycle.completed"
    assert post_event(pipeline, kit.fake, event).status_code == 200
    assert kit.must(tx)["status"] == "EN_COURS"
    assert kit.fake.count(TRANSACTION_ROUTE) == 1


def test_final_status_never_regresses_even_if_the_api_says_so(kit: Kit, pipeline: Any) -> None:
    tx = kit.fake.create_transaction(state="completed").id
    assert deliver(pipeline, kit, tx).status_code == 200
    kit.fake.set_state(tx, "started")  # nonsense, but the function must hold its ground
    assert deliver(pipeline, kit, tx).status_code == 200
    assert kit.must(tx)["status"] == "SIGNE"
    assert [m["status"] for m in kit.messages(1)] == ["SIGNE"]


def test_unknown_transaction_is_not_tracked(kit: Kit, pipeline: Any) -> None:
    event = {"object": "event", "id": "evt_ghost", "type": "transaction.lifecycle.started",
             "payload": {"object": {"object": "transaction", "id": "tx_ghost"}}}  # fmt: skip
    answer = post_event(pipeline, kit.fake, event)
    assert answer.status_code == 200 and answer.get_json()["result"] == "untracked"
    assert kit.doc("tx_ghost") is None
    assert kit.names("universign/index/") == []


# --- a webhook and a poll racing -------------------------------------------------------------


def test_webhook_and_poll_racing_on_one_transaction(
    kit: Kit, pipeline: Any, main: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx = kit.fake.create_transaction(state="started", documents={"c.pdf": b"%PDF c"}).id
    sync_transaction(main.SETTINGS, main.clients(), tx, source="test")
    kit.fake.set_state(tx, "completed")
    event = kit.fake.event(tx)
    barrier = threading.Barrier(2)
    answers: dict[str, Any] = {}
    # The worst interleaving, every time: both have read the same generation of the document
    # before either writes. Only the generation precondition keeps one update from being lost
    # (and the change from being announced twice).
    in_step = threading.Barrier(2, timeout=20)
    first_read = threading.local()
    real_apply = universign_sync.apply_observation

    def apply_in_lockstep(doc: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not getattr(first_read, "done", False):
            first_read.done = True
            in_step.wait()
        return real_apply(doc, *args, **kwargs)

    monkeypatch.setattr(universign_sync, "apply_observation", apply_in_lockstep)
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
        answers["webhook"] = post_event(pipeline, kit.fake, event).status_code

    def poll() -> None:
        barrier.wait()
        answers["poll"] = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)

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
