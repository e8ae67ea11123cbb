"""universign_archive in-process, on the emulators against the Universign fake: signed
documents stored once, and an archive that failed retried by the poll."""

from __future__ import annotations

import time
from typing import Any

from universign_poll import run_poll

from devtools.fakes.universign import DOWNLOAD_ROUTE
from tests.universign_webhook.universign_testkit import Kit, deliver


def test_signed_documents_are_archived_once(kit: Kit, pipeline: Any) -> None:
    tx = kit.fake.create_transaction(
        state="started",
        documents={"contrat.pdf": b"%PDF contract", "annexe/1.pdf": b"%PDF annex"},
    ).id
    assert deliver(pipeline, kit, tx).status_code == 200
    assert kit.archived(tx) == {}
    kit.fake.set_state(tx, "completed")
    assert deliver(pipeline, kit, tx).status_code == 200
    archived = kit.archived(tx)
    assert sorted(archived) == ["annexe_1.pdf", "contrat.pdf"]
    assert archived["contrat.pdf"].download_as_bytes() == b"%PDF contract"
    generations = {n: b.generation for n, b in archived.items()}
    doc = kit.doc(tx)
    assert doc is not None and doc["archive"]["status"] == "done"
    assert kit.fake.downloads == 2
    kit.fake.set_state(tx, "archived")
    for _ in range(2):
        assert deliver(pipeline, kit, tx).status_code == 200
    assert kit.fake.downloads == 2
    assert {n: b.generation for n, b in kit.archived(tx).items()} == generations


def test_archive_failure_is_retried_by_the_poll(kit: Kit, pipeline: Any, main: Any) -> None:
    tx = kit.fake.create_transaction(state="completed").id
    kit.fake.inject(DOWNLOAD_ROUTE, 503, count=2)
    assert deliver(pipeline, kit, tx).status_code == 200
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "SIGNE" and doc["archive"]["status"] == "pending"
    assert kit.archived(tx) == {}
    assert any(n.endswith(tx) for n in kit.names("universign/index/pending/"))
    summary = run_poll(main.SETTINGS, main.clients(), deadline=time.monotonic() + 60)
    assert summary.archived_documents == 1
    assert list(kit.archived(tx)) == ["contrat.pdf"]
    assert kit.must(tx)["archive"]["status"] == "done"
    assert not any(n.endswith(tx) for n in kit.names("universign/index/pending/"))
    assert any(n.endswith(tx) for n in kit.names("universign/index/recheck/"))
