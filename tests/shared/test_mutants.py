"""The edges mutation testing found unpinned in shared/ (redact, status, events, http, settings):
property-based where a rule is general, tables where it is a list."""

from __future__ import annotations

import base64
import io
import string
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from cloudevents.http import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import clock, events, redact
from shared import settings as env
from shared.errors import ErrorKind, TerminalError, TransientError
from shared.http import (
    RETRYABLE_STATUSES,
    TRANSIENT_STATUSES,
    HttpClient,
    RetryPolicy,
    json_body,
    retry_after_seconds,
    status_error,
    status_kind,
)
from shared.status import Backoff, CredentialStatus, decide

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# --- redact ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test registers into an empty registry, and the suite's values come back after."""
    monkeypatch.setattr(redact, "_registered", OrderedDict())
    monkeypatch.setattr(redact, "_index", {})
    yield


# Text around a secret: no character that could start or extend one of the patterns.
filler = st.text(alphabet=" .,;()[]<>!", max_size=40)
secret = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=6, max_size=40)


@settings(max_examples=100, deadline=None)
@given(before=filler, value=secret, after=filler)
def test_a_registered_secret_anywhere_in_any_text_is_masked(
    before: str, value: str, after: str
) -> None:
    # Any offset, odd or even, and the very end of the text.
    redact._registered.clear()
    redact._index.clear()
    redact.register(value)
    assert redact.redact(before + value + after) == before + redact.MASK + after


@pytest.mark.parametrize("offset", range(8))
def test_a_secret_is_masked_at_every_offset_and_at_the_end(offset: int) -> None:
    redact.register("Zq9-secret-Zq9")
    text = "." * offset + "Zq9-secret-Zq9"
    assert redact.redact(text) == "." * offset + redact.MASK
    assert redact.redact(text + ".") == "." * offset + redact.MASK + "."


def test_a_six_character_value_is_registered_and_five_is_not() -> None:
    redact.register("Qx7Lm2", "Qx7Lm")
    assert redact.redact("a Qx7Lm2 b") == f"a {redact.MASK} b"
    assert list(redact._registered) == ["Qx7Lm2"]


def test_values_sharing_a_prefix_are_masked_longest_first() -> None:
    redact.register("Pfx123-a", "Pfx123-abcdef", "Pfx123-abc")
    assert redact.redact("x Pfx123-abcdef y") == f"x {redact.MASK} y"
    assert redact.redact("x Pfx123-abcZ y") == f"x {redact.MASK}Z y"
    assert redact._index["Pfx123"] == ["Pfx123-abcdef", "Pfx123-abc", "Pfx123-a"]


def test_registering_twice_keeps_one_entry() -> None:
    redact.register("Dup123456", "Dup123456")
    redact.register("Dup123456")
    assert list(redact._registered) == ["Dup123456"]
    assert redact._index == {"Dup123": ["Dup123456"]}


def test_nothing_registered_leaves_text_alone() -> None:
    redact.register(None, "", "abc")
    assert redact._registered == OrderedDict()
    assert redact.redact("abcdefgh") == "abcdefgh"


def test_eviction_past_the_limit_forgets_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_MAX_REGISTERED", 3)
    redact.register("Old-one-1", "Mid-two-2", "New-three-3")
    redact.register("Newest-4", "Old-one-1x")
    # Two past the limit: the two oldest are forgotten, their index buckets with them.
    assert list(redact._registered) == ["New-three-3", "Newest-4", "Old-one-1x"]
    assert redact.redact("Old-one-1 Mid-two-2") == "Old-one-1 Mid-two-2"
    assert redact.redact("New-three-3 Newest-4") == f"{redact.MASK} {redact.MASK}"
    assert "Mid-tw" not in redact._index
    assert redact._index["Old-on"] == ["Old-one-1x"]


