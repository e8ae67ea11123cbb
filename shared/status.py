"""Per-credential status kept as annotations on the access-token secret, and the renewal
policy that reads it.

The annotations are the status users see (``gcloud secrets describe``, the status command):
``state`` (ok | backoff | needs-reauth), ``expires-at``, ``refreshed-at``, ``last-error``,
``last-error-at``, ``failure-count``, ``next-attempt-at``, and ``refresh-token-version``: the
version of the refresh-token secret the last attempt used. A newer refresh-token version than
that one means someone re-authorised, or a run stored a rotated token and died before the
access token: either way the access token cannot be trusted and a refresh is due.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from shared.clock import format_precise_time, format_time, parse_time

State = Literal["unknown", "ok", "backoff", "needs-reauth"]
STATES: tuple[State, ...] = ("unknown", "ok", "backoff", "needs-reauth")

KEYS = (
    "state",
    "expires-at",
    "refreshed-at",
    "last-error",
    "last-error-at",
    "failure-count",
    "next-attempt-at",
    "refresh-token-version",
)


@dataclass(frozen=True)
class CredentialStatus:
    state: State = "unknown"
    expires_at: datetime | None = None
    refreshed_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failure_count: int = 0
    next_attempt_at: datetime | None = None
    refresh_token_version: int | None = None

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> CredentialStatus:
        state = annotations.get("state", "unknown")
        return cls(
            state=state if state in STATES else "unknown",
            expires_at=parse_time(annotations.get("expires-at")),
            refreshed_at=parse_time(annotations.get("refreshed-at")),
            last_error=annotations.get("last-error") or None,
            last_error_at=parse_time(annotations.get("last-error-at")),
            failure_count=_int(annotations.get("failure-count")) or 0,
            next_attempt_at=parse_time(annotations.get("next-attempt-at")),
            refresh_token_version=_int(annotations.get("refresh-token-version")),
        )

    def to_annotations(self) -> dict[str, str | None]:
        """All status keys; None marks a key to remove."""

        def t(value: datetime | None) -> str | None:
            return format_time(value) if value else None

        return {
            "state": self.state,
            "expires-at": t(self.expires_at),
            # To the millisecond: a forced request is compared with it (see decide).
            "refreshed-at": format_precise_time(self.refreshed_at) if self.refreshed_at else None,
            "last-error": self.last_error[:500] if self.last_error else None,
            "last-error-at": t(self.last_error_at),
            "failure-count": str(self.failure_count),
            "next-attempt-at": t(self.next_attempt_at),
            "refresh-token-version": (
                str(self.refresh_token_version) if self.refresh_token_version else None
            ),
        }

    # --- transitions ----------------------------------------------------------------

    def succeeded(
        self, *, now: datetime, expires_at: datetime | None, refresh_token_version: int | None
    ) -> CredentialStatus:
        return CredentialStatus(
            state="ok",
            expires_at=expires_at,
            refreshed_at=now,
            refresh_token_version=refresh_token_version,
        )

    def failed_transiently(
        self, *, now: datetime, error: str, backoff: Backoff | None = None
    ) -> CredentialStatus:
        count = self.failure_count + 1
        return replace(
            self,
            state="backoff" if backoff else self.state,
            last_error=error,
            last_error_at=now,
            failure_count=count,
            next_attempt_at=now + backoff.delay(count) if backoff else None,
        )

    def needs_reauth(
        self, *, now: datetime, error: str, refresh_token_version: int | None
    ) -> CredentialStatus:
        return replace(
            self,
            state="needs-reauth",
            last_error=error,
            last_error_at=now,
            failure_count=self.failure_count + 1,
            next_attempt_at=None,
            refresh_token_version=refresh_token_version,
        )


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff between failed attempts: first, doubling, up to a cap."""

    first: timedelta = timedelta(minutes=5)
    cap: timedelta = timedelta(hours=1)

    def delay(self, failures: int) -> timedelta:
        return min(self.cap, self.first * (1 << min(max(0, failures - 1), 30)))


@dataclass(frozen=True)
class Decision:
    refresh: bool
    reason: str


def decide(
    status: CredentialStatus,
    *,
    now: datetime,
    margin: timedelta,
    refresh_token_version: int | None,
    force: bool = False,
    requested_at: datetime | None = None,
) -> Decision:
    """Whether to call the provider now, and why (the reason goes into the logs)."""
    reauthorised = (
        refresh_token_version is not None
        and status.refresh_token_version is not None
        and refresh_token_version != status.refresh_token_version
    )
    if status.state == "needs-reauth" and not reauthorised:
        # The provider already refused this refresh token: calling again only adds noise.
        return Decision(False, "needs-reauth")
    if force:
        # A redelivery of a request that was already served must not spend another token;
        # refreshed-at keeps milliseconds, so a new request a moment after a refresh still runs.
        if requested_at and status.refreshed_at and status.refreshed_at >= requested_at:
            return Decision(False, "already refreshed since the request")
        return Decision(True, "forced")
    if reauthorised:
        return Decision(True, "refresh token changed")
    if status.state == "backoff" and status.next_attempt_at and now < status.next_attempt_at:
        return Decision(False, "backoff")
    if status.expires_at is None:
        return Decision(True, "expiry unknown")
    if status.expires_at - now <= margin:
        return Decision(True, "expires within margin" if status.expires_at > now else "expired")
    return Decision(False, "fresh")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
