"""The reconciler's planning logic, trigger and configuration parsing: pure functions, no
emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from graph_plan import (
    OUTLOOK_MAX_MINUTES,
    Desired,
    RenewRequest,
    Subscription,
    default_max_minutes,
    parse_desired,
    parse_desired_json,
    parse_request,
    plan,
    requested_expiry,
)

from shared.events import BadMessage
from shared.settings import ConfigError

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
URL = "https://notify.example.test/graph"
INBOX = "/users/u1/mailFolders('Inbox')/messages"
WANT = Desired(INBOX, "created", OUTLOOK_MAX_MINUTES)


def sub(
    sub_id: str,
    *,
    hours: float = 48,
    resource: str = "users/u1/mailFolders('inbox')/messages",
    change_type: str = "created",
    url: str = URL,
    lifecycle: str | None = URL,
) -> Subscription:
    return Subscription(sub_id, resource, change_type, url, lifecycle, NOW + timedelta(hours=hours))


def run_plan(actual: list[Subscription], desired: tuple[Desired, ...] = (WANT,)):
    return plan(desired, actual, notification_url=URL, now=NOW, renew_within=timedelta(hours=24))


def test_default_is_the_seeds_inbox_subscription() -> None:
    (desired,) = parse_desired(None, user_id="u-42", variable="GRAPH_SUBSCRIPTIONS")
    assert desired.resource == "/users/u-42/mailFolders('Inbox')/messages"
    assert desired.change_type == "created"
    assert desired.max_minutes == 4230


def test_nothing_configured_yields_nothing() -> None:
    assert parse_desired(None, user_id=None, variable="GRAPH_SUBSCRIPTIONS") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("{}", "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ('["x"]', r"\[0\] must be an object"),
        ('[{"resource": "/me/messages"}]', "changeType"),
        ('[{"resource": "/me/messages", "changeType": "eaten"}]', "changeType must be among"),
        ('[{"resource": "/me/messages", "changeType": "created", "x": 1}]', "unknown fields"),
        ('[{"resource": "/sites/x/things", "changeType": "created"}]', "set maxMinutes"),
        ('[{"resource": "/me/messages", "changeType": "created", "maxMinutes": 10}]', ">= 45"),
        (
            '[{"resource": "/me/messages", "changeType": "created"},'
            ' {"resource": "me/Messages", "changeType": "created"}]',
            "repeats",
        ),
    ],
)
def test_bad_subscription_list_fails_naming_the_variable(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_desired_json(text, user_id=None, variable="GRAPH_SUBSCRIPTIONS")
    assert "GRAPH_SUBSCRIPTIONS" in str(caught.value)


def test_max_minutes_table_and_override() -> None:
    assert default_max_minutes("/users/u/mailFolders('Inbox')/messages") == 4230
    assert default_max_minutes("/users/u/events") == 4230
    assert default_max_minutes("me/contacts") == 4230
    assert default_max_minutes("/drives/d1/root") == 42300
    assert default_max_minutes("/chats/c1/messages") == 60
    assert default_max_minutes("/users") == 41760
    assert default_max_minutes("/sites/x/things") is None
    (custom,) = parse_desired(
        [{"resource": "/me/messages", "changeType": "created", "maxMinutes": 10080}],
        user_id=None,
        variable="V",
    )
    assert custom.max_minutes == 10080


def test_requested_expiry_never_exceeds_the_maximum() -> None:
    assert requested_expiry(NOW, WANT, 4200) == NOW + timedelta(minutes=4200)
    assert requested_expiry(NOW, WANT, 10_000) == NOW + timedelta(minutes=4230)


def test_missing_subscription_is_created() -> None:
    steps, unmanaged = run_plan([])
    assert len(steps) == 1 and steps[0].keep is None and not steps[0].delete
    assert unmanaged == []


def test_renews_only_inside_the_window() -> None:
    (inside,), _ = run_plan([sub("a", hours=23)])
    (outside,), _ = run_plan([sub("b", hours=25)])
    assert inside.keep is not None and inside.renew
    assert outside.keep is not None and not outside.renew


def test_matching_ignores_leading_slash_case_and_change_type_order() -> None:
    want = Desired(INBOX, "created,updated", 4230)
    (step,), _ = run_plan([sub("a", change_type="updated, created")], desired=(want,))
    assert step.keep is not None and step.keep.id == "a"


def test_duplicates_keep_the_latest_and_delete_the_rest() -> None:
    (step,), _ = run_plan([sub("a", hours=30), sub("b", hours=60), sub("c", hours=40)])
    assert step.keep is not None and step.keep.id == "b"
    assert {s.id for s in step.delete} == {"a", "c"}


def test_subscription_without_our_lifecycle_url_is_replaced() -> None:
    (step,), _ = run_plan([sub("old", lifecycle=None)])
    assert step.keep is None
    assert [s.id for s in step.delete] == ["old"]


def test_other_endpoints_and_undesired_resources_are_left_alone() -> None:
    foreign = sub("x", url="https://other.example.test/hook")
    stray = sub("y", resource="/users/u1/events")
    (step,), unmanaged = run_plan([foreign, stray])
    assert step.keep is None and not step.delete
    assert [s.id for s in unmanaged] == ["y"]


def test_empty_trigger_is_a_scheduled_run() -> None:
    assert parse_request({}) == RenewRequest((), "scheduled")


def test_trigger_lists_each_id_once_and_caps_what_it_keeps() -> None:
    request = parse_request({"reauthorize": ["b", "a", "b"], "reason": "reauthorizationRequired"})
    assert request == RenewRequest(("b", "a"), "reauthorizationRequired")
    many = parse_request({"reauthorize": [f"s{i}" for i in range(150)], "reason": "r" * 150})
    assert len(many.reauthorize) == 100 and many.reason == "r" * 100


def test_force_renews_every_subscription_or_only_the_named_ones() -> None:
    events = Desired("/users/u1/events", "created", 4230)
    forced = parse_request({"force": True}, (WANT, events))
    assert forced == RenewRequest((), "forced", True, None)
    assert forced.forces(WANT) and forced.forces(events)
    # Named as in GRAPH_SUBSCRIPTIONS, give or take the leading slash and letter case.
    only = parse_request(
        {"force": True, "subscriptions": ["users/U1/mailFolders('inbox')/messages"]},
        (WANT, events),
    )
    assert only.force and only.forces(WANT) and not only.forces(events)
    assert parse_request({"force": False}) == RenewRequest()
    assert not RenewRequest().forces(WANT)


def test_force_naming_a_resource_not_configured_is_refused_without_quoting_it() -> None:
    with pytest.raises(BadMessage, match="1 resource\\(s\\) not in GRAPH_SUBSCRIPTIONS") as caught:
        parse_request({"force": True, "subscriptions": [INBOX, "/users/typo/events"]}, (WANT,))
    assert "typo" not in str(caught.value) and INBOX in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"delete": "all"}, "unknown fields"),
        ({"force": "yes"}, "force must be true or false"),
        ({"subscriptions": [INBOX]}, 'only goes with "force": true'),
        ({"force": True, "subscriptions": []}, "non-empty list of resources"),
        ({"force": True, "subscriptions": INBOX}, "non-empty list of resources"),
        ({"force": True, "subscriptions": [INBOX, " "]}, "non-empty strings"),
        ({"force": True, "subscriptions": [1]}, "non-empty strings"),
        ({"reauthorize": "s1"}, "list of subscription ids"),
        ({"reauthorize": ["s1", ""]}, "list of subscription ids"),
        ({"reauthorize": [1]}, "list of subscription ids"),
        ({"reason": 5}, "reason must be a string"),
    ],
)
def test_bad_trigger_is_refused(data, message: str) -> None:
    with pytest.raises(BadMessage, match=message):
        parse_request(data)
