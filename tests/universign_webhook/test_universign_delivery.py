"""universign_delivery in-process through the webhook entry point, on the emulators against the
Universign fake: events that need no sync, one event processed once, failures answered 503 with
the claim released so the redelivery is processed, and malformed input never answered 500.
Each scenario also checks what its webhook_request line does to monitoring (universign_testkit
.monitored): a request is never a run; a refusal is counted by reason, and only a failed token
or signature check feeds the universign_rejected alert."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    WEBHOOK,
    Kit,
    deliver,
    load_main,
    logged,
    make_kit,
    monitored,
    post_event,
    unique,
    webhook_client,
)

# What one request line feeds: answered well, only its duration; refused, its duration and
# keepalive_webhook_rejected (by reason). Alerts: a failed token or signature check feeds
# universign_rejected; nothing else a request writes does, but a needs_reauth line.
ANSWERED = {"keepalive_run_duration_seconds": 1}
SYNCED = {**ANSWERED, "keepalive_universign_status_changes": 1}  # with the change it found
REJECTED = {**ANSWERED, "keepalive_webhook_rejected": 1}
FORGED = {'metric_above["universign_rejected"]'}


def answered(capsys: pytest.CaptureFixture[str], answer: Any) -> tuple[Any, ...]:
    """(status, result, metrics fed, alerts fed) of ``answer``, from the one webhook_request
    line written since the last capture."""
    out = capsys.readouterr().out
    (line,) = logged(out, "webhook_request")
    assert line["http_status"] == answer.status_code
    return (answer.status_code, line["result"], *monitored(out, WEBHOOK))


# --- what is acknowledged, and only once -----------------------------------------------------


def test_events_without_a_transaction_are_acknowledged(kit: Kit, client: Any, capsys) -> None:
    event = {"object": "event", "id": "evt_key1", "type": "apikey.created", "payload": {}}
    answer = post_event(client, kit.fake, event)
    # Acknowledged, and counted: its WARNING line feeds keepalive_universign_events_ignored.
    ignored = {**ANSWERED, "keepalive_universign_events_ignored": 1}
    assert answered(capsys, answer) == (200, "ignored", ignored, set())
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


def test_the_same_event_twice_is_processed_once(kit: Kit, client: Any, capsys) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    first = post_event(client, kit.fake, event)
    # A genuine delivery is no run (neither run_ok nor run_failed): its duration, and the status
    # change it found, are all it feeds.
    assert answered(capsys, first) == (200, "synced", SYNCED, set())
    assert first.get_json()["result"] == "synced"
    second = post_event(client, kit.fake, event)
    assert answered(capsys, second) == (200, "duplicate", ANSWERED, set())
    assert kit.fake.count(TRANSACTION_ROUTE) == 1
    assert kit.must(tx)["sync_attempts"] == 1


def test_an_event_being_processed_answers_409(kit: Kit, client: Any, main: Any, capsys) -> None:
    tx = kit.fake.create_transaction(state="started").id
    event = kit.fake.event(tx)
    claim = main.clients().state.claim_event(
        event["id"], lease=main.SETTINGS.event_lease, now=clock.now()
    )
    assert claim.state == "claimed"  # as another instance would hold it
    answer = post_event(client, kit.fake, event)
    assert answered(capsys, answer) == (409, "in_progress", REJECTED, set())
    assert kit.fake.count(TRANSACTION_ROUTE) == 0


# --- API and configuration failures ----------------------------------------------------------


def test_api_key_refused_answers_503_and_asks_a_person(kit: Kit, client: Any, capsys) -> None:
    tx = kit.fake.create_transaction(state="started").id
    good_key = kit.fake.api_key
    kit.fake.api_key = "apikey_revoked_by_someone"
    event = kit.fake.event(tx)
    answer = post_event(client, kit.fake, event)
    out = capsys.readouterr().out
    assert answer.status_code == 503
    assert kit.doc(tx) is None
    assert [line["error_code"] for line in logged(out, "needs_reauth")] == ["http_401"]
    assert kit.fake.unauthorized == 2  # the cached key, then the secret re-read once
    assert good_key not in out
    # The needs_reauth line is what asks a person; the request is a refusal like any other.
    (line,) = logged(out, "webhook_request")
    assert (line["http_status"], line["result"]) == (503, "api_key_refused")
    assert monitored(out, WEBHOOK) == (
        {**REJECTED, "keepalive_needs_reauth": 1},
        {"needs_reauth[0]"},
    )
    # Universign redelivers the same event once the key works again.
    kit.fake.api_key = good_key
    assert post_event(client, kit.fake, event).status_code == 200
    assert kit.must(tx)["status"] == "EN_COURS"


def test_provider_5xx_answers_503_and_the_retry_is_processed(kit: Kit, client: Any, capsys) -> None:
    tx = kit.fake.create_transaction(state="started").id
    assert deliver(client, kit, tx).status_code == 200
    kit.fake.set_state(tx, "completed")
    event = kit.fake.event(tx)
    kit.fake.inject(TRANSACTION_ROUTE, 502, count=2)  # both attempts of this delivery
    capsys.readouterr()
    answer = post_event(client, kit.fake, event)
    # Universign retries it: counted by reason, no alert (the poll's runs would say it lasts).
    assert answered(capsys, answer) == (503, "retry_later", REJECTED, set())
    assert answer.headers["Retry-After"]
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
        (200, "synced", SYNCED, set()),
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


def test_a_key_rotated_right_after_a_forged_kid_is_processed(kit: Kit, client: Any, capsys) -> None:
    fake: UniversignFake = kit.fake
    tx = fake.create_transaction(state="started").id
    assert deliver(client, kit, tx).status_code == 200
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
    assert answered(capsys, answer) == (200, "synced", SYNCED, set())
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
        (200, "synced", SYNCED, set()),
        (401, "bad_signature", REJECTED, FORGED),
        # Its own reason, retried by Universign, and no signature alert.
        (503, "key_cooldown", REJECTED, set()),
    ]
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert fake.count(JWKS_ROUTE) == 2
    assert kit.names("universign/events/") == [f"universign/events/{_first_event(kit)}"]


def _first_event(kit: Kit) -> str:
    (name,) = kit.names("universign/events/")
    return name.rsplit("/", 1)[-1]


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
    that and answers 503, leaving the claim to expire; the redelivery then does the work."""
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
    event = kit.fake.event(tx)
    capsys.readouterr()
    answer = post_event(client, kit.fake, event)
    if stall_in == "get_transaction":
        assert answered(capsys, answer) == (503, "retry_later", REJECTED, set())
        assert kit.doc(tx) is None
    else:  # the status was written before the stall; the archive's bookkeeping was not
        assert answered(capsys, answer) == (503, "retry_later", {**REJECTED, **SYNCED}, set())
        doc = kit.must(tx)
        assert doc["status"] == "SIGNE" and doc["archive"]["status"] == "pending"
    assert answer.get_json()["detail"] == "LeaseLost"
    monkeypatch.setattr(api, stall_in, real)
    stalled[0] = 0.0
    assert post_event(client, kit.fake, event).status_code == 409  # until the lease runs out
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + main.SETTINGS.event_lease)
    assert post_event(client, kit.fake, event).get_json()["result"] == "synced"
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
    assert answer.status_code in (200, 400, 401, 409, 503)
