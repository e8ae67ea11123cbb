"""HTTP calls to providers: a timeout on every call, capped exponential backoff for transient
failures (timeouts, connection errors, 5xx, 429 honouring Retry-After), typed errors, and the
one rule (``status_kind``) that says whether waiting may cure an HTTP status.

Error messages name the method, the URL without its query string and the status, never the
query string or body, because some providers (Bitrix24) take the client secret in the URL.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from shared.errors import ErrorKind, ProviderError, TerminalError, TransientError
from shared.redact import safe_url

log = logging.getLogger(__name__)

# What HttpClient retries within one call (Retry-After honoured); see status_kind for what a
# caller makes of a status that is still there after the retries.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# The statuses below 500 after which waiting helps: the request timed out (408), came too early
# (425, RFC 8470) or was throttled (429).
TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts include the first call; delays double from ``base_delay`` up to ``max_delay``."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based), with full jitter on the upper half."""
        ceiling = min(self.max_delay, self.base_delay * (1 << min(attempt - 1, 30)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


NO_RETRY = RetryPolicy(attempts=1)


def retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait, from a delta-seconds or HTTP-date Retry-After."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """A requests session with timeouts, retries and an optional overall deadline."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock

    def request(
        self,
        method: str,
        url: str,
        *,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request; return the response unless it stayed transient after every retry.

        ``deadline`` is a ``time.monotonic()`` instant after which no new attempt starts.
        A 4xx other than 429 is returned as is: only the caller knows what its body means.
        """
        policy = retry or self.retry
        where = f"{method} {safe_url(url)}"
        last: TransientError | None = None
        for attempt in range(1, policy.attempts + 1):
            wait: float | None = None
            try:
                response = self.session.request(
                    method, url, timeout=timeout or self.timeout, **kwargs
                )
            except requests.Timeout:
                last = TransientError(f"{where}: timed out", code="timeout")
            except requests.ConnectionError:
                last = TransientError(f"{where}: connection failed", code="connection_error")
            except requests.RequestException as error:
                # Other request errors (bad URL, too many redirects) will not heal by waiting.
                raise TerminalError(
                    f"{where}: request failed ({type(error).__name__})", code="request_error"
                ) from None
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return response
                last = TransientError(
                    f"{where}: HTTP {response.status_code}",
                    code=f"http_{response.status_code}",
                    status=response.status_code,
                )
                asked = retry_after_seconds(response)
                if asked is not None:
                    wait = min(asked, policy.max_retry_after)
                response.close()
            if attempt == policy.attempts:
                break
            wait = policy.backoff(attempt) if wait is None else wait
            if deadline is not None and self._clock() + wait > deadline:
                break
            log.warning(
                "%s: transient failure (%s), retry %d of %d in %.1fs",
                where,
                last.code,
                attempt,
                policy.attempts - 1,
                wait,
            )
            self._sleep(wait)
        assert last is not None
        raise last


def json_body(response: requests.Response) -> dict[str, Any]:
    """The response body as a JSON object, or an empty dict when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def status_kind(
    status: int, *, transient: Collection[int] = (), terminal: Collection[int] = ()
) -> ErrorKind:
    """Whether waiting may cure an HTTP answer other than the success the caller asked for.

    One rule for every provider: 408, 425, 429 and every 5xx are TRANSIENT; any other status is
    TERMINAL (another 4xx means wrong credentials, URL or request, and an answer nobody expects,
    such as a 3xx, needs a person to look too). A provider whose documented behaviour differs
    moves single statuses with ``transient`` or ``terminal`` (``terminal`` wins), and says why
    where it does.
    """
    if status in terminal:
        return ErrorKind.TERMINAL
    if status in transient or status in TRANSIENT_STATUSES or status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.TERMINAL


def status_error(
    message: str,
    *,
    status: int,
    code: str = "",
    transient: Collection[int] = (),
    terminal: Collection[int] = (),
) -> ProviderError:
    """``message`` as the error ``status_kind`` makes of ``status``; the code defaults to
    ``http_<status>``."""
    kind = status_kind(status, transient=transient, terminal=terminal)
    error = TerminalError if kind is ErrorKind.TERMINAL else TransientError
    return error(message, code=code or f"http_{status}", status=status)
