"""In-memory Secret Manager speaking the real v1 gRPC API, for local runs and tests.

Google ships no emulator. This serves ``google.cloud.secretmanager.v1.SecretManagerService``
so the official client works unchanged over an insecure channel, plus a JSON admin port for
fault injection and call counts (``POST /faults``, ``GET /stats``, ``POST /reset``)::

    python -m devtools.secret_manager_emulator --host 127.0.0.1 --port 8086 --admin-port 8087

Semantics follow the API reference and https://cloud.google.com/secret-manager/docs/etags.
Not emulated: IAM, rotation, expiry, label validation; a project id and its number are
separate namespaces; filters are the subset described on ``_compile_filter``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from secrets import token_hex
from typing import Any, TypeVar

import google_crc32c
import grpc
from google.cloud.secretmanager_v1 import types
from google.protobuf import empty_pb2

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAGE_SIZE = 25_000  # the API caps larger page sizes at this value
UPDATABLE_FIELDS = frozenset({"labels", "annotations", "topics", "rotation", "version_aliases"})

_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_PARENT = r"projects/[^/]+(?:/locations/[^/]+)?"
_SECRET_NAME = re.compile(rf"{_PARENT}/secrets/[^/]+")
_VERSION_NAME = re.compile(rf"(?P<secret>{_PARENT}/secrets/[^/]+)/versions/(?P<ref>[^/]+)")
_FILTER_TERM = re.compile(
    r"(?P<field>[A-Za-z_]+(?:\.[A-Za-z0-9_.-]+)?)\s*(?P<op>!=|=|:)\s*(?P<value>\"[^\"]*\"|[^\s\"()]+)"
)

State = types.SecretVersion.State
Code = grpc.StatusCode
T = TypeVar("T")


class RpcAbort(Exception):
    """Carries a gRPC status out of the locked section; handlers turn it into ``context.abort``."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _Version:
    meta: types.SecretVersion
    data: bytes = b""
    crc32c: int = 0

    def number(self) -> int:
        return int(self.meta.name.rsplit("/", 1)[1])

    def state_error(self) -> RpcAbort:
        message = f"Secret Version [{self.meta.name}] is in {State(self.meta.state).name} state."
        return RpcAbort(Code.FAILED_PRECONDITION, message)


@dataclass
class _Secret:
    meta: types.Secret
    seq: int  # creation order: the API lists newest first and timestamps can tie
    versions: dict[int, _Version] = field(default_factory=dict)


@dataclass
class _Fault:
    method: str
    code: Any
    remaining: int
    secret: str | None


def _etag() -> str:
    # Real etags are opaque quoted strings (AIP-154); clients must echo them verbatim.
    return f'"{token_hex(7)}"'


def _invalid(message: str) -> RpcAbort:
    return RpcAbort(Code.INVALID_ARGUMENT, message)


def _check_etag(given: str, current: str, name: str) -> None:
    # The Secret Manager etag docs specify FAILED_PRECONDITION (HTTP 400), not AIP-154's ABORTED.
    if given and given != current:
        raise RpcAbort(Code.FAILED_PRECONDITION, f"stale etag {given} for [{name}]")


def _check_parent(parent: str) -> None:
    if not re.fullmatch(_PARENT, parent):
        raise _invalid(f"invalid parent [{parent}]; expected projects/*")


def _secret_field(secret: _Secret, name: str) -> str | None:
    if name == "name":
        return secret.meta.name
    prefix, _, key = name.partition(".")
    return (secret.meta.labels if prefix == "labels" else secret.meta.annotations).get(key)


def _version_field(version: _Version, name: str) -> str | None:
    return version.meta.name if name == "name" else State(version.meta.state).name


_SECRET_FIELDS = re.compile(r"name|(?:labels|annotations)\.[A-Za-z0-9_.-]+")
_VERSION_FIELDS = re.compile(r"name|state")


def _compile_filter(
    text: str, fields: re.Pattern[str], lookup: Callable[[T, str], str | None]
) -> Callable[[T], bool]:
    """Supports ``AND``-joined terms ``field=value``, ``field!=value``, ``field:*`` (present)
    and ``field:value`` (substring with ``*`` wildcards on ``name``, exact match elsewhere).

    Everything else (OR, NOT, parentheses, comparisons, unknown fields) is rejected rather
    than half-understood, so a test cannot pass on a filter production reads differently.
    """
    terms: list[tuple[str, str, str]] = []
    for raw in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        term = _FILTER_TERM.fullmatch(raw.strip())
        if term is None or not fields.fullmatch(term["field"]):
            raise _invalid(f"unsupported filter term {raw!r} in {text!r}")
        terms.append((term["field"], term["op"], term["value"].strip('"')))

    def holds(name: str, op: str, value: str, actual: str | None) -> bool:
        if op != ":":
            return (actual == value) == (op == "=")
        if actual is None or value == "*":
            return actual is not None
        if name == "name":  # the filtering docs define `name:` as a substring match
            return re.search(".*".join(map(re.escape, value.split("*"))), actual) is not None
        return actual == value

    return lambda item: all(holds(*term, lookup(item, term[0])) for term in terms)


