"""universign_delivery in-process through the webhook and worker entry points, on the
emulators against the Universign fake: events that need no sync, an event queued (202) then
processed once by universign_sync, a failed publish answered 503, worker failures handed back
to Pub/Sub with the claim released so the redelivery is processed, and malformed input never
answered 500. Each scenario also checks what its webhook_request and sync_message lines do to
monitoring (universign_testkit.monitored): a request is never a run; a refusal is counted by
reason, and only a failed token or signature check feeds the universign_rejected alert."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from universign_plan import WORK_FIELDS

from devtools.fakes.universign import (
    JWKS_ROUTE,
    TRANSACTION_ROUTE,
    SigningKey,
    UniversignFake,
    b64url,
)
from shared import clock
from shared.secrets import SecretStore
from tests.universign_webhook.universign_testkit import (
    SYNC,
    WEBHOOK,
    Kit,
    as_work_event,
    deliver,
    deliver_and_work,
    load_main,
    logged,
    make_kit,
    monitored,
    post_event,
    run_work,
    unique,
    webhook_client,
    work_event,
)

# What one request line feeds: answered well, only its duration; refused, its duration and
# keepalive_webhook_rejected (by reason). Alerts: a failed token or signature check feeds
# universign_rejected; nothing else a request writes does, but a needs_reauth line.
ANSWERED = {"keepalive_run_duration_seconds": 1}
REJECTED = {**ANSWERED, "keepalive_webhook_rejected": 1}
FORGED = {'metric_above["universign_rejected"]'}
# What one worker line feeds: the per-message count (by result and retry); with the change
# its sync found, the status-change count too.
WORKED = {"keepalive_universign_sync_messages": 1}
SYNCED = {**WORKED, "keepalive_universign_status_changes": 1}


def answered(capsys: pytest.CaptureFixture[str], answer: Any) -> tuple[Any, ...]:
    """(status, result, metrics fed, alerts fed) of ``answer``, from the one webhook_request
    line written since the last capture."""
    out = capsys.readouterr().out
    (line,) = logged(out, "webhook_request")
    assert line["http_status"] == answer.status_code
    return (answer.status_code, line["result"], *monitored(out, WEBHOOK))


def worked(capsys: pytest.CaptureFixture[str], outcomes: list[str]) -> tuple[Any, ...]:
    """(outcome, result, retry, metrics fed, alerts fed) of the one work message handled since
    the last capture, from its sync_message line."""
    out = capsys.readouterr().out
    (line,) = logged(out, "sync_message")
    (outcome,) = outcomes
    return (outcome, line["result"], line["retry"], *monitored(out, SYNC))


# --- what is acknowledged, queued, and processed only once -----------------------------------


def test_events_without_a_transaction_are_acknowledged(kit: Kit, client: Any, capsys) -> None:
    event = {"object": "event", "id": "evt_key1", "type": "apikey.created", "payload": {}}
    answer = post_event(client, kit.fake, event)
    # Acknowledged, and counted: its WARNING line feeds keepalive_universign_events_ignored.
    ignored = {**ANSWERED, "keepalive_universign_events_ignored": 1}
    assert answered(capsys, answer) == (200, "ignored", ignored, set())
    assert kit.fake.count(TRANSACTION_ROUTE) == 0
    assert kit.queued(0, timeout=1) == []  # nothing for the worker


def test_an_event_is_queued_with_only_its_verified_facts(kit: Kit, client: Any, capsys) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    answer = post_event(client, kit.fake, event)
    assert answered(capsys, answer) == (202, "queued", ANSWERED, set())
    assert answer.get_json() == {"result": "queued"}
    assert kit.fake.count(TRANSACTION_ROUTE) == 0  # the webhook no longer calls Universign
    (message,) = kit.queued(1)
    data = json.loads(message.data)
    assert sorted(data) == sorted(WORK_FIELDS)
    assert (data["event_id"], data["transaction_id"], data["refusal"]) == (event["id"], tx, None)
    assert dict(message.attributes) == {"event_id": event["id"], "transaction_id": tx}
    assert kit.fake.api_key not in message.data.decode()


def test_the_same_event_twice_is_processed_once(kit: Kit, client: Any, main: Any, capsys) -> None:
    """Universign delivering twice, or the webhook publishing twice: two work messages, one
    sync, one status change."""
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    assert post_event(client, kit.fake, event).status_code == 202
    assert post_event(client, kit.fake, event).status_code == 202
    first, second = kit.queued(2)
    capsys.readouterr()
    # A genuine event is no run (neither run_ok nor run_failed): the message count, and the
    # status change it found, are all it feeds.
    assert worked(capsys, run_work(main, [first])) == ("acked", "synced", False, SYNCED, set())
    assert worked(capsys, run_work(main, [second])) == ("acked", "duplicate", False, WORKED, set())
    assert kit.fake.count(TRANSACTION_ROUTE) == 1
    assert kit.must(tx)["sync_attempts"] == 1
    assert [m["status"] for m in kit.messages(1)] == ["EN_COURS"]


def test_a_failed_publish_answers_503_so_universign_retries(
    stack: Any, fake: UniversignFake, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The work topic does not exist on the emulator: Pub/Sub refuses the publish for real,
    and the event must come again from Universign."""
    kit = make_kit(stack, fake, UNIVERSIGN_SYNC_TOPIC=unique("universign-sync-missing"))
    client = webhook_client(load_main(kit.env, monkeypatch))
    tx = fake.create_transaction(state="started").id
    capsys.readouterr()
    answer = post_event(client, fake, fake.event(tx))
    assert answered(capsys, answer) == (503, "retry_later", REJECTED, set())
    assert answer.get_json()["detail"] == "queue: NotFound"
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert fake.count(TRANSACTION_ROUTE) == 0 and kit.names("universign/") == []


