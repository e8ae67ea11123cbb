"""Which HubSpot token endpoints HubSpot retires, and what to say about a configured one.

HubSpot retires the legacy ``POST /oauth/v1/token`` on 2027-02-16; its migration guide points
to the date-versioned ``/oauth/2026-03/token`` ("latest"), which takes the same form fields,
in the body only (``/oauth/v3/token`` is the same contract, undated). A deployment configured
with a retiring endpoint must hear about it before the day it breaks: each run logs a WARNING
(an ERROR once retired) and ``python -m cli status`` shows a ``token endpoint`` row. Both ask
``endpoint_notice``, a pure function of the configured URL and today's date.

The endpoint is matched by the end of its path on any host, so a proxy or the local fake
serving the same path is reported too. Only scheme, host and path are ever shown or stored: a
URL with a user name or a query string keeps them to itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from shared.clock import parse_time

# The path of HUBSPOT_TOKEN_URL's default (main.py, Terraform's hubspot_token_url).
CURRENT_TOKEN_PATH = "/oauth/2026-03/token"  # noqa: S105 - a URL path, not a secret

# Path of a retiring endpoint -> the day HubSpot stops answering it.
RETIRING: dict[str, date] = {"/oauth/v1/token": date(2027, 2, 16)}

# On each account's access-token secret, beside its status: the endpoint its last attempt was
# configured with, which is what ``cli status`` reads (it cannot see the function's settings).
ENDPOINT_ANNOTATION = "token-endpoint"

# From this many days before the retirement the status row needs attention (cli status exits
# 1): time to change one setting and deploy, without nagging for months.
ATTENTION_DAYS = 30

# The states of the ``token endpoint`` row of ``cli status``, by how close the retirement is.
DEPRECATED, EXPIRING, EXPIRED = "deprecated", "expiring", "expired"


@dataclass(frozen=True)
class EndpointNotice:
    endpoint: str  # scheme://host/path of the configured URL: nothing else of it
    replacement: str  # the same host with the current path
    retires_on: date
    days_left: int  # 0 or less: retired

    @property
    def retired(self) -> bool:
        return self.days_left <= 0

    @property
    def state(self) -> str:
        if self.retired:
            return EXPIRED
        return EXPIRING if self.days_left <= ATTENTION_DAYS else DEPRECATED

    @property
    def message(self) -> str:
        fix = (
            f"set HUBSPOT_TOKEN_URL (Terraform hubspot_token_url) to {self.replacement}, "
            "which takes the same form fields"
        )
        if self.retired:
            return (
                f"HubSpot retired the token endpoint {self.endpoint} on {self.retires_on}: "
                f"every refresh through it fails; {fix}"
            )
        return (
            f"HubSpot retires the token endpoint {self.endpoint} on {self.retires_on} "
            f"({self.days_left} days from now): {fix}"
        )


def shown(url: str) -> str:
    """``scheme://host/path`` of a URL: no user name, password, query or fragment."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed "[": the refresh reports it; nothing to show here
        return "(not a URL)"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def endpoint_notice(token_url: str, today: date) -> EndpointNotice | None:
    """What to tell about ``token_url`` on ``today``; None when HubSpot does not retire it."""
    endpoint = shown(token_url)
    path = urlsplit(endpoint).path.rstrip("/")
    for retiring, retires_on in RETIRING.items():
        if path.lower().endswith(retiring):
            base = endpoint[: endpoint.rindex(path) + len(path) - len(retiring)]
            return EndpointNotice(
                endpoint=endpoint,
                replacement=base + CURRENT_TOKEN_PATH,
                retires_on=retires_on,
                days_left=(retires_on - today).days,
            )
    return None


def last_used_endpoint(statuses: Iterable[Mapping[str, str]]) -> str | None:
    """The endpoint recorded by the latest attempt of any account (its status annotations), so
    an account that is not attempted any more (disabled, needs-reauth) does not speak for the
    deployment; None when no attempt recorded one."""
    latest: tuple[datetime, str] | None = None
    for status in statuses:
        endpoint = status.get(ENDPOINT_ANNOTATION)
        times = [parse_time(status.get(k)) for k in ("refreshed-at", "last-error-at")]
        attempted = max((t for t in times if t is not None), default=None)
        if endpoint and attempted is not None and (latest is None or attempted > latest[0]):
            latest = (attempted, endpoint)
    return latest[1] if latest else None