def test_the_real_limit_is_fifty_thousand() -> None:
    # Distinct leading characters: one index bucket each, as unrelated tokens mostly are.
    values = [f"{i:06d}-value" for i in range(redact._MAX_REGISTERED + 1)]
    redact.register(*values)
    assert len(redact._registered) == 50_000
    assert redact.redact(values[0]) == values[0]
    assert redact.redact(values[1]) == redact.MASK
    assert redact.redact(values[-1]) == redact.MASK


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("Authorization: bearer abcdefgh1234", "abcdefgh1234"),
        ("client_secret=Cs-value-123", "Cs-value-123"),
        ("clientsecret: Cs-value-123", "Cs-value-123"),
        ('{"client_secret": "Cs-value-123"}', "Cs-value-123"),
        ("sas_token=SasTok-123", "SasTok-123"),
        ("sastoken=SasTok-123", "SasTok-123"),
        ("sas_url=https://a.blob/c", "https://a.blob/c"),
        ("sasurl: SasUrl-123", "SasUrl-123"),
        ("sig: Sig-value-1", "Sig-value-1"),
        ("https://h/cb?code=AuthCode-123&state=x", "AuthCode-123"),
        ("https://h/cb?x=1&sig=Sig%2Bvalue", "Sig%2Bvalue"),
        ("https://h/cb?api-key=K-123456", "K-123456"),
        ("https://h/cb?assertion=A-123456", "A-123456"),
        ("refresh_token: Rt-value-123", "Rt-value-123"),
        ("password='Pw-value-123'", "Pw-value-123"),
        ("apikey=Ak-value-123", "Ak-value-123"),
        ("postgres://admin:Pw-value-123@db/x", "Pw-value-123"),
    ],
)
def test_credential_shapes_are_masked(text: str, secret: str) -> None:
    masked = redact.redact(text)
    assert secret not in masked
    assert redact.MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "error code: invalid_grant",
        "secret_id=b24-refresh-token",
        "sig: abc",  # shorter than four characters: not a value
        "Basic auth is off",
        "token: [REDACTED]",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact.redact(text) == text


def test_safe_url_keeps_scheme_host_port_and_path_only() -> None:
    assert redact.safe_url("https://u:p@h.test:8443/a/b?x=1#f") == "https://h.test:8443/a/b"
    assert redact.safe_url("https://h.test/a") == "https://h.test/a"
    assert redact.safe_url("http://[::1") == "<unparseable url>"


# --- status -----------------------------------------------------------------------------------


def full_status() -> CredentialStatus:
    return CredentialStatus(
        state="backoff",
        expires_at=NOW + timedelta(hours=1),
        refreshed_at=NOW - timedelta(minutes=1, milliseconds=250),
        last_error="HTTP 503",
        last_error_at=NOW - timedelta(seconds=30),
        failure_count=3,
        next_attempt_at=NOW + timedelta(minutes=20),
        refresh_token_version=7,
    )


def test_every_field_survives_save_and_read_back() -> None:
    status = full_status()
    annotations = status.to_annotations()
    assert annotations == {
        "state": "backoff",
        "expires-at": "2026-11-22T13:00:00Z",
        "refreshed-at": "2026-11-22T11:58:59.750Z",
        "last-error": "HTTP 503",
        "last-error-at": "2026-11-22T11:59:30Z",
        "failure-count": "3",
        "next-attempt-at": "2026-11-22T12:20:00Z",
        "refresh-token-version": "7",
    }
    assert CredentialStatus.from_annotations(annotations) == status  # type: ignore[arg-type]


def test_an_empty_status_removes_its_optional_keys() -> None:
    assert CredentialStatus().to_annotations() == {
        "state": "unknown",
        "expires-at": None,
        "refreshed-at": None,
        "last-error": None,
        "last-error-at": None,
        "failure-count": "0",
        "next-attempt-at": None,
        "refresh-token-version": None,
    }