def test_an_event_being_processed_elsewhere_is_redelivered(
    kit: Kit, client: Any, main: Any, capsys
) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    claim = main.clients().state.claim_event(
        event["id"], lease=main.SETTINGS.event_lease, now=clock.now()
    )
    assert claim.state == "claimed"  # as another instance would hold it
    assert post_event(client, kit.fake, event).status_code == 202
    capsys.readouterr()
    # Handed back: if the holder fails, this redelivery does the work.
    assert worked(capsys, run_work(main, kit.queued(1))) == (
        "redeliver",
        "in_progress",
        True,
        WORKED,
        set(),
    )
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


def test_an_old_redelivered_message_is_still_processed(
    kit: Kit, client: Any, main: Any, capsys
) -> None:
    """No age guard on work: a message Pub/Sub redelivers days later is an event to sync."""
    tx = kit.fake.create_transaction(state="started").id
    assert post_event(client, kit.fake, kit.fake.event(tx)).status_code == 202
    (message,) = kit.queued(1)
    old = clock.now() - timedelta(days=3)
    capsys.readouterr()
    main.universign_sync(as_work_event(message, published=old))
    (line,) = logged(capsys.readouterr().out, "sync_message")
    assert line["result"] == "synced"
    assert kit.must(tx)["status"] == "EN_COURS"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1]",
        b"{}",
        b'{"event_id": "evt_1", "transaction_id": "tx_1"}',
        json.dumps(
            {
                "event_id": "evt_1",
                "event_type": "transaction.lifecycle.started",
                "transaction_id": "tx_1",
                "refusal": None,
                "received_at": "2026-01-01T00:00:00Z",
                "api_key": "x",
            }
        ).encode(),
        json.dumps(
            {
                "event_id": "evt_1\n",
                "event_type": "t",
                "transaction_id": "tx_1",
                "refusal": None,
                "received_at": "2026-01-01T00:00:00Z",
            }
        ).encode(),
    ],
    ids=["not-json", "list", "empty", "missing", "unknown-field", "bad-id"],
)
def test_a_bad_work_message_is_logged_and_acknowledged(
    kit: Kit, main: Any, capsys, data: bytes
) -> None:
    capsys.readouterr()
    main.universign_sync(work_event(data))  # returns: acknowledged, never retried
    out = capsys.readouterr().out
    (line,) = logged(out, "sync_message")
    assert (line["result"], line["retry"], line["severity"]) == ("bad_message", False, "WARNING")
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


