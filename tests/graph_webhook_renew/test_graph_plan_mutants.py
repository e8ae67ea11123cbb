"""graph_plan's edges found unpinned by mutation testing: plan() with several desired
subscriptions, the live-over-expired preference, URL and resource normalisation, the default
subscription when GRAPH_SUBSCRIPTIONS is unset, and the exact texts of refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import graph_plan as gp
import pytest

from shared.events import BadMessage
from shared.settings import ConfigError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URL = "https://fn.example/notify"
INBOX = gp.Desired("/users/u1/mailFolders('Inbox')/messages", "created", 4230)
EVENTS = gp.Desired("/users/u1/events", "created,updated", 4230)
CONTACTS = gp.Desired("/users/u1/contacts", "deleted", 4230)


def sub(
    sid: str,
    desired: gp.Desired = INBOX,
    *,
    minutes: float | None = 600,
    url: str = URL,
    lifecycle: str | None = URL,
) -> gp.Subscription:
    expires = None if minutes is None else NOW + timedelta(minutes=minutes)
    return gp.Subscription(sid, desired.resource, desired.change_type, url, lifecycle, expires)


def plan(desired: tuple[gp.Desired, ...], actual: list[gp.Subscription], **kw: Any):
    return gp.plan(
        desired,
        actual,
        notification_url=kw.pop("url", URL),
        now=NOW,
        renew_within=kw.pop("renew_within", timedelta(hours=1)),
    )


def test_every_desired_subscription_gets_a_step_after_a_missing_one() -> None:
    kept = sub("e1", EVENTS)
    steps, unmanaged = plan((INBOX, EVENTS, CONTACTS), [kept])
    assert steps == [
        gp.Step(INBOX, None, False, ()),
        gp.Step(EVENTS, kept, False, ()),
        gp.Step(CONTACTS, None, False, ()),
    ]
    assert unmanaged == []


def test_a_live_subscription_is_kept_over_an_expired_one_that_ends_later_never() -> None:
    expired = sub("old", minutes=-5)
    live = sub("new", minutes=30)
    steps, _ = plan((INBOX,), [expired, live])
    assert steps == [gp.Step(INBOX, live, True, (expired,))]


def test_a_subscription_expiring_exactly_now_is_not_live() -> None:
    ending = sub("now", minutes=0)
    later = sub("later", minutes=0.5)
    steps, _ = plan((INBOX,), [ending, later])
    assert steps[0].keep == later


def test_only_expired_ones_the_latest_is_kept_and_renewed() -> None:
    a, b = sub("a", minutes=-50), sub("b", minutes=-5)
    steps, _ = plan((INBOX,), [a, b])
    assert steps == [gp.Step(INBOX, b, True, (a,))]


def test_a_subscription_without_expiry_is_live_and_renewed() -> None:
    unknown = sub("u", minutes=None)
    steps, _ = plan((INBOX,), [unknown, sub("x", minutes=-1)])
    assert steps[0].keep == unknown and steps[0].renew


def test_renewal_is_due_within_the_window_inclusive() -> None:
    steps, _ = plan((INBOX,), [sub("a", minutes=60)])
    assert steps[0].renew is True
    steps, _ = plan((INBOX,), [sub("a", minutes=60.5)])
    assert steps[0].renew is False


def test_one_without_our_lifecycle_url_is_replaced_and_deleted() -> None:
    old = sub("old", lifecycle=None)
    other = sub("other", lifecycle="https://elsewhere/x")
    steps, unmanaged = plan((INBOX,), [old, other])
    assert steps == [gp.Step(INBOX, None, False, (old, other))]
    assert unmanaged == []


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://fn.example/notify", "https://fn.example/notify/", True),
        ("https://fn.example/notify/", "https://fn.example/notify", True),
        ("https://fn.example/notify//", "https://fn.example/notify", True),
        ("/fn.example/notify", "fn.example/notify", False),
        ("https://fn.example/notify", "https://fn.example/other", False),
        ("", "", False),
        (None, URL, False),
        (URL, None, False),
    ],
)
def test_same_url(a: str | None, b: str | None, same: bool) -> None:
    assert gp.same_url(a, b) is same


def test_trailing_slashes_do_not_split_our_subscriptions() -> None:
    mine = sub("m", url=URL + "/", lifecycle=URL + "/")
    steps, unmanaged = plan((INBOX,), [mine], url=URL)
    assert steps[0].keep == mine and unmanaged == []


def test_subscriptions_to_other_endpoints_are_neither_managed_nor_reported() -> None:
    foreign = sub("f", url="https://other/notify")
    stray = sub("s", CONTACTS)
    steps, unmanaged = plan((INBOX,), [foreign, stray])
    assert steps == [gp.Step(INBOX, None, False, ())]
    assert unmanaged == [stray]


@pytest.mark.parametrize(
    ("resource", "normalised"),
    [
        ("/Users/U1/Messages", "users/u1/messages"),
        ("//users/x", "users/x"),
        ("  /me/events ", "me/events"),
        ("users/X/", "users/x/"),
    ],
)
def test_normalise_resource(resource: str, normalised: str) -> None:
    assert gp.normalise_resource(resource) == normalised


def test_resources_match_across_slash_and_case() -> None:
    listed = gp.Subscription(
        "x", "Users/u1/mailFolders('Inbox')/messages", "Created", URL, URL, None
    )
    assert INBOX.matches(listed)


# --- GRAPH_SUBSCRIPTIONS --------------------------------------------------------------------------


def test_unset_means_the_inbox_of_the_user() -> None:
    expected = (gp.Desired("/users/u9/mailFolders('Inbox')/messages", "created", 4230),)
    assert gp.parse_desired(None, user_id="u9", variable="V") == expected
    assert gp.parse_desired_json(None, user_id="u9", variable="V") == expected
    assert gp.parse_desired_json(None, user_id=None, variable="V") == ()


def test_the_json_form_reads_the_user_and_names_the_variable() -> None:
    text = '[{"resource": "/users/u2/events", "changeType": "updated"}]'
    assert gp.parse_desired_json(text, user_id="u9", variable="V") == (
        gp.Desired("/users/u2/events", "updated", 4230),
    )
    with pytest.raises(ConfigError, match=r"^GRAPH_X\[0\].changeType must be a non-empty string$"):
        gp.parse_desired_json(
            '[{"resource": "r", "changeType": ""}]', user_id=None, variable="GRAPH_X"
        )
    with pytest.raises(ConfigError, match=r"^environment variable GRAPH_X is not valid JSON: "):
        gp.parse_desired_json("[", user_id=None, variable="GRAPH_X")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ([], "V must be a non-empty JSON list of objects"),
        ([{"resource": "", "changeType": "created"}], "V[0].resource must be a non-empty string"),
        ([{"resource": 5, "changeType": "created"}], "V[0].resource must be a non-empty string"),
        (
            [{"resource": "/me/events", "changeType": "created,read"}],
            "V[0].changeType must be among ['created', 'deleted', 'updated']",
        ),
        (
            [{"resource": "/unknown/x", "changeType": "created"}],
            "V[0]: no known maximum lifetime for '/unknown/x'; set maxMinutes from the Graph subscription resource documentation",
        ),
        (
            [{"resource": "/me/events", "changeType": "created", "maxMinutes": 44}],
            "V[0].maxMinutes must be an integer >= 45",
        ),
        (
            [{"resource": "/me/events", "changeType": "created", "maxMinutes": True}],
            "V[0].maxMinutes must be an integer >= 45",
        ),
        (
            [{"resource": "/me/events", "changeType": "created", "maxMinutes": 50.0}],
            "V[0].maxMinutes must be an integer >= 45",
        ),
    ],
)
def test_parse_desired_refusals(raw: Any, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(why)}$"):
        gp.parse_desired(raw, user_id=None, variable="V")


def test_all_three_change_types_and_45_minutes_are_accepted() -> None:
    raw = [{"resource": "/me/events", "changeType": "created, updated,deleted", "maxMinutes": 45}]
    (got,) = gp.parse_desired(raw, user_id=None, variable="V")
    assert got.max_minutes == 45 and gp.change_types(got.change_type) == gp.CHANGE_TYPES


# --- trigger messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (
            {"bogus": 1},
            "unknown fields ['bogus']; expected reauthorize, reason, force, force with subscriptions",
        ),
        ({"reauthorize": "x"}, "reauthorize must be a list of subscription ids"),
        ({"force": "yes"}, "force must be true or false"),
        (
            {"force": True, "subscriptions": []},
            "subscriptions must be a non-empty list of resources",
        ),
        (
            {"force": True, "subscriptions": [" "]},
            "subscriptions must be resources (non-empty strings)",
        ),
        ({"subscriptions": ["/me/events"]}, 'subscriptions only goes with "force": true'),
        ({"reason": 5}, "reason must be a string"),
        (
            {"force": True, "subscriptions": ["/users/zz/events"]},
            "subscriptions names 1 resource(s) not in GRAPH_SUBSCRIPTIONS; configured: "
            "/users/u1/mailFolders('Inbox')/messages, /users/u1/events",
        ),
    ],
)
def test_parse_request_refusals(data: dict[str, Any], why: str) -> None:
    with pytest.raises(BadMessage, match=rf"^{re.escape(why)}$"):
        gp.parse_request(data, (INBOX, EVENTS))


def test_a_forced_request_is_capped_at_100_resources() -> None:
    names = [f"/users/u{i}/events" for i in range(150)]
    request = gp.parse_request({"force": True, "subscriptions": names})
    assert request.subscriptions == tuple(names[:100])


def test_normalising_strips_slashes_only() -> None:
    assert gp.normalise_resource("/Xfoo/bar") == "xfoo/bar"
    assert gp.same_url("https://fn.example/aX", "https://fn.example/aX/")
    assert not gp.same_url("https://fn.example/a", "https://fn.example/aX")


def test_an_unknown_expiry_is_preferred_to_one_ending_exactly_now() -> None:
    ending, unknown = sub("ending", minutes=0), sub("unknown", minutes=None)
    steps, _ = plan((INBOX,), [ending, unknown])
    assert steps[0].keep == unknown and steps[0].delete == (ending,)
