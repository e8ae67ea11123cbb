"""Which Graph subscriptions should exist, and what to do about the ones that do.

Pure logic, no I/O: ``parse_request`` reads what a trigger asks for, the reconciler lists the
app's subscriptions, ``plan`` compares them with the desired ones, and graph_reconcile carries
the plan out.

Maximum lifetimes are a conflicting-sources fact. The Graph subscription resource page (2022
copy) gives 4,230 minutes for Outlook messages, events and contacts; newer secondary sources
quote 10,080 minutes (and 1,440 with resource data). We request at most the documented 4,230
by default and trust the ``expirationDateTime`` Graph answers; ``maxMinutes`` on a desired
subscription overrides the table when Microsoft changes it.

Matching an existing subscription to a desired one assumes Graph lists the ``resource`` as it
was requested, give or take the leading slash and letter case [unconfirmed]; use the user's id
rather than the UPN in resources. A subscription that matches nothing is reported, not touched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import events
from shared.settings import ConfigError

# Change types Graph accepts, comma-separated in one string.
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})

# Outlook message, event and contact subscriptions: 4,230 minutes (just under three days) in
# the official table; see the module docstring for the 10,080-minute claim.
OUTLOOK_MAX_MINUTES = 4230

# (pattern on the normalised resource, maximum minutes). First match wins. Teams first, since
# a chat's resource also ends in ``/messages``.
_MAX_MINUTES: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^(teams|chats|communications/presences)\b|/(chats|channels)\b"), 60),
    (re.compile(r"/drive(s)?\b|/root\b|/lists/"), 42300),
    (re.compile(r"^(users|me|groups)/[^/]+/(mailfolders\(.*\)/)?(messages|events|contacts)$"), 0),
    (re.compile(r"^(users|me)/[^/]+/(mailfolders|calendars?|contactfolders)\b"), 0),
    (re.compile(r"^me/(messages|events|contacts)$"), 0),
    (re.compile(r"^(users|groups)$"), 41760),
)


def normalise_resource(resource: str) -> str:
    """Graph echoes resources without the leading slash and not always in the same case."""
    return resource.strip().lstrip("/").lower()


def change_types(value: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in value.split(",") if part.strip())


def default_max_minutes(resource: str) -> int | None:
    """The documented maximum lifetime for ``resource``, or None when we do not know it."""
    normalised = normalise_resource(resource)
    for pattern, minutes in _MAX_MINUTES:
        if pattern.search(normalised):
            return minutes or OUTLOOK_MAX_MINUTES
    return None


def _same(resource_a: str, change_a: str, resource_b: str, change_b: str) -> bool:
    return normalise_resource(resource_a) == normalise_resource(resource_b) and change_types(
        change_a
    ) == change_types(change_b)


@dataclass(frozen=True)
class Desired:
    resource: str
    change_type: str
    max_minutes: int

    def matches(self, sub: Subscription) -> bool:
        return _same(sub.resource, sub.change_type, self.resource, self.change_type)

    def same_kind(self, other: Desired) -> bool:
        return _same(other.resource, other.change_type, self.resource, self.change_type)

    def describe(self) -> str:
        return f"{self.change_type} on {self.resource}"


def parse_desired(raw: Any, *, user_id: str | None, variable: str) -> tuple[Desired, ...]:
    """The desired subscriptions from ``GRAPH_SUBSCRIPTIONS`` (already JSON-decoded, or None).

    None means the seed's single subscription: new messages in ``user_id``'s Inbox. Errors
    name ``variable`` so a bad deploy fails at start-up.
    """
    if raw is None:
        if not user_id:
            return ()  # nothing configured: the reconciler refuses to run and says why
        raw = [
            {"resource": f"/users/{user_id}/mailFolders('Inbox')/messages", "changeType": "created"}
        ]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{variable} must be a non-empty JSON list of objects")
    found: list[Desired] = []
    for index, item in enumerate(raw):
        where = f"{variable}[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be an object with resource and changeType")
        unknown = set(item) - {"resource", "changeType", "maxMinutes"}
        if unknown:
            raise ConfigError(f"{where} has unknown fields {sorted(unknown)}")
        resource, change_type = item.get("resource"), item.get("changeType")
        if not isinstance(resource, str) or not resource.strip():
            raise ConfigError(f"{where}.resource must be a non-empty string")
        if not isinstance(change_type, str) or not change_types(change_type):
            raise ConfigError(f"{where}.changeType must be a non-empty string")
        if not change_types(change_type) <= CHANGE_TYPES:
            raise ConfigError(f"{where}.changeType must be among {sorted(CHANGE_TYPES)}")
        max_minutes = item.get("maxMinutes")
        if max_minutes is None:
            max_minutes = default_max_minutes(resource)
            if max_minutes is None:
                raise ConfigError(
                    f"{where}: no known maximum lifetime for {resource!r}; set maxMinutes "
                    "from the Graph subscription resource documentation"
                )
        if isinstance(max_minutes, bool) or not isinstance(max_minutes, int) or max_minutes < 45:
            # Graph raises anything under 45 minutes to 45 minutes.
            raise ConfigError(f"{where}.maxMinutes must be an integer >= 45")
        desired = Desired(resource.strip(), change_type.strip(), max_minutes)
        if any(d.same_kind(desired) for d in found):
            raise ConfigError(f"{where} repeats an earlier subscription")
        found.append(desired)
    return tuple(found)


def parse_desired_json(
    text: str | None, *, user_id: str | None, variable: str
) -> tuple[Desired, ...]:
    if text is None:
        return parse_desired(None, user_id=user_id, variable=variable)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"environment variable {variable} is not valid JSON: {error.msg}"
        ) from None
    return parse_desired(raw, user_id=user_id, variable=variable)


@dataclass(frozen=True)
class Subscription:
    """The fields of a Graph subscription the reconciler reads."""

    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    expires_at: datetime | None


def same_url(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).rstrip("/") == str(b).rstrip("/")


@dataclass(frozen=True)
class Step:
    """What to do for one desired subscription."""

    desired: Desired
    keep: Subscription | None  # None: create one
    renew: bool
    delete: tuple[Subscription, ...]  # duplicates, or old ones without our lifecycle URL


def plan(
    desired: tuple[Desired, ...],
    actual: list[Subscription],
    *,
    notification_url: str,
    now: datetime,
    renew_within: timedelta,
) -> tuple[list[Step], list[Subscription]]:
    """Steps for every desired subscription, and the subscriptions to our endpoint that match
    none (left alone: they expire on their own once nobody renews them)."""
    ours = [s for s in actual if same_url(s.notification_url, notification_url)]
    claimed: set[str] = set()
    steps: list[Step] = []
    for want in desired:
        candidates = [s for s in ours if want.matches(s) and s.id not in claimed]
        claimed.update(s.id for s in candidates)
        # Only a subscription created with our lifecycle URL gets lifecycle events, and that
        # URL cannot be added by PATCH: older ones are replaced rather than kept.
        good = [s for s in candidates if same_url(s.lifecycle_url, notification_url)]
        good = [s for s in good if s.expires_at is None or s.expires_at > now] or good
        if not good:
            steps.append(Step(want, None, False, tuple(candidates)))
            continue
        keep = max(good, key=lambda s: s.expires_at or now)
        renew = keep.expires_at is None or keep.expires_at - now <= renew_within
        steps.append(Step(want, keep, renew, tuple(s for s in candidates if s.id != keep.id)))
    unmanaged = [s for s in ours if s.id not in claimed]
    return steps, unmanaged


def requested_expiry(now: datetime, desired: Desired, minutes: int) -> datetime:
    """Now plus the configured lifetime, never above the resource's maximum."""
    return now + timedelta(minutes=min(minutes, desired.max_minutes))