# --- API and configuration failures: handed back to Pub/Sub ----------------------------------


def test_api_key_refused_is_redelivered_and_asks_a_person(
    kit: Kit, client: Any, main: Any, capsys
) -> None:
    tx = kit.fake.create_transaction(state="started").id
    good_key = kit.fake.api_key
    kit.fake.api_key = "apikey_revoked_by_someone"
    answer = post_event(client, kit.fake, kit.fake.event(tx))
    assert answer.status_code == 202  # Universign's part is done
    (message,) = kit.queued(1)
    capsys.readouterr()
    outcomes = run_work(main, [message])
    out = capsys.readouterr().out
    assert outcomes == ["redeliver"]
    assert kit.doc(tx) is None
    assert [line["error_code"] for line in logged(out, "needs_reauth")] == ["http_401"]
    assert kit.fake.unauthorized == 2  # the cached key, then the secret re-read once
    assert good_key not in out
    # The needs_reauth line is what asks a person; the message line says it is retried.
    (line,) = logged(out, "sync_message")
    assert (line["result"], line["retry"]) == ("api_key_refused", True)
    assert monitored(out, SYNC) == (
        {**WORKED, "keepalive_needs_reauth": 1},
        {"needs_reauth[0]"},
    )
    # Pub/Sub redelivers the same message; once the key works again it is processed.
    kit.fake.api_key = good_key
    assert run_work(main, [message]) == ["acked"]
    assert kit.must(tx)["status"] == "EN_COURS"


def test_provider_5xx_is_redelivered_and_the_redelivery_is_processed(
    kit: Kit, client: Any, main: Any, capsys
) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver_and_work(client, main, kit, kit.fake.event(tx))[1] == ["acked"]
    kit.fake.set_state(tx, "completed")
    assert deliver(client, kit, tx).status_code == 202
    (message,) = kit.queued(1)
    kit.fake.inject(TRANSACTION_ROUTE, 502, count=2)  # both attempts of this delivery
    capsys.readouterr()
    # Pub/Sub retries it with backoff: counted by result, no alert (the dead letters would).
    assert worked(capsys, run_work(main, [message])) == (
        "redeliver",
        "retry_later",
        True,
        WORKED,
        set(),
    )
    doc = kit.doc(tx)
    assert doc is not None and doc["status"] == "EN_COURS" and "502" in doc["last_error"]
    assert run_work(main, [message]) == ["acked"]  # the redelivery
    assert kit.must(tx)["status"] == "SIGNE"


