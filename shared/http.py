"""HTTP calls to providers: a timeout on every call, capped exponential backoff for transient
failures (timeouts, connection errors, 5xx, 429 honouring Retry-After), typed errors.

Error messages name the method, the URL without its query string and the status, never the
query string or body, because some providers (Bitrix24) take the client secret in the URL.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from shared.errors import ProviderError, TerminalError, TransientError
from shared.redact import redact, safe_url

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# RFC 6749 section 5.2 codes that no amount of waiting fixes.
OAUTH_TERMINAL_CODES = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_request",
        "access_denied",
    }
)


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


def oauth_error(
    response: requests.Response,
    *,
    terminal_codes: frozenset[str] = OAUTH_TERMINAL_CODES,
    code_fields: tuple[str, ...] = ("error",),
    where: str = "token endpoint",
) -> ProviderError:
    """Turn a failed token-endpoint response into a TERMINAL or TRANSIENT error."""
    body = json_body(response)
    code = next((str(body[f]) for f in code_fields if body.get(f)), f"http_{response.status_code}")
    description = str(body.get("error_description") or body.get("message") or "")[:200]
    message = f"{where}: HTTP {response.status_code} {code}"
    if description:
        message += f" ({redact(description)})"
    if code in terminal_codes:
        return TerminalError(message, code=code, status=response.status_code)
    if response.status_code in RETRYABLE_STATUSES or response.status_code in (408, 409, 425):
        return TransientError(message, code=code, status=response.status_code)
    if 400 <= response.status_code < 500:
        # Any other client error (wrong credentials, wrong URL) needs a person, not a retry.
        return TerminalError(message, code=code, status=response.status_code)
    return TransientError(message, code=code, status=response.status_code)


def form_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    headers.update(extra or {})
    return headers
