"""What a run costs in Secret Manager and Cloud Storage calls, counted where they arrive: the
Secret Manager stand-in counts each gRPC method it serves (its ``/stats``), and Cloud Storage
requests are counted on the requests session the storage client sends them through."""

from __future__ import annotations

import json
import os
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import hubspot_shards
import pytest
import requests
from hubspot_plan import RunRequest

from shared import clock
from tests.hubspot_refresh.hubspot_testkit import (
    HubSpotSetup,
    deliver,
    load_main,
    pubsub_cloud_event,
    run_once,
)


def served() -> Counter[str]:
    admin = os.environ["SECRET_MANAGER_EMULATOR_ADMIN"]
    with urllib.request.urlopen(f"{admin}/stats", timeout=10) as answer:
        return Counter(json.load(answer)["calls"])


@contextmanager
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Counter[str], Counter[str]]]:
    """Secret Manager calls by method and Cloud Storage requests by method and object, made
    inside."""
    secret_manager: Counter[str] = Counter()
    storage: Counter[str] = Counter()
    send = requests.Session.request

    def counting(self: requests.Session, method: str, url: str, *args: Any, **kw: Any) -> Any:
        base = os.environ["STORAGE_EMULATOR_HOST"]
        if url.startswith(base):
            path = url[len(base) :].split("?")[0]
            if "/o" not in path.split("/b/", 1)[-1]:
                # The storage library's own bucket-metadata fetch (a background thread, once
                # per client): not the lock's, and racing the count.
                return send(self, method, url, *args, **kw)
            # An upload names its object in the body; reads and deletes in the path.
            name = path.rsplit("%2F", 1)[-1] if "%2F" in path else "(named in the body)"
            storage[f"{method} {name}"] += 1
        return send(self, method, url, *args, **kw)

    monkeypatch.setattr(requests.Session, "request", counting)
    before = served()
    yield secret_manager, storage
    secret_manager.update(served() - before)


def test_a_due_account_reads_its_status_once_and_a_fresh_one_costs_nothing(
    hs: HubSpotSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    hs.add_account("1301")  # due: its status is unknown
    hs.add_account("1302")
    fresh = clock.format_time(clock.now() + timedelta(hours=1))
    hs.set_status("1302", **{"state": "ok", "expires-at": fresh})
    main = load_main(hs, monkeypatch)

    with counted(monkeypatch) as (secret_manager, storage):
        summary = run_once(main)

    assert (summary.counts["refreshed"], summary.counts["skipped_fresh"]) == (1, 1)
    assert dict(secret_manager) == {
        "ListSecrets": 1,  # discovery: every account and its status
        "AccessSecretVersion": 3,  # the client id and secret once per run, 1301's token
        # Under 1301's lock: its status re-read once; the annotation write merges into that
        # read (and carries its etag) instead of reading again.
        "GetSecret": 1,
        "AddSecretVersion": 1,
        "UpdateSecret": 1,
    }
    # The fresh account was decided from the listing: no lock taken, nothing read. 1301's
    # lock: written (with ifGenerationMatch=0), then deleted.
    assert dict(storage) == {"POST (named in the body)": 1, "DELETE hubspot-1301.json": 1}


def test_a_shard_refreshes_its_accounts_without_listing_every_account_again(
    hs: HubSpotSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_id, other_secret = hs.fake.add_app()
    for secret_id, value in (("hubspot-app2-id", other_id), ("hubspot-app2-secret", other_secret)):
        hs.store.create(secret_id)
        hs.store.add_version(secret_id, value)
    hs.add_account(
        "1311",
        client_id=other_id,
        client_id_secret="hubspot-app2-id",
        client_secret_secret="hubspot-app2-secret",
    )
    hs.add_account("1312")
    main = load_main(hs, monkeypatch, HUBSPOT_SHARD_SIZE="5", HUBSPOT_WORK_TOPIC="hs-work")
    published: list[bytes] = []
    hubspot_shards.fan_out(
        main.SETTINGS,
        main.clients(),
        RunRequest(),
        requested_at=clock.now(),
        publish=published.append,
    )
    (message,) = (json.loads(m) for m in published)

    with counted(monkeypatch) as (secret_manager, _):
        assert deliver(main, pubsub_cloud_event(message)) == 200

    assert secret_manager["ListSecrets"] == 0
    # The other app's account used the credentials the fan-out's listing named.
    assert dict(hs.fake.refreshes) == {1311: 1, 1312: 1}
    assert secret_manager["GetSecret"] == 2  # one status re-read per account, under its lock


def test_a_work_message_naming_a_bad_app_is_refused_not_retried(
    hs: HubSpotSetup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main = load_main(hs, monkeypatch)
    bad: list[object] = [[], {"1": "x"}, {"1": {"client-id-secret": "a/b"}}, {"1": {"x": "a"}}]
    for apps in bad:
        message = {"accounts": ["1"], "shard": "1/1", "apps": apps}
        # Acknowledged (2xx): a malformed message is logged and dropped, never redelivered.
        assert deliver(main, pubsub_cloud_event(message)) // 100 == 2
    assert capsys.readouterr().out.count("apps must map account ids") == len(bad)
    assert hs.token_calls() == 0


def test_an_annotation_write_from_a_stale_read_keeps_the_concurrent_change(
    hs: HubSpotSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh merges its status into what it read under the lock; a change made since
    (a person with the CLI) fails the etag and is re-read, never overwritten."""
    secret = "hubspot-1321-access-token"
    read = hs.store.create(secret, annotations={"state": "ok"})
    hs.store.update_annotations(secret, {"note": "set meanwhile"})

    with counted(monkeypatch) as (secret_manager, _):
        hs.store.update_annotations(secret, {"state": "backoff"}, current=read)

    assert hs.store.info(secret).annotations == {"state": "backoff", "note": "set meanwhile"}
    # The stale write was refused, then the merge re-read and written again.
    assert dict(secret_manager) == {"UpdateSecret": 2, "GetSecret": 1}