def _page(items: list[T], key: Callable[[T], int], size: int, token: str) -> tuple[list[T], str]:
    """``items`` come sorted by ``key`` descending; the token is the last key handed out, so a
    resource created between two page calls cannot shift or repeat entries."""
    if size < 0:
        raise _invalid("page_size must not be negative")
    size = min(size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    if token:
        if not token.isdigit():
            raise _invalid(f"invalid page_token {token!r}")
        items = [item for item in items if key(item) < int(token)]
    page = items[:size]
    return page, str(key(page[-1])) if len(items) > size else ""


def _serializer(response: Any) -> Any:
    # proto-plus classes serialize via a classmethod; plain protobuf classes (Empty) do not.
    return getattr(response, "serialize", None) or response.SerializeToString


def _secret_id_of(request: Any) -> str:
    if isinstance(request, types.CreateSecretRequest):
        return str(request.secret_id)
    if isinstance(request, types.UpdateSecretRequest):
        name = request.secret.name
    else:
        name = getattr(request, "name", "") or getattr(request, "parent", "")
    found = re.search(r"/secrets/([^/]+)", name)
    return found[1] if found else ""


class SecretManagerEmulator:
    """The service state and RPC logic; every RPC runs under one lock, which is plenty for tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}
        self._seq = 0
        self._faults: list[_Fault] = []
        self._calls: Counter[str] = Counter()
        self._ever_stored: set[tuple[str, bytes]] = set()
        secret, version = types.Secret, types.SecretVersion
        # RPC -> (implementation, response class); responses are copies so that serialising
        # them after the lock is released cannot race a later mutation. Requests: f"{RPC}Request".
        self.methods: dict[str, tuple[Callable[[Any], Any], Any]] = {
            "CreateSecret": (self._create_secret, secret),
            "GetSecret": (lambda r: secret(self._secret(r.name).meta), secret),
            "ListSecrets": (self._list_secrets, types.ListSecretsResponse),
            "UpdateSecret": (self._update_secret, secret),
            "DeleteSecret": (self._delete_secret, empty_pb2.Empty),
            "AddSecretVersion": (self._add_version, version),
            "GetSecretVersion": (lambda r: version(self._version(r.name).meta), version),
            "AccessSecretVersion": (self._access_version, types.AccessSecretVersionResponse),
            "ListSecretVersions": (self._list_versions, types.ListSecretVersionsResponse),
            "DestroySecretVersion": (partial(self._change_state, State.DESTROYED), version),
            "DisableSecretVersion": (partial(self._change_state, State.DISABLED), version),
            "EnableSecretVersion": (partial(self._change_state, State.ENABLED), version),
        }

    # --- test hooks (also served by the admin port) ---

    def inject_fault(
        self, method: str, code: str, count: int = 1, secret: str | None = None
    ) -> None:
        """Fail the next ``count`` calls of ``method`` (of ``secret`` only, if set) as ``code``."""
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; expected one of {sorted(self.methods)}")
        status = getattr(Code, str(code), None)
        if status is None or status == Code.OK:
            raise ValueError(f"unknown or non-error gRPC status {code!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        with self._lock:
            self._faults.append(_Fault(method, status, count, secret))

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"calls": dict(self._calls)}

    def stored_values(self) -> list[tuple[str, str]]:
        """(secret id, value) of every payload ever added, destroyed ones too: the test suite's
        leak scan looks for each value in captured output (a test double's call; the real
        Secret Manager has nothing like it)."""
        with self._lock:
            return sorted((s, v.decode("utf-8", "replace")) for s, v in self._ever_stored)

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._faults.clear()
            self._calls.clear()

    # --- gRPC plumbing ---

    def generic_handler(self) -> Any:
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._guarded(name, impl),
                request_deserializer=getattr(types, f"{name}Request").deserialize,
                response_serializer=_serializer(response),
            )
            for name, (impl, response) in self.methods.items()
        }
        # Methods missing from this table (IAM etc.) get UNIMPLEMENTED from grpc itself.
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _guarded(self, method: str, impl: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
        def handle(request: Any, context: Any) -> Any:
            try:
                with self._lock:
                    self._calls[method] += 1
                    self._trip_fault(method, request)
                    return impl(request)
            except RpcAbort as failure:
                context.abort(failure.code, failure.message)
                raise  # not reached: abort() always raises

        return handle

    def _trip_fault(self, method: str, request: Any) -> None:
        for fault in self._faults:
            if fault.method == method and fault.secret in (None, _secret_id_of(request)):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                raise RpcAbort(fault.code, f"injected fault for {method}")

    # --- lookups ---

    def _secret(self, name: str) -> _Secret:
        if not _SECRET_NAME.fullmatch(name):
            raise _invalid(f"invalid secret name [{name}]")
        secret = self._secrets.get(name)
        if secret is None:
            raise RpcAbort(Code.NOT_FOUND, f"Secret [{name}] not found.")
        return secret

    def _version(self, name: str) -> _Version:
        parsed = _VERSION_NAME.fullmatch(name)
        if parsed is None:
            raise _invalid(f"invalid secret version name [{name}]")
        secret = self._secret(parsed["secret"])
        ref = parsed["ref"]
        # Per the API reference `latest` is the most recently created version whatever its
        # state, so a disabled or destroyed newest version makes `latest` fail, as in production.
        if ref == "latest":
            number = max(secret.versions, default=0)
        elif ref in secret.meta.version_aliases:
            number = secret.meta.version_aliases[ref]
        else:
            number = int(ref) if ref.isdigit() else 0
        version = secret.versions.get(number)
        if version is None:
            raise RpcAbort(Code.NOT_FOUND, f"Secret Version [{name}] not found.")
        return version

    # --- secrets ---

    def _create_secret(self, request: types.CreateSecretRequest) -> types.Secret:
        _check_parent(request.parent)
        if not _SECRET_ID.fullmatch(request.secret_id):
            raise _invalid("secret_id must be 1-255 letters, digits, hyphens or underscores")
        name = f"{request.parent}/secrets/{request.secret_id}"
        if name in self._secrets:
            raise RpcAbort(Code.ALREADY_EXISTS, f"Secret [{name}] already exists.")
        # Global secrets need a replication policy; regional ones (locations/*) refuse one.
        if ("/locations/" in request.parent) == ("replication" in request.secret):
            raise _invalid("Secret.replication is required for global, forbidden for regional")
        meta = types.Secret(request.secret, name=name, create_time=datetime.now(UTC), etag=_etag())
        self._seq += 1
        self._secrets[name] = _Secret(meta, self._seq)
        return types.Secret(meta)

    def _list_secrets(self, request: types.ListSecretsRequest) -> types.ListSecretsResponse:
        _check_parent(request.parent)
        keep = _compile_filter(request.filter, _SECRET_FIELDS, _secret_field)
        prefix = f"{request.parent}/secrets/"
        found = [s for s in self._secrets.values() if s.meta.name.startswith(prefix) and keep(s)]
        found.sort(key=lambda s: s.seq, reverse=True)
        page, token = _page(found, lambda s: s.seq, request.page_size, request.page_token)
        return types.ListSecretsResponse(
            secrets=[types.Secret(s.meta) for s in page],
            next_page_token=token,
            total_size=0 if request.filter else len(found),  # the API reports 0 when filtered
        )

    def _update_secret(self, request: types.UpdateSecretRequest) -> types.Secret:
        secret = self._secret(request.secret.name)
        paths = list(request.update_mask.paths)
        if not paths or not set(paths) <= UPDATABLE_FIELDS:
            raise _invalid(f"update_mask {paths} must be a subset of {sorted(UPDATABLE_FIELDS)}")
        _check_etag(request.secret.etag, secret.meta.etag, secret.meta.name)
        updated = types.Secret(secret.meta)
        request.update_mask.MergeMessage(
            types.Secret.pb(request.secret), types.Secret.pb(updated), True, True
        )
        updated.etag = _etag()
        secret.meta = updated
        return types.Secret(updated)

    def _delete_secret(self, request: types.DeleteSecretRequest) -> Any:
        secret = self._secret(request.name)
        _check_etag(request.etag, secret.meta.etag, secret.meta.name)
        del self._secrets[secret.meta.name]
        return empty_pb2.Empty()

    # --- versions ---

    def _add_version(self, request: types.AddSecretVersionRequest) -> types.SecretVersion:
        secret = self._secret(request.parent)
        data = request.payload.data
        if len(data) > MAX_PAYLOAD_BYTES:
            raise _invalid(f"payload is {len(data)} bytes; the limit is 64 KiB")
        crc32c = int(google_crc32c.value(data))
        client_checksum = "data_crc32c" in request.payload
        if client_checksum and request.payload.data_crc32c != crc32c:
            raise _invalid("Checksum mismatch: payload.data_crc32c does not match the data")
        number = max(secret.versions, default=0) + 1
        meta = types.SecretVersion(
            name=f"{secret.meta.name}/versions/{number}",
            create_time=datetime.now(UTC),
            state=State.ENABLED,
            etag=_etag(),
            client_specified_payload_checksum=client_checksum,
        )
        secret.versions[number] = _Version(meta, data, crc32c)
        self._ever_stored.add((secret.meta.name.rsplit("/", 1)[-1], data))
        return types.SecretVersion(meta)

    def _access_version(
        self, request: types.AccessSecretVersionRequest
    ) -> types.AccessSecretVersionResponse:
        version = self._version(request.name)
        if version.meta.state != State.ENABLED:
            raise version.state_error()
        return types.AccessSecretVersionResponse(
            name=version.meta.name,
            payload=types.SecretPayload(data=version.data, data_crc32c=version.crc32c),
        )

    def _list_versions(
        self, request: types.ListSecretVersionsRequest
    ) -> types.ListSecretVersionsResponse:
        secret = self._secret(request.parent)
        keep = _compile_filter(request.filter, _VERSION_FIELDS, _version_field)
        found = [v for _, v in sorted(secret.versions.items(), reverse=True) if keep(v)]
        page, token = _page(found, _Version.number, request.page_size, request.page_token)
        return types.ListSecretVersionsResponse(
            versions=[types.SecretVersion(v.meta) for v in page],
            next_page_token=token,
            total_size=0 if request.filter else len(found),
        )

    def _change_state(self, target: Any, request: Any) -> types.SecretVersion:
        version = self._version(request.name)
        _check_etag(request.etag, version.meta.etag, version.meta.name)
        if version.meta.state == State.DESTROYED:  # destruction is irreversible
            raise version.state_error()
        version.meta.state = target
        version.meta.etag = _etag()  # documented: even a no-op transition issues a new etag
        if target == State.DESTROYED:
            version.data, version.crc32c = b"", 0
            version.meta.destroy_time = datetime.now(UTC)
        return types.SecretVersion(version.meta)


class _AdminHandler(BaseHTTPRequestHandler):
    def __init__(self, emulator: SecretManagerEmulator, *args: Any, **kwargs: Any) -> None:
        self.emulator = emulator  # must be set first: the base __init__ serves the request
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output and the CLI's stdout readiness protocol clean

    def do_GET(self) -> None:
        if self.path == "/stats":
            self._reply(200, self.emulator.stats())
        elif self.path == "/values":
            values = [{"secret": s, "value": v} for s, v in self.emulator.stored_values()]
            self._reply(200, {"values": values})
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/faults":
                self.emulator.inject_fault(
                    body["method"], body["code"], body.get("count", 1), body.get("secret")
                )
            elif self.path == "/reset":
                self.emulator.reset()
            else:
                self._reply(404, {"error": f"no route {self.path}"})
                return
        except (ValueError, KeyError, TypeError) as error:
            self._reply(400, {"error": str(error)})
            return
        self._reply(200, {"ok": True})

    def _reply(self, status: int, body: object) -> None:
        encoded = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)


@dataclass
class EmulatorHandle:
    """A running emulator; ``emulator`` gives in-process access to faults, stats and reset."""

    emulator: SecretManagerEmulator
    grpc_address: str
    admin_url: str
    _grpc_server: Any
    _admin_server: ThreadingHTTPServer

    def stop(self) -> None:
        self._admin_server.shutdown()
        self._admin_server.server_close()
        self._grpc_server.stop(grace=None).wait()


def start(host: str = "127.0.0.1", port: int = 0, admin_port: int = 0) -> EmulatorHandle:
    """Start both servers on background threads; port 0 picks a free port."""
    emulator = SecretManagerEmulator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((emulator.generic_handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    admin = ThreadingHTTPServer((host, admin_port), partial(_AdminHandler, emulator))
    admin.daemon_threads = True
    server.start()
    threading.Thread(target=admin.serve_forever, name="secret-manager-admin", daemon=True).start()
    return EmulatorHandle(
        emulator, f"{host}:{bound}", f"http://{host}:{admin.server_address[1]}", server, admin
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8086, help="0 picks a free port")
    parser.add_argument("--admin-port", type=int, default=8087, help="0 picks a free port")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    handle = start(args.host, args.port, args.admin_port)
    admin = handle.admin_url.removeprefix("http://")
    try:
        print(f"ready grpc={handle.grpc_address} admin={admin}", flush=True)
        stopping.wait()
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