@dataclass(frozen=True)
class RenewRequest:
    reauthorize: tuple[str, ...] = ()
    reason: str = "scheduled"
    # ``{"force": true}``: renew (or create) now, whatever the window says.
    force: bool = False
    # With force: only these resources (as in GRAPH_SUBSCRIPTIONS); None means every one.
    subscriptions: tuple[str, ...] | None = None

    def forces(self, desired: Desired) -> bool:
        """Whether this request renews ``desired`` now, due or not."""
        if not self.force:
            return False
        if self.subscriptions is None:
            return True
        named = normalise_resource(desired.resource)
        return any(normalise_resource(r) == named for r in self.subscriptions)


TRIGGER_FIELDS = frozenset({"reauthorize", "reason", "force", "subscriptions"})


def parse_request(data: dict[str, Any], desired: tuple[Desired, ...] = ()) -> RenewRequest:
    """``{}`` reconciles; ``reauthorize`` lists subscription ids to reauthorise first;
    ``{"force": true}`` renews every desired subscription now (creating what is missing), and
    ``"subscriptions": [resource, ...]`` with it only those. A resource that is not among
    ``desired`` (when any is configured) refuses the message: a typo must not pass as done."""
    events.refuse_unknown_fields(
        data, TRIGGER_FIELDS, "reauthorize, reason, force, force with subscriptions"
    )
    ids = data.get("reauthorize", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise events.BadMessage("reauthorize must be a list of subscription ids")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise events.BadMessage("force must be true or false")
    subscriptions: tuple[str, ...] | None = None
    if "subscriptions" in data:
        raw = data["subscriptions"]
        if not isinstance(raw, list) or not raw:
            raise events.BadMessage("subscriptions must be a non-empty list of resources")
        if not all(isinstance(r, str) and r.strip() for r in raw):
            raise events.BadMessage("subscriptions must be resources (non-empty strings)")
        if not force:
            raise events.BadMessage('subscriptions only goes with "force": true')
        subscriptions = tuple(dict.fromkeys(r.strip() for r in raw))[:100]
        known = {normalise_resource(d.resource) for d in desired}
        unknown = [r for r in subscriptions if known and normalise_resource(r) not in known]
        if unknown:
            # Lists what is configured rather than quoting the message (shared.events).
            raise events.BadMessage(
                f"subscriptions names {len(unknown)} resource(s) not in GRAPH_SUBSCRIPTIONS; "
                f"configured: {', '.join(d.resource for d in desired)}"
            )
    reason = data.get("reason", "forced" if force else "scheduled")
    if not isinstance(reason, str):
        raise events.BadMessage("reason must be a string")
    return RenewRequest(tuple(dict.fromkeys(ids))[:100], reason[:100], force, subscriptions)
