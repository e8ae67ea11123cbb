"""What a Bitrix24 run decides: which message it got, whether the tokens are due, how it ended.

Pure: no environment variables, no framework, no I/O of its own. The status and the
refresh-token version a decision needs are read by b24_run and come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import events
from shared.status import CredentialStatus, Decision, decide


def parse_request(data: dict[str, Any]) -> bool:
    """``{}`` refreshes when due; ``{"force": true}`` refreshes now. Anything else is refused."""
    events.refuse_unknown_fields(data, {"force"}, "{} or force")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise events.BadMessage("force must be true or false")
    return force


def judge(
    status: CredentialStatus,
    refresh_token_version: int | None,
    *,
    now: datetime,
    margin: timedelta,
    force: bool,
    requested_at: datetime | None,
) -> Decision:
    """Refresh when the access token expires within the margin, its expiry is unknown, the
    refresh token changed since the last refresh, or the message forces it.

    Only shared.status.decide: kept as this one call so a later consolidation has one place
    to change.
    """
    return decide(
        status,
        now=now,
        margin=margin,
        refresh_token_version=refresh_token_version,
        force=force,
        requested_at=requested_at,
    )


@dataclass(frozen=True)
class Outcome:
    result: str  # refreshed | skipped | needs-reauth | failed | busy (another run holds the lock)
    reason: str
    expires_at: datetime | None = None
    refresh_token_version: int | None = None
    access_token_version: int | None = None


def not_called(reason: str, expires_at: datetime | None) -> Outcome:
    """How a run that does not call Bitrix24 ends. A skip is a success in monitoring (the
    token is fresh, or a forced request was already served); waiting for a person to
    re-authorise is not, so it keeps reporting ``needs-reauth`` until someone acts."""
    return Outcome("needs-reauth" if reason == "needs-reauth" else "skipped", reason, expires_at)
