"""shared.secrets.read_required: a required secret nobody can read is TERMINAL with one code,
``secret_missing``, whichever way Secret Manager says so; any other failure is TRANSIENT."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from shared.errors import SECRET_MISSING, ProviderError, TerminalError, TransientError
from shared.secrets import SecretStore, read_required


class Client:
    """Stands in for the Secret Manager client: ``answer`` is a value or the error to raise."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def access_secret_version(self, request: dict[str, str]) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return SimpleNamespace(
            name=f"{request['name'].rsplit('/', 2)[0]}/versions/3",
            payload=SimpleNamespace(data=self.answer.encode()),
        )


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (gexc.NotFound("no such secret"), TerminalError, SECRET_MISSING),
        (gexc.FailedPrecondition("version disabled"), TerminalError, SECRET_MISSING),
        (gexc.PermissionDenied("no accessor role"), TerminalError, SECRET_MISSING),
        (gexc.ServiceUnavailable("down"), TransientError, "secret_manager"),
        (gexc.DeadlineExceeded("slow"), TransientError, "secret_manager"),
        (gexc.TooManyRequests("quota"), TransientError, "secret_manager"),
    ],
)
def test_unreadable_is_terminal_with_one_code_and_anything_else_transient(
    error: Exception, kind: type[ProviderError], code: str
) -> None:
    store = SecretStore("p", client=Client(error))  # type: ignore[arg-type]
    with pytest.raises(kind) as raised:
        read_required(store, "cegid-sas-url")
    assert type(raised.value) is kind and raised.value.code == code
    assert "cegid-sas-url" in str(raised.value) and type(error).__name__ in str(raised.value)
    assert raised.value.__cause__ is None


def test_the_code_is_secret_missing() -> None:
    """The code in every needs_reauth/config_error line's error_code (a metric label):
    changing it is a contract change."""
    assert SECRET_MISSING == "secret_missing"


def test_a_readable_secret_is_its_value() -> None:
    store = SecretStore("p", client=Client("the-value-123"))  # type: ignore[arg-type]
    assert read_required(store, "graph-client-id") == "the-value-123"
