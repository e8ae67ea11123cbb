"""Errors that tell a caller whether waiting helps.

TERMINAL: a person must act (revoked or wrong credentials, unpaid subscription, app removed);
retrying only hammers the provider. TRANSIENT: timeouts, connection errors, 5xx, 429; trying
again later is the fix. Messages never carry tokens, secrets or query strings.
"""

from __future__ import annotations

from enum import StrEnum

# The code of a TERMINAL error for a required secret nobody can read (shared.secrets
# read_required): no such secret, no enabled version, or no permission to read it.
SECRET_MISSING = "secret_missing"  # noqa: S105 - an error code, not a secret


class ErrorKind(StrEnum):
    TERMINAL = "terminal"
    TRANSIENT = "transient"


class ProviderError(Exception):
    """A provider call failed; ``code`` is the provider's own error code when it gave one."""

    kind: ErrorKind = ErrorKind.TRANSIENT

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def terminal(self) -> bool:
        return self.kind is ErrorKind.TERMINAL


class TerminalError(ProviderError):
    kind = ErrorKind.TERMINAL


class TransientError(ProviderError):
    kind = ErrorKind.TRANSIENT
