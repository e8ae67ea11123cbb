"""Settings, Pub/Sub event decoding and the renewal policy: pure logic, no emulator."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from shared import clock, events, settings
from shared.status import Backoff, CredentialStatus, decide

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


# --- settings --------------------------------------------------------------------------


def test_missing_required_variable_names_itself() -> None:
    with pytest.raises(settings.ConfigError, match="STATE_BUCKET"):
        settings.env_str("STATE_BUCKET", env={})


def test_malformed_integer_names_variable() -> None:
    with pytest.raises(settings.ConfigError, match="B24_REFRESH_MARGIN_MINUTES"):
        settings.env_int("B24_REFRESH_MARGIN_MINUTES", 35, env={"B24_REFRESH_MARGIN_MINUTES": "x"})


def test_integer_bounds_and_defaults() -> None:
    assert settings.env_int("N", 35, env={}) == 35
    assert settings.env_int("N", 35, env={"N": " 40 "}) == 40
    with pytest.raises(settings.ConfigError, match="N must be >= 1"):
        settings.env_int("N", 35, minimum=1, env={"N": "0"})


def test_bool_and_json_settings() -> None:
    assert settings.env_bool("F", False, env={"F": "true"}) is True
    with pytest.raises(settings.ConfigError, match="F must be true or false"):
        settings.env_bool("F", False, env={"F": "maybe"})
    assert settings.env_json("J", [], env={"J": '[{"a": 1}]'}) == [{"a": 1}]
    with pytest.raises(settings.ConfigError, match="J is not valid JSON"):
        settings.env_json("J", [], env={"J": "[oops"})


# --- events ----------------------------------------------------------------------------


def pubsub_event(
    data: bytes | str | None,
    *,
    time: datetime | str | None = None,
    attributes: Any = None,
    message_id: Any = "42",
) -> CloudEvent:
    encoded = (
        ""
        if data is None
        else base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()
    )
    event_attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/t",
        "id": "42",
    }
    if time is not None:
        event_attributes["time"] = time if isinstance(time, str) else time.isoformat()
    message: dict[str, Any] = {"data": encoded, "messageId": message_id}
    if attributes is not None:
        message["attributes"] = attributes
    return CloudEvent(event_attributes, {"message": message})


@pytest.mark.parametrize("payload", [None, "", "{}", '{"force": true}'])
def test_accepts_empty_and_json_objects(payload: str | None) -> None:
    message = events.decode(pubsub_event(payload))
    assert message.data == (json.loads(payload) if payload else {})
    assert message.message_id == "42"


@pytest.mark.parametrize("payload", [b"\xff\xfe", "not json", "[1, 2]", '"text"'])
def test_bad_data_is_refused(payload: bytes | str) -> None:
    with pytest.raises(events.BadMessage):
        events.decode(pubsub_event(payload))


def test_receive_acknowledges_bad_and_old_messages(monkeypatch, caplog) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    assert events.receive(pubsub_event("nope"), max_age=timedelta(minutes=30)) is None
    old = pubsub_event("{}", time=NOW - timedelta(minutes=31))
    assert events.receive(old, max_age=timedelta(minutes=30)) is None
    assert "dropping message 42" in caplog.text
    fresh = pubsub_event("{}", time=NOW - timedelta(minutes=29))
    received = events.receive(fresh, max_age=timedelta(minutes=30))
    assert received is not None and received.published_at == NOW - timedelta(minutes=29)


def test_event_without_message_is_bad() -> None:
    event = CloudEvent({"type": "x", "source": "y"}, {"nothing": True})
    with pytest.raises(events.BadMessage, match="no Pub/Sub message"):
        events.decode(event)


CANARY = "canary-5c1e"
KEY = f'{{"{CANARY}": '
# Pathological data of every class, each carrying CANARY where it can: it must never be logged.
PATHOLOGICAL_DATA: dict[str, bytes | str] = {
    "deep array": "[" * 100_000,
    "deep in a value": KEY + "[" * 5000 + "]" * 5000 + "}",
    "deep object": KEY * 3000 + "1" + "}" * 3000,
    "huge integer": '{"force": ' + "1" * 5000 + "}",
    "huge integer in a list": KEY + "[" + "9" * 4301 + "]}",
    "number too large": KEY + "1e999}",
    "lone surrogate value": '{"force": "\\ud800' + CANARY + '"}',
    "lone surrogate key": '{"\\udfff' + CANARY + '": true}',
    "NaN": KEY + "NaN}",
    "invalid UTF-8": KEY.encode() + b'"\xff\xfe"}',
    "UTF-16": (KEY + "1}").encode("utf-16"),
}


@pytest.mark.parametrize("payload", PATHOLOGICAL_DATA.values(), ids=PATHOLOGICAL_DATA.keys())
def test_pathological_data_is_a_bad_message(payload: bytes | str) -> None:
    with pytest.raises(events.BadMessage, match=r"^message data refused: ") as refused:
        events.decode(pubsub_event(payload))
    assert CANARY not in str(refused.value)


@pytest.mark.parametrize("payload", PATHOLOGICAL_DATA.values(), ids=PATHOLOGICAL_DATA.keys())
def test_pathological_data_is_acknowledged_with_a_warning_naming_the_message(
    payload: bytes | str, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    fresh = pubsub_event(payload, time=NOW - timedelta(minutes=1))
    assert events.receive(fresh, max_age=timedelta(minutes=30)) is None
    (record,) = caplog.records
    assert record.levelname == "WARNING" and record.exc_info is None
    assert record.getMessage().startswith("ignoring message 42: message data refused: ")
    assert CANARY not in caplog.text


@pytest.mark.parametrize("payload", PATHOLOGICAL_DATA.values(), ids=PATHOLOGICAL_DATA.keys())
def test_age_guard_runs_before_the_data_is_decoded(
    payload: bytes | str, monkeypatch, caplog
) -> None:
    """An old message is dropped as too old whatever it carries: its data is never read."""
    monkeypatch.setattr(clock, "now", lambda: NOW)
    old = pubsub_event(payload, time=NOW - timedelta(minutes=31))
    assert events.receive(old, max_age=timedelta(minutes=30)) is None
    (record,) = caplog.records
    assert record.getMessage().startswith("dropping message 42 published 1860s ago")
    assert record.json_fields == {"outcome": "too_old"}


def test_age_guard_reads_publish_time_when_the_event_has_no_time(monkeypatch, caplog) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    event = pubsub_event("[" * 100_000)
    del event["time"]  # CloudEvent fills it in; Pub/Sub's publishTime is then the one read
    event.data["message"]["publishTime"] = (NOW - timedelta(hours=2)).isoformat()
    assert events.receive(event, max_age=timedelta(minutes=30)) is None
    assert "dropping message 42 published 7200s ago" in caplog.text


@pytest.mark.parametrize(
    ("attributes", "why"),
    [
        ({"origin": "\ud800"}, "message attributes are not valid Unicode"),
        ({"\udc00": "x"}, "message attributes are not valid Unicode"),
        ({"origin": ["[" * 50]}, "message attributes must map strings to strings"),
        ({"n": int("9" * 4000)}, "message attributes must map strings to strings"),
        ({"origin": {"a": {"b": {}}}}, "message attributes must map strings to strings"),
        ("text", "message attributes are not an object"),
        ([["k", "v"]], "message attributes are not an object"),
    ],
    # Plain ASCII ids: a test id must be one a command line can name again (mutmut does).
    ids=[
        "lone surrogate value",
        "lone surrogate key",
        "list value",
        "huge integer",
        "nested object",
        "text",
        "list of pairs",
    ],
)
def test_attributes_that_pubsub_never_sends_make_a_bad_message(
    attributes: Any, why: str, caplog
) -> None:
    with pytest.raises(events.BadMessage, match=f"^{why}$"):
        events.decode(pubsub_event("{}", attributes=attributes))
    assert events.receive(pubsub_event("{}", attributes=attributes), max_age=timedelta(1)) is None
    assert f"ignoring message 42: {why}" in caplog.text


def test_string_attributes_are_kept() -> None:
    message = events.decode(pubsub_event("{}", attributes={"origin": "scheduler", "é": "✓"}))
    assert message.attributes == {"origin": "scheduler", "é": "✓"}


@pytest.mark.parametrize(
    "data",
    ["not base64!", "e30=\u00e9", "\ud800"],
    ids=["garbage", "non-ASCII", "lone surrogate"],
)
def test_data_that_is_not_base64_text_is_a_bad_message(data: str, caplog) -> None:
    event = pubsub_event(None)
    event.data["message"]["data"] = data
    assert events.receive(event, max_age=timedelta(1)) is None
    assert "ignoring message 42: message data is not base64" in caplog.text


@pytest.mark.parametrize(
    ("message_id", "logged"),
    [
        ("\ud800\n7", "\\ud800\n7"),
        ("9" * 500, "9" * 128),
        (["[" * 50], "42"),  # not a string: the CloudEvent id instead
        (None, "42"),
    ],
    ids=["lone surrogate", "long", "list", "none"],
)
def test_the_logged_message_id_is_printable(message_id: Any, logged: str, caplog) -> None:
    assert events.receive(pubsub_event("[", message_id=message_id), max_age=timedelta(1)) is None
    assert caplog.records[0].getMessage().startswith(f"ignoring message {logged}: ")
    caplog.records[0].getMessage().encode("ascii")


@pytest.mark.parametrize(
    "time",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday"],
    ids=["min", "max", "not a time"],
)
def test_a_publish_time_out_of_range_is_a_bad_message(time: str, caplog) -> None:
    # Moved to UTC, these leave datetime's range: the age guard cannot vouch for the message.
    assert events.receive(pubsub_event("{}", time=time), max_age=timedelta(1)) is None
    assert "ignoring message 42: publish time is not a usable time" in caplog.text


# --- renewal policy --------------------------------------------------------------------

MARGIN = timedelta(minutes=35)


def status(**kwargs: object) -> CredentialStatus:
    return CredentialStatus(**kwargs)  # type: ignore[arg-type]


def test_fresh_token_is_left_alone() -> None:
    s = status(state="ok", expires_at=NOW + timedelta(minutes=50), refresh_token_version=3)
    assert decide(s, now=NOW, margin=MARGIN, refresh_token_version=3).refresh is False


@pytest.mark.parametrize(
    ("expires_in", "reason"),
    [(timedelta(minutes=20), "expires within margin"), (timedelta(minutes=-5), "expired")],
)
def test_due_or_expired_token_is_refreshed(expires_in: timedelta, reason: str) -> None:
    s = status(state="ok", expires_at=NOW + expires_in, refresh_token_version=3)
    decision = decide(s, now=NOW, margin=MARGIN, refresh_token_version=3)
    assert decision.refresh and decision.reason == reason


def test_unknown_expiry_is_refreshed() -> None:
    assert decide(status(), now=NOW, margin=MARGIN, refresh_token_version=1).refresh


def test_new_refresh_token_version_forces_refresh() -> None:
    s = status(state="ok", expires_at=NOW + timedelta(hours=1), refresh_token_version=3)
    decision = decide(s, now=NOW, margin=MARGIN, refresh_token_version=4)
    assert decision.refresh and decision.reason == "refresh token changed"


def test_needs_reauth_waits_for_a_new_refresh_token() -> None:
    s = status(state="needs-reauth", refresh_token_version=3)
    assert not decide(s, now=NOW, margin=MARGIN, refresh_token_version=3, force=True).refresh
    assert decide(s, now=NOW, margin=MARGIN, refresh_token_version=4).refresh


def test_force_is_satisfied_by_a_refresh_after_the_request() -> None:
    s = status(state="ok", expires_at=NOW + timedelta(hours=1), refreshed_at=NOW)
    later = decide(
        s,
        now=NOW,
        margin=MARGIN,
        refresh_token_version=None,
        force=True,
        requested_at=NOW - timedelta(seconds=1),
    )
    assert not later.refresh
    earlier = decide(
        s,
        now=NOW,
        margin=MARGIN,
        refresh_token_version=None,
        force=True,
        requested_at=NOW + timedelta(seconds=1),
    )
    assert earlier.refresh


def test_force_within_the_second_of_a_refresh_is_told_apart_by_milliseconds() -> None:
    refreshed = NOW + timedelta(milliseconds=500)
    stored = status(state="ok", expires_at=NOW + timedelta(hours=1), refreshed_at=refreshed)
    # Through the annotations, as the next run reads them.
    s = CredentialStatus.from_annotations(
        {k: v for k, v in stored.to_annotations().items() if v is not None}
    )
    assert s.refreshed_at == refreshed

    def forced(requested_at: datetime) -> bool:
        return decide(
            s,
            now=NOW + timedelta(seconds=1),
            margin=MARGIN,
            refresh_token_version=None,
            force=True,
            requested_at=requested_at,
        ).refresh

    assert not forced(NOW + timedelta(milliseconds=200))  # asked before it: already served
    assert forced(NOW + timedelta(milliseconds=800))  # asked after it: a new request


def test_backoff_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(first=timedelta(minutes=5), cap=timedelta(hours=1))
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [
        timedelta(minutes=m) for m in (5, 10, 20, 40, 60, 60)
    ]
    s = status(state="ok", expires_at=NOW).failed_transiently(now=NOW, error="x", backoff=backoff)
    assert s.state == "backoff" and s.next_attempt_at == NOW + timedelta(minutes=5)
    assert not decide(
        s, now=NOW + timedelta(minutes=4), margin=MARGIN, refresh_token_version=None
    ).refresh
    assert decide(
        s, now=NOW + timedelta(minutes=5), margin=MARGIN, refresh_token_version=None
    ).refresh


def test_annotations_round_trip() -> None:
    s = CredentialStatus(
        state="needs-reauth",
        expires_at=NOW,
        refreshed_at=NOW - timedelta(hours=1, microseconds=250_000),
        last_error="invalid_grant",
        last_error_at=NOW,
        failure_count=2,
        refresh_token_version=7,
    )
    annotations = {k: v for k, v in s.to_annotations().items() if v is not None}
    assert annotations["expires-at"] == "2026-11-22T12:00:00Z"
    assert annotations["refreshed-at"] == "2026-11-22T10:59:59.750Z"
    assert CredentialStatus.from_annotations(annotations) == s


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "not a time", ""]
)
def test_a_time_outside_the_calendar_is_unusable_not_an_error(text: str) -> None:
    assert clock.parse_time(text) is None


def test_unknown_fields_are_quoted_short_and_few() -> None:
    canary = "payload-canary-" + "x" * 100
    data = {"force": True, "frcoe": 1, canary: 2, "\ud800": 3, "a": 4, "b": 5}
    with pytest.raises(events.BadMessage) as refused:
        events.refuse_unknown_fields(data, {"force"}, "{} or force")
    assert (
        str(refused.value) == "unknown fields ['a', 'b', 'frcoe'] and 2 more; expected {} or force"
    )
    with pytest.raises(events.BadMessage, match=r"^unknown fields \['payload-canary-x{9}'\];"):
        events.refuse_unknown_fields({canary: 1}, {"force"}, "{} or force")
    with pytest.raises(events.BadMessage) as refused:
        events.refuse_unknown_fields({"\ud800": 1}, {"force"}, "{} or force")
    assert (
        str(refused.value).encode("ascii") == b"unknown fields ['\\\\ud800']; expected {} or force"
    )
    events.refuse_unknown_fields({"force": True}, {"force"}, "{} or force")  # nothing raised
