"""universign_delivery in-process through the webhook entry point, on the emulators against the
Universign fake: events that need no sync, one event processed once, failures answered 503 with
the claim released so the redelivery is processed, and malformed input never answered 500."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.fakes.universign import TRANSACTION_ROUTE, UniversignFake
from tests.universign_webhook.universign_testkit import (
    Kit,
    deliver,
    load_main,
    make_kit,
    post_event,
    webhook_client,
)

# --- what is acknowledged, and only once -----------------------------------------------------


def test_events_without_a_transaction_are_acknowledged(kit: Kit, client: Any) -> None:
    event = {"object": "event", "id": "evt_key1", "type": "apikey.created", "payload": {}}
    answer = post_event(client, kit.fake, event)
    assert answer.status_code == 200 and answer.get_json()["result"] == "ignored"
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


def test_the_same_event_twice_is_processed_once(kit: Kit, client: Any) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    first = post_event(client, kit.fake, event)
    second = post_event(client, kit.fake, event)
    assert first.status_code == 200 and first.get_json()["result"] == "synced"
    assert second.status_code == 200 and second.get_json()["result"] == "duplicate"
    assert kit.fake.count(TRANSACTION_ROUTE) == 1
    assert kit.must(tx)["sync_attempts"] == 1


# --- API and configuration failures ----------------------------------------------------------


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
