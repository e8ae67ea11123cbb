"""Shared fixtures: the local emulator stack, per-test environment isolation, function servers.

The process handling lives in :mod:`devtools.stack`; this file only wires it into pytest.
Outside CI a missing emulator skips the tests that need it (the reason says what to install);
with ``CI=true`` it is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# The suite-wide leak scan: its fixture and hooks take effect by being names of this module.
from leak_scan import (  # noqa: E402, F401
    leak_scan_capture,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    remember_stored_secrets,
)

from devtools import stack as devstack  # noqa: E402
from devtools.stack import FunctionServer, MissingDependencyError, Stack  # noqa: E402


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return devstack.free_port()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _start(stack: Stack, services: list[str]) -> None:
    try:
        stack.start(services)
    except MissingDependencyError as err:
        stack.stop()
        if in_ci():
            raise
        pytest.skip(f"local stack unavailable: {err}")


@contextmanager
def _session_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ until the block ends, then put back what was there."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Pub/Sub, GCS and Secret Manager emulators for the whole session; their variables
    (PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST, ...) are in os.environ meanwhile."""
    running = Stack(tmp_path_factory.mktemp("stack-logs"))
    _start(running, ["pubsub", "gcs", "secretmanager"])
    try:
        with _session_env(running.env()):
            yield running
    finally:
        admin = running.env().get("SECRET_MANAGER_EMULATOR_ADMIN")
        if admin:
            remember_stored_secrets(admin)
        running.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Azurite (blob) for the session, started only when a test asks for it;
    AZURITE_BLOB_URL and AZURE_STORAGE_CONNECTION_STRING are in os.environ meanwhile."""
    running = Stack(tmp_path_factory.mktemp("azurite-logs"))
    _start(running, ["azurite"])
    try:
        with _session_env(running.env()):
            yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def isolate_environment() -> Iterator[None]:
    """Whatever a test does to os.environ is undone after it."""
    saved = os.environ.copy()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


StartFunction = Callable[..., FunctionServer]


@pytest.fixture
def function_server(tmp_path: Path) -> Iterator[StartFunction]:
    """Factory: ``function_server(name, target, signature_type="cloudevent", env={...})`` serves
    ``functions/<name>/main.py`` under functions-framework and returns a FunctionServer
    (``.url``, ``.log_text()``); every server is stopped at teardown, its log printed (pytest
    shows it when the test failed). Served as it ships (devtools.stack.start_function): from
    the folder's own venv and a staged copy of its archive, never from this venv or the repo."""
    servers: list[FunctionServer] = []

    def start(
        name: str,
        target: str,
        *,
        signature_type: str = "http",
        env: Mapping[str, str] | None = None,
        source: Path | None = None,
        timeout: float = 30.0,
    ) -> FunctionServer:
        server = devstack.start_function(
            name,
            target,
            signature_type=signature_type,
            env=env,
            source=source,
            log_dir=tmp_path / "function-logs",
            timeout=timeout,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        print(f"--- {server.name} ({server.url}) log ---\n{server.log_text()}")