def test_a_long_error_is_cut_at_500_characters() -> None:
    saved = CredentialStatus(last_error="e" * 600).to_annotations()
    assert saved["last-error"] == "e" * 500


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, CredentialStatus()),
        ({"state": "bogus"}, CredentialStatus()),
        ({"state": "needs-reauth"}, CredentialStatus(state="needs-reauth")),
        ({"failure-count": "x", "refresh-token-version": "v"}, CredentialStatus()),
        ({"failure-count": "", "last-error": ""}, CredentialStatus()),
        (
            {"next-attempt-at": "2026-11-22T12:20:00Z"},
            CredentialStatus(next_attempt_at=NOW + timedelta(minutes=20)),
        ),
    ],
)
def test_annotations_read_back(annotations: dict[str, str], expected: CredentialStatus) -> None:
    assert CredentialStatus.from_annotations(annotations) == expected


def test_a_transient_failure_counts_records_and_backs_off() -> None:
    before = CredentialStatus(state="ok", failure_count=1, refresh_token_version=4)
    after = before.failed_transiently(now=NOW, error="HTTP 502", backoff=Backoff())
    assert after == CredentialStatus(
        state="backoff",
        last_error="HTTP 502",
        last_error_at=NOW,
        failure_count=2,
        next_attempt_at=NOW + timedelta(minutes=10),
        refresh_token_version=4,
    )
    unpaced = before.failed_transiently(now=NOW, error="HTTP 502")
    assert (unpaced.state, unpaced.next_attempt_at, unpaced.failure_count) == ("ok", None, 2)


def test_needs_reauth_records_the_error_and_clears_the_backoff() -> None:
    after = full_status().needs_reauth(now=NOW, error="invalid_grant", refresh_token_version=8)
    assert (after.state, after.last_error, after.last_error_at) == (
        "needs-reauth",
        "invalid_grant",
        NOW,
    )
    assert (after.failure_count, after.next_attempt_at, after.refresh_token_version) == (4, None, 8)


def test_success_resets_the_failure_fields() -> None:
    after = full_status().succeeded(
        now=NOW, expires_at=NOW + timedelta(hours=2), refresh_token_version=9
    )
    assert after == CredentialStatus(
        state="ok", expires_at=NOW + timedelta(hours=2), refreshed_at=NOW, refresh_token_version=9
    )