def test_missing_api_key_secret_says_what_to_fix(
    stack: Any,
    fake: UniversignFake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kit = make_kit(stack, fake, UNIVERSIGN_API_KEY_SECRET="universign-api-key-never-created")
    main = load_main(kit.env, monkeypatch)
    client = webhook_client(main)
    tx = fake.create_transaction(state="started").id
    with caplog.at_level(logging.ERROR):
        answer, outcomes = deliver_and_work(client, main, kit, fake.event(tx))
    assert (answer.status_code, outcomes) == (202, ["redeliver"])
    assert kit.names("universign/") == []  # the event claim was released
    fields = [getattr(r, "json_fields", {}) for r in caplog.records]
    assert any(f.get("event") == "needs_config" for f in fields)


# --- malformed input never 500 ---------------------------------------------------------------


def test_client_mistakes_are_4xx(kit: Kit, client: Any, main: Any, capsys) -> None:
    fake: UniversignFake = kit.fake
    signed = fake.key.sign(b"{not json")
    body = fake.encode(fake.event(fake.create_transaction(state="started").id))
    forged = SigningKey.generate().sign(body, kid=fake.key.kid)
    big = b'{"pad":"' + b"x" * (main.SETTINGS.max_body_bytes + 10) + b'"}'
    unsigned = {"Content-Type": "application/json"}
    capsys.readouterr()
    seen = [
        answered(capsys, client.get("/")),
        answered(capsys, client.post("/", data=b"{}", headers={"Content-Type": "text/plain"})),
        answered(capsys, client.post("/", data=b"{}", headers=unsigned)),
        answered(capsys, post_event(client, fake, body, signature=forged)),
        answered(capsys, post_event(client, fake, b"{not json", signature=signed)),
        answered(capsys, post_event(client, fake, b"[1,2]")),
        answered(capsys, post_event(client, fake, b"\xff\xfe")),
        answered(capsys, post_event(client, fake, big)),
    ]
    assert seen == [
        (405, "method_not_allowed", REJECTED, set()),
        (415, "unsupported_media_type", REJECTED, set()),
        (401, "bad_signature", REJECTED, FORGED),  # no signature
        (401, "bad_signature", REJECTED, FORGED),  # signed with another key
        (400, "bad_json", REJECTED, set()),
        (400, "bad_json", REJECTED, set()),
        (400, "bad_json", REJECTED, set()),
        (413, "too_large", REJECTED, set()),
    ]
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


def test_a_wrong_url_token_is_refused(
    stack: Any, fake: UniversignFake, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    token_secret = unique("universign-webhook-token")
    kit = make_kit(stack, fake, UNIVERSIGN_WEBHOOK_TOKEN_SECRET=token_secret)
    store = SecretStore(kit.project)
    store.create(token_secret)
    store.add_version(token_secret, "tok_" + "a" * 32)
    client = webhook_client(load_main(kit.env, monkeypatch))
    event = fake.event(fake.create_transaction(state="started").id)
    capsys.readouterr()
    seen = [
        answered(capsys, post_event(client, fake, event)),
        answered(capsys, post_event(client, fake, event, query=f"?token=tok_{'b' * 32}")),
        answered(capsys, post_event(client, fake, event, query=f"?token=tok_{'a' * 32}")),
    ]
    assert seen == [
        (401, "unauthorized", REJECTED, FORGED),
        (401, "unauthorized", REJECTED, FORGED),
        (202, "queued", ANSWERED, set()),
    ]


def test_a_protected_header_no_json_parser_takes_is_a_bad_signature(
    kit: Kit, client: Any, capsys
) -> None:
    """Nested past the recursion limit: refused as a bad signature (what the alert counts),
    never a 500, and before any key is fetched."""
    fake: UniversignFake = kit.fake
    body = fake.encode(fake.event(fake.create_transaction(state="started").id))
    _, _, signature = fake.key.sign(body).partition("..")
    capsys.readouterr()
    nested = b64url(b"[" * 2500 + b"]" * 2500)
    answer = post_event(client, fake, body, signature=f"{nested}..{signature}")
    assert answered(capsys, answer) == (401, "bad_signature", REJECTED, FORGED)
    assert fake.count(JWKS_ROUTE) == 0 and fake.count(TRANSACTION_ROUTE) == 0


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"n":' + b"9" * 5000 + b"}"],
    ids=["nested", "huge-integer"],
)
def test_a_signed_body_no_json_parser_takes_is_400(
    kit: Kit, client: Any, capsys, body: bytes
) -> None:
    capsys.readouterr()
    answer = post_event(client, kit.fake, body)
    assert answered(capsys, answer) == (400, "bad_json", REJECTED, set())


def test_a_lone_surrogate_in_a_signed_event_is_400_with_its_request_line(
    kit: Kit, client: Any, capsys
) -> None:
    """A lone surrogate is no text any consumer can encode: refused like any unusable JSON,
    and the webhook_request line is still written."""
    body = json.dumps({"object": "event", "id": "evt_surrogate", "type": "apikey.\ud800"})
    capsys.readouterr()
    answer = post_event(client, kit.fake, body.encode("ascii"))
    assert answered(capsys, answer) == (400, "bad_json", REJECTED, set())


# --- key rotation: a kid we could not check is never refused for good ------------------------


def test_a_key_rotated_right_after_a_forged_kid_is_processed(
    kit: Kit, client: Any, main: Any, capsys
) -> None:
    fake: UniversignFake = kit.fake
    tx = fake.create_transaction(state="started").id
    assert deliver_and_work(client, main, kit, fake.event(tx))[1] == ["acked"]
    body = fake.encode(fake.event(tx))
    forged = SigningKey.generate().sign(body)
    capsys.readouterr()
    assert answered(capsys, post_event(client, fake, body, signature=forged))[:2] == (
        401,
        "bad_signature",
    )
    fake.rotate_key()  # Universign publishes its new key a moment later
    fake.set_state(tx, "completed")
    answer = deliver(client, kit, tx)
    assert answered(capsys, answer) == (202, "queued", ANSWERED, set())
    assert run_work(main, kit.queued(1)) == ["acked"]
    assert kit.must(tx)["status"] == "SIGNE"


def test_an_unchecked_kid_while_the_key_set_budget_is_spent_answers_503(
    stack: Any, fake: UniversignFake, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    kit = make_kit(stack, fake, UNIVERSIGN_JWKS_MAX_FETCHES_PER_MINUTE="2")
    client = webhook_client(load_main(kit.env, monkeypatch))
    tx = fake.create_transaction(state="started").id
    body = fake.encode(fake.event(tx))
    capsys.readouterr()
    first = answered(capsys, deliver(client, kit, tx))  # fetch 1 of 2 this minute
    forged = answered(  # fetch 2: the key set does not list it, refused for good
        capsys, post_event(client, fake, body, signature=SigningKey.generate().sign(body))
    )
    fake.rotate_key()
    answer = deliver(client, kit, tx)  # genuine, but its kid cannot be checked this minute
    cooling = answered(capsys, answer)
    assert [first, forged, cooling] == [
        (202, "queued", ANSWERED, set()),
        (401, "bad_signature", REJECTED, FORGED),
        # Its own reason, retried by Universign, and no signature alert.
        (503, "key_cooldown", REJECTED, set()),
    ]
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert fake.count(JWKS_ROUTE) == 2
    # Only the first, genuine and checked, was queued.
    assert len(kit.queued(1)) == 1


# --- a claim whose lease ran short writes nothing more ---------------------------------------


@pytest.mark.parametrize("stall_in", ["get_transaction", "download_document"])
def test_a_claim_whose_lease_ran_short_stops_before_its_next_document_write(
    kit: Kit,
    client: Any,
    main: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    stall_in: str,
) -> None:
    """The holder stalls inside a Universign call until less than the fence margin of its
    claim's lease is left (measured on the monotonic clock): it writes no document after
    that and hands the message back, leaving the claim to expire; the redelivery then does
    the work."""
    state, api = main.clients().state, main.clients().api
    lease = main.SETTINGS.event_lease.total_seconds()
    stalled = [0.0]
    monkeypatch.setattr(state, "monotonic", lambda: time.monotonic() + stalled[0], raising=False)
    real = getattr(api, stall_in)

    def stall(*args: Any, **kwargs: Any) -> Any:
        stalled[0] = lease - 30  # 30 s left, under the 60 s margin
        return real(*args, **kwargs)

    monkeypatch.setattr(api, stall_in, stall)
    tx = kit.fake.create_transaction(state="completed", documents={"c.pdf": b"%PDF c"}).id
    assert post_event(client, kit.fake, kit.fake.event(tx)).status_code == 202
    (message,) = kit.queued(1)
    capsys.readouterr()
    outcome = worked(capsys, run_work(main, [message]))
    if stall_in == "get_transaction":
        assert outcome == ("redeliver", "retry_later", True, WORKED, set())
        assert kit.doc(tx) is None
    else:  # the status was written before the stall; the archive's bookkeeping was not
        assert outcome == ("redeliver", "retry_later", True, SYNCED, set())
        doc = kit.must(tx)
        assert doc["status"] == "SIGNE" and doc["archive"]["status"] == "pending"
    monkeypatch.setattr(api, stall_in, real)
    stalled[0] = 0.0
    run_work(main, [message])  # until the lease runs out, the claim is still held
    assert logged(capsys.readouterr().out, "sync_message")[0]["result"] == "in_progress"
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + main.SETTINGS.event_lease)
    assert run_work(main, [message]) == ["acked"]
    doc = kit.must(tx)
    assert doc["status"] == "SIGNE" and doc["archive"]["status"] == "done"
    assert list(kit.archived(tx)) == ["c.pdf"]


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
    assert answer.status_code in (200, 202, 400, 401, 503)
