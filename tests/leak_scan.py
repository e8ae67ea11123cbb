"""The suite-wide leak scan: no credential used by any test may appear in any log record,
captured stdout/stderr (function processes' logs included) or failure report.

The credentials are every value stored in the Secret Manager stand-in during the session
(except identifiers: secrets whose id ends in ``-id``) and every value a provider fake
issued (``devtools.fakes.base.ISSUED_SECRETS``). The check runs once, after the last test,
and turns a green run red with the list of places where a value leaked.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator

import pytest

from devtools.fakes.base import ISSUED_SECRETS

# Shorter values (ports, small numbers) would match by coincidence.
MIN_LENGTH = 8

captured: list[tuple[str, str]] = []
stored_secrets: set[str] = set()


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_text:
            text += "\n" + record.exc_text
        fields = getattr(record, "json_fields", None)
        if fields:
            text += "\n" + json.dumps(fields, default=str)
        captured.append((f"log record {record.name}", text))


@pytest.fixture(scope="session", autouse=True)
def leak_scan_capture() -> Iterator[None]:
    handler = _CaptureHandler(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def remember_stored_secrets(admin_url: str) -> None:
    """Called by the stack fixture before the stand-in stops."""
    try:
        with urllib.request.urlopen(f"{admin_url}/values", timeout=5) as response:
            values = json.load(response)["values"]
    except OSError:
        return
    for item in values:
        if not item["secret"].endswith("-id"):
            stored_secrets.add(item["value"])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, text in report.sections:
        captured.append((f"{report.nodeid} [{name}]", text))
    if report.longrepr is not None:
        captured.append((f"{report.nodeid} [failure report]", str(report.longrepr)))


def find_leaks() -> list[str]:
    secrets = {s for s in (ISSUED_SECRETS | stored_secrets) if len(s) >= MIN_LENGTH}
    if not secrets:
        return []
    leaks = []
    for where, text in captured:
        for secret in secrets:
            if secret in text:
                kind = "a provider fake issued" if secret in ISSUED_SECRETS else "a stored secret"
                leaks.append(f"{where}: contains {kind} ({len(secret)} characters)")
    return leaks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = find_leaks()
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["LEAK SCAN FAILED: credentials used by the tests appear in captured output:", *leaks]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