@pytest.mark.parametrize(
    ("failures", "minutes"), [(0, 5), (1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (40, 60)]
)
def test_backoff_doubles_up_to_its_cap(failures: int, minutes: int) -> None:
    assert Backoff().delay(failures) == timedelta(minutes=minutes)


def test_a_status_saved_in_backoff_holds_the_next_run_back() -> None:
    saved = CredentialStatus(state="ok", expires_at=NOW).failed_transiently(
        now=NOW, error="HTTP 503", backoff=Backoff()
    )
    read = CredentialStatus.from_annotations(saved.to_annotations())  # type: ignore[arg-type]
    margin = timedelta(minutes=10)
    assert decide(
        read, now=NOW + timedelta(minutes=4), margin=margin, refresh_token_version=None
    ) == (decide(read, now=NOW, margin=margin, refresh_token_version=None))
    assert decide(read, now=NOW, margin=margin, refresh_token_version=None).reason == "backoff"
    assert decide(
        read, now=NOW + timedelta(minutes=5), margin=margin, refresh_token_version=None
    ).refresh


def test_a_forced_request_at_the_same_millisecond_as_the_refresh_is_already_served() -> None:
    status = CredentialStatus(state="ok", refreshed_at=NOW, expires_at=NOW + timedelta(hours=1))
    kwargs: dict[str, Any] = {
        "now": NOW,
        "margin": timedelta(minutes=5),
        "refresh_token_version": None,
        "force": True,
    }
    assert (
        decide(status, requested_at=NOW, **kwargs).reason == "already refreshed since the request"
    )
    assert decide(status, requested_at=NOW + timedelta(milliseconds=1), **kwargs).reason == "forced"
    assert decide(status, requested_at=None, **kwargs).reason == "forced"


@pytest.mark.parametrize(
    ("status", "version", "reason"),
    [
        (CredentialStatus(state="needs-reauth", refresh_token_version=3), 3, "needs-reauth"),
        (CredentialStatus(state="needs-reauth", refresh_token_version=3), None, "needs-reauth"),
        (
            CredentialStatus(state="needs-reauth", refresh_token_version=3),
            4,
            "refresh token changed",
        ),
        (
            CredentialStatus(
                state="ok", refresh_token_version=None, expires_at=NOW + timedelta(hours=1)
            ),
            4,
            "fresh",
        ),
        (
            CredentialStatus(state="ok", expires_at=NOW + timedelta(minutes=5)),
            None,
            "expires within margin",
        ),
        (CredentialStatus(state="ok", expires_at=NOW), None, "expired"),
        (
            CredentialStatus(state="ok", expires_at=NOW + timedelta(minutes=5, seconds=1)),
            None,
            "fresh",
        ),
        (CredentialStatus(state="ok"), None, "expiry unknown"),
        (CredentialStatus(state="backoff", next_attempt_at=NOW, expires_at=NOW), None, "expired"),
    ],
)
def test_decide_table(status: CredentialStatus, version: int | None, reason: str) -> None:
    decision = decide(status, now=NOW, margin=timedelta(minutes=5), refresh_token_version=version)
    assert decision.reason == reason
    assert decision.refresh is (reason not in {"needs-reauth", "fresh", "backoff"})


# --- events -----------------------------------------------------------------------------------


def event(message: dict[str, Any], **attributes: str) -> CloudEvent:
    base = {"type": "t", "source": "//s", "id": "ce-1"}
    base.update(attributes)
    made = CloudEvent(base, {"message": message})
    if "time" not in attributes:
        del made["time"]  # CloudEvent fills one in; Pub/Sub's publishTime is then the one read
    return made


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def at_noon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


def test_the_publish_time_is_the_age_when_the_event_has_no_time(at_noon: None) -> None:
    fresh = {"data": b64("{}"), "messageId": "7", "publishTime": "2026-11-22T11:50:00Z"}
    got = events.receive(event(fresh), max_age=timedelta(minutes=30))
    assert got is not None
    assert got.published_at == NOW - timedelta(minutes=10)
    old = {**fresh, "publishTime": "2026-11-22T11:00:00Z"}
    assert events.receive(event(old), max_age=timedelta(minutes=30)) is None


def test_the_event_time_wins_over_the_publish_time(at_noon: None) -> None:
    message = {"data": "", "messageId": "7", "publishTime": "2026-11-22T11:00:00Z"}
    got = events.receive(event(message, time="2026-11-22T11:59:00Z"), max_age=timedelta(minutes=30))
    assert got is not None and got.published_at == NOW - timedelta(minutes=1)


def test_exactly_the_max_age_is_still_accepted(at_noon: None) -> None:
    message = {"data": "", "messageId": "7", "publishTime": "2026-11-22T11:30:00Z"}
    assert events.receive(event(message), max_age=timedelta(minutes=30)) is not None


def test_attributes_and_message_id_are_delivered() -> None:
    message = {"data": b64('{"a": 1}'), "messageId": "99", "attributes": {"origin": "scheduler"}}
    got = events.decode(event(message))
    assert got == events.PubSubMessage(
        data={"a": 1}, attributes={"origin": "scheduler"}, message_id="99", published_at=None
    )


@pytest.mark.parametrize("message_id", [None, "", 5])
def test_the_cloudevent_id_stands_in_for_a_missing_message_id(message_id: Any) -> None:
    message = {"data": "", "messageId": message_id}
    assert events.decode(event(message)).message_id == "ce-1"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("not base64!", "message data is not base64"),
        ("é", "message data is not base64"),
        (12, "message data is not base64 text"),
        (b64("[1]"), "message data must be a JSON object, got list"),
    ],
)
def test_undecodable_data_is_a_bad_message(
    data: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    message = {"data": data, "messageId": "5"}
    with pytest.raises(events.BadMessage, match=rf"^{why}$"):
        events.decode(event(message))
    assert events.receive(event(message), max_age=timedelta(days=9999)) is None
    assert f"ignoring message 5: {why}" in caplog.text


def test_blank_data_is_an_empty_object() -> None:
    assert events.decode(event({"data": b64("  \n"), "messageId": "1"})).data == {}


def test_an_event_without_a_message_is_ignored_naming_its_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = CloudEvent({"type": "t", "source": "//s", "id": "ce-9"}, {"nothing": 1})
    assert events.receive(bad, max_age=timedelta(1)) is None
    assert "ignoring message ce-9: event carries no Pub/Sub message" in caplog.text


def test_unknown_fields_are_quoted_short_and_few() -> None:
    events.refuse_unknown_fields({"a": 1}, {"a"}, "a")
    with pytest.raises(events.BadMessage) as raised:
        events.refuse_unknown_fields({"a": 1, "b" * 30: 1, "c": 1, "d": 1, "e": 1}, {"a"}, "an a")
    assert str(raised.value) == f"unknown fields ['{'b' * 24}', 'c', 'd'] and 1 more; expected an a"


# --- http ---------------------------------------------------------------------------------------


def response(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made.headers.update(headers or {})
    made._content = b"{}"
    made.raw = io.BytesIO(b"{}")
    return made


class Session:
    """Answers with the given statuses in turn (the HTTP server is tested in test_http.py)."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers
        self.calls = 0

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls += 1
        return response(self.statuses.pop(0), self.headers)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_every_retryable_status_is_retried(status: int) -> None:
    session = Session(status, 200)
    slept: list[float] = []
    client = HttpClient(session=session, sleep=slept.append)  # type: ignore[arg-type]
    assert client.request("GET", "https://h/x").status_code == 200
    assert session.calls == 2 and len(slept) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 425, 501, 505])
def test_other_statuses_are_returned_at_once(status: int) -> None:
    session = Session(status)
    client = HttpClient(session=session, sleep=lambda s: None)  # type: ignore[arg-type]
    assert client.request("GET", "https://h/x").status_code == status
    assert session.calls == 1


def test_the_constant_sets_are_the_documented_ones() -> None:
    assert frozenset({429, 500, 502, 503, 504}) == RETRYABLE_STATUSES
    assert frozenset({408, 425, 429}) == TRANSIENT_STATUSES


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (300, ErrorKind.TERMINAL),
        (400, ErrorKind.TERMINAL),
        (401, ErrorKind.TERMINAL),
        (408, ErrorKind.TRANSIENT),
        (409, ErrorKind.TERMINAL),
        (425, ErrorKind.TRANSIENT),
        (429, ErrorKind.TRANSIENT),
        (499, ErrorKind.TERMINAL),
        (500, ErrorKind.TRANSIENT),
        (504, ErrorKind.TRANSIENT),
        (599, ErrorKind.TRANSIENT),
    ],
)
def test_status_kind_table(status: int, kind: ErrorKind) -> None:
    assert status_kind(status) is kind


def test_a_provider_moves_single_statuses_terminal_first() -> None:
    assert status_kind(409, transient={409}) is ErrorKind.TRANSIENT
    assert status_kind(503, terminal={503}) is ErrorKind.TERMINAL
    assert status_kind(429, transient={429}, terminal={429}) is ErrorKind.TERMINAL
    error = status_error("token endpoint", status=409, transient={409})
    assert isinstance(error, TransientError) and error.code == "http_409" and error.status == 409
    error = status_error("token endpoint", status=425, code="too_early", terminal={425})
    assert isinstance(error, TerminalError) and error.code == "too_early"


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 20.0), (80, 20.0)]
)
def test_backoff_stays_in_the_upper_half_of_its_ceiling(attempt: int, ceiling: float) -> None:
    policy = RetryPolicy()
    delays = [policy.backoff(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.6


def test_retry_after_as_an_http_date(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    monkeypatch.setattr("shared.http.time.time", lambda: now.timestamp())
    in_90 = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(response(429, {"Retry-After": in_90})) == 90.0
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(response(429, {"Retry-After": past})) == 0.0
    assert retry_after_seconds(response(429, {"Retry-After": " 7 "})) == 7.0
    assert retry_after_seconds(response(429, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(response(429)) is None


def test_a_date_retry_after_is_waited_capped() -> None:
    session = Session(503, 200, headers={"Retry-After": "300"})
    slept: list[float] = []
    client = HttpClient(session=session, sleep=slept.append)  # type: ignore[arg-type]
    client.request("GET", "https://h/x")
    assert slept == [120.0]


def test_retries_stop_after_the_attempts_and_raise_the_last_error() -> None:
    session = Session(503, 503, 502)
    slept: list[float] = []
    client = HttpClient(session=session, sleep=slept.append, retry=RetryPolicy(attempts=3))  # type: ignore[arg-type]
    with pytest.raises(TransientError) as raised:
        client.request("GET", "https://h/x?client_secret=s")
    assert raised.value.code == "http_502" and raised.value.status == 502
    assert str(raised.value) == "GET https://h/x: HTTP 502"
    assert session.calls == 3 and len(slept) == 2


def test_no_attempt_starts_past_the_deadline() -> None:
    session = Session(503, 200, headers={"Retry-After": "10"})
    client = HttpClient(session=session, sleep=lambda s: None, clock=lambda: 100.0)  # type: ignore[arg-type]
    with pytest.raises(TransientError):
        client.request("GET", "https://h/x", deadline=109.0)
    session = Session(503, 200, headers={"Retry-After": "10"})
    client = HttpClient(session=session, sleep=lambda s: None, clock=lambda: 100.0)  # type: ignore[arg-type]
    assert client.request("GET", "https://h/x", deadline=110.0).status_code == 200


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "no", "off", " Off "])
def test_env_bool_false_values(value: str) -> None:
    assert env.env_bool("FLAG", True, env={"FLAG": value}) is False


@pytest.mark.parametrize("value", ["1", "true", "Yes", "on"])
def test_env_bool_true_values(value: str) -> None:
    assert env.env_bool("FLAG", False, env={"FLAG": value}) is True


def test_env_bool_default_and_garbage() -> None:
    assert env.env_bool("FLAG", True, env={}) is True
    assert env.env_bool("FLAG", False, env={"FLAG": " "}) is False
    with pytest.raises(
        env.ConfigError, match=r"^environment variable FLAG must be true or false, got 'maybe'$"
    ):
        env.env_bool("FLAG", True, env={"FLAG": "maybe"})


def test_env_int_bounds_are_inclusive() -> None:
    assert env.env_int("N", 1, minimum=5, maximum=9, env={"N": "5"}) == 5
    assert env.env_int("N", 1, minimum=5, maximum=9, env={"N": "9"}) == 9
    with pytest.raises(env.ConfigError, match=r"^environment variable N must be >= 5, got 4$"):
        env.env_int("N", 1, minimum=5, env={"N": "4"})
    with pytest.raises(env.ConfigError, match=r"^environment variable N must be <= 9, got 10$"):
        env.env_int("N", 1, maximum=9, env={"N": "10"})
    with pytest.raises(env.ConfigError, match=r"^environment variable N must be an integer: 'x'$"):
        env.env_int("N", 1, env={"N": "x"})
    assert env.env_int("N", 3, env={}) == 3


def test_env_float() -> None:
    assert env.env_float("F", 1.5, env={}) == 1.5
    assert env.env_float("F", 1.5, env={"F": " 2.25 "}) == 2.25
    assert env.env_float("F", 1.5, minimum=2.0, env={"F": "2"}) == 2.0
    assert env.env_float("F", 1.5, env={"F": "0"}) == 0.0
    with pytest.raises(env.ConfigError, match=r"^environment variable F must be >= 0.0, got -1.0$"):
        env.env_float("F", 1.5, env={"F": "-1"})
    with pytest.raises(
        env.ConfigError, match=r"^environment variable F must be a number, got 'x'$"
    ):
        env.env_float("F", 1.5, env={"F": "x"})


def test_env_choice() -> None:
    assert env.env_choice("C", ("a", "b"), "a", env={}) == "a"
    assert env.env_choice("C", ("a", "b"), "a", env={"C": " b "}) == "b"
    with pytest.raises(env.ConfigError, match=r"^environment variable C must be one of a, b$"):
        env.env_choice("C", ("a", "b"), "a", env={"C": "c"})


def test_env_optional_str_json_and_project() -> None:
    assert env.env_optional("O", env={}) is None
    assert env.env_optional("O", env={"O": "  "}) is None
    assert env.env_optional("O", env={"O": " v "}) == "v"
    assert env.env_str("S", "d", env={}) == "d"
    with pytest.raises(env.ConfigError, match=r"^environment variable S is required but not set$"):
        env.env_str("S", env={})
    assert env.env_json("J", [1], env={}) == [1]
    assert env.env_json("J", None, env={"J": '{"a": 2}'}) == {"a": 2}
    with pytest.raises(env.ConfigError, match=r"^environment variable J is not valid JSON: "):
        env.env_json("J", None, env={"J": "{"})
    assert env.project_id({"GOOGLE_CLOUD_PROJECT": "p-1"}) == "p-1"
    with pytest.raises(env.ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        env.project_id({})


def test_settings_read_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUT_FLAG", "off")
    assert env.env_bool("MUT_FLAG", True) is False


# --- second round: what the first mutation run still let through ---------------------------------


class Event:
    """A CloudEvent stand-in of any shape: what the decoder must survive."""

    def __init__(self, data: Any, **attributes: Any) -> None:
        self.data = data
        self.attributes = attributes

    def __getitem__(self, name: str) -> Any:
        return self.attributes[name]


def test_events_of_any_shape_are_ignored_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    for odd in (object(), Event("text", id="ce-3"), Event({"message": "x"}, id=5)):
        assert events.receive(odd, max_age=timedelta(1)) is None
    assert "ignoring message ce-3: event carries no Pub/Sub message" in caplog.text
    assert "ignoring message (no id): event carries no Pub/Sub message" in caplog.text
    assert all(r.json_fields == {"outcome": "bad"} for r in caplog.records)  # type: ignore[attr-defined]


def test_a_publish_time_that_is_not_text_is_not_read(at_noon: None) -> None:
    got = events.receive(
        Event({"message": {"data": "", "messageId": "8", "publishTime": 5}}, time=7),
        max_age=timedelta(minutes=1),
    )
    assert got is not None and got.published_at is None and got.message_id == "8"


def test_base64_with_a_stray_character_is_refused() -> None:
    with pytest.raises(events.BadMessage, match=r"^message data is not base64$"):
        events.decode(event({"data": "e30=!", "messageId": "1"}))


def test_decisions_not_to_refresh_say_false() -> None:
    status = CredentialStatus(state="ok", refreshed_at=NOW, expires_at=NOW + timedelta(hours=1))
    served = decide(
        status,
        now=NOW,
        margin=timedelta(minutes=5),
        refresh_token_version=None,
        force=True,
        requested_at=NOW,
    )
    assert served.refresh is False
    waiting = CredentialStatus(state="backoff", next_attempt_at=NOW + timedelta(seconds=1))
    held = decide(waiting, now=NOW, margin=timedelta(minutes=5), refresh_token_version=None)
    assert (held.refresh, held.reason) == (False, "backoff")


def test_a_value_repeated_in_one_call_does_not_stop_the_rest() -> None:
    redact.register("Twice-123", "Twice-123", "Third-123")
    assert redact.redact("Third-123") == redact.MASK


@pytest.mark.parametrize(
    ("body", "parsed"),
    [(b'{"a": 1}', {"a": 1}), (b"[1, 2]", {}), (b"not json", {}), (b"", {})],
)
def test_json_body_is_an_object_or_empty(body: bytes, parsed: dict[str, Any]) -> None:
    made = response(200)
    made._content = body
    assert json_body(made) == parsed
