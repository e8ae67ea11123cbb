"""Helpers for the Bitrix24 fault tests: a fake that can hold a token request, Secret Manager
fault injection through the stand-in's admin port, a private Secret Manager stand-in that can
hold one read's answer, CloudEvent builders, and the invariant every fault must leave intact
(nothing half-written is ever presented as current)."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc
from google.cloud import secretmanager

from devtools.fakes.base import Request, Response
from devtools.fakes.bitrix24 import Bitrix24Fake
from devtools.secret_manager_emulator import SecretManagerEmulator
from shared.secrets import SecretStore
from shared.status import CredentialStatus, decide

SOURCE = "functions/b24_token_refresh/main.py"
TARGET = "b24_token_refresh"


class HoldingBitrix24Fake(Bitrix24Fake):
    """The Bitrix24 fake, able to hold the next token request until the test lets it go.

    ``hold("drop")``: the held request is answered 503 without touching any grant, as when the
    caller died before the provider processed it. ``hold("answer")``: the grant is spent and a
    new pair issued once released, as when the caller died after the provider answered.
    ``slow_answer``: the next request is processed, then its answer is delayed this long.
    """

    def __init__(self) -> None:
        super().__init__()
        self._hold_mode: str | None = None
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.slow_answer = 0.0

    def hold(self, mode: str) -> None:
        assert mode in {"drop", "answer"}
        self._hold_mode = mode
        self.arrived.clear()
        self.release.clear()

    def _token(self, request: Request) -> Response:
        mode, self._hold_mode = self._hold_mode, None
        if mode is not None:
            self.arrived.set()
            self.release.wait(timeout=120)
            if mode == "drop":
                return Response(503, {"error": "temporarily_unavailable"})
        response = super()._token(request)
        if self.slow_answer:
            delay, self.slow_answer = self.slow_answer, 0.0
            time.sleep(delay)
        return response


@dataclass
class B24World:
    fake: HoldingBitrix24Fake
    store: SecretStore
    env: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    bucket: str = ""
    # Kept out of repr: a failing assert that shows the world must not show a token.
    initial_refresh_token: str = field(default="", repr=False)

    @property
    def access_secret(self) -> str:
        return self.secrets["access_token"]

    @property
    def refresh_secret(self) -> str:
        return self.secrets["refresh_token"]

    def status(self) -> CredentialStatus:
        return CredentialStatus.from_annotations(self.store.info(self.access_secret).annotations)

    def access_token(self) -> str | None:
        found = self.store.read_optional(self.access_secret)
        return found.value if found else None


# --- Secret Manager faults --------------------------------------------------------------


def sm_fault(method: str, count: int, secret: str, code: str = "UNAVAILABLE") -> None:
    """The next ``count`` calls of ``method`` on ``secret`` fail with gRPC status ``code``."""
    body = {"method": method, "code": code, "count": count, "secret": secret}
    request = urllib.request.Request(
        f"{os.environ['SECRET_MANAGER_EMULATOR_ADMIN']}/faults",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def sm_drain_add_faults(store: SecretStore, secret: str, limit: int = 5000) -> int:
    """Use up the AddSecretVersion faults left on ``secret`` without adding a version.

    Each call carries a wrong checksum: while a fault is armed it trips the fault; once none
    is left the stand-in rejects the checksum (INVALID_ARGUMENT) and stores nothing.
    """
    for used in range(limit):
        try:
            store.client.add_secret_version(
                request={
                    "parent": store.path(secret),
                    "payload": {"data": b"drain", "data_crc32c": 1},
                },
                retry=None,
                timeout=10,
            )
        except gexc.InvalidArgument:
            return used
        except gexc.GoogleAPICallError:
            continue
        raise AssertionError("a draining call stored a version")
    raise AssertionError(f"faults on {secret} not drained after {limit} calls")


def sm_drain_update_faults(store: SecretStore, secret: str, limit: int = 5000) -> int:
    """Use up UpdateSecret faults on ``secret`` with a no-op update (empty mask is invalid)."""
    for used in range(limit):
        try:
            store.client.update_secret(
                request={"secret": {"name": store.path(secret)}, "update_mask": {"paths": ["x"]}},
                retry=None,
                timeout=10,
            )
        except gexc.InvalidArgument:
            return used
        except gexc.GoogleAPICallError:
            continue
        raise AssertionError("a draining call updated the secret")
    raise AssertionError(f"faults on {secret} not drained after {limit} calls")


class HeldRead(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Holds the answer to the next value read (AccessSecretVersion) of one secret until the
    test lets it go: the reader is then known to be right after that read, where a test can
    pause it. The value is read before the hold, so the answer carries it as it was then."""

    def __init__(self) -> None:
        self._secret: str | None = None
        self._lock = threading.Lock()
        self.arrived = threading.Event()
        self.release = threading.Event()

    def hold(self, secret_id: str) -> None:
        with self._lock:
            self._secret = secret_id
        self.arrived.clear()
        self.release.clear()

    def _take(self, name: str) -> bool:
        with self._lock:
            if self._secret is None or f"/secrets/{self._secret}/" not in name:
                return False
            self._secret = None
            return True

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or not details.method.endswith("/AccessSecretVersion"):
            return handler
        answer = handler.unary_unary

        def held(request: Any, context: Any) -> Any:
            response = answer(request, context)
            if self._take(request.name):
                self.arrived.set()
                self.release.wait(timeout=120)
            return response

        return grpc.unary_unary_rpc_method_handler(
            held,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@contextmanager
def private_secret_manager(interceptor: grpc.ServerInterceptor) -> Iterator[str]:
    """A Secret Manager stand-in of this test's own (the shared one has no way to hold a
    call), with ``interceptor`` in front; yields its gRPC address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), interceptors=[interceptor])
    server.add_generic_rpc_handlers((SecretManagerEmulator().generic_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


def store_at(address: str, project: str) -> SecretStore:
    """A SecretStore on the stand-in at ``address`` (not the one the environment names)."""
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(address)
    client = secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel)
    )
    return SecretStore(project, client)


# --- Pub/Sub deliveries -----------------------------------------------------------------


def pubsub_event(
    data: dict[str, Any] | str | None = None,
    *,
    published: datetime | None = None,
    message_id: str | None = None,
) -> CloudEvent:
    """A CloudEvent as Eventarc delivers a Pub/Sub message; same ``message_id`` = redelivery."""
    raw = data if isinstance(data, str) else json.dumps({} if data is None else data)
    when = (published or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    ident = message_id or uuid.uuid4().hex
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/local-project/topics/b24-token-refresh-trigger",
            "id": ident,
            "time": when,
        },
        {
            "message": {
                "data": base64.b64encode(raw.encode()).decode(),
                "messageId": ident,
                "publishTime": when,
            }
        },
    )


def structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    headers, body = to_structured(event)
    return dict(headers), body if isinstance(body, bytes) else str(body).encode()


def post_event(client: Any, event: CloudEvent) -> int:
    headers, body = structured(event)
    return int(client.post("/", headers=headers, data=body).status_code)


# --- invariants ---------------------------------------------------------------------------


def check_consistent(world: B24World) -> str:
    """The stored state is whole, or says a person must act; returns which.

    Whole means: the stored refresh token is live and unused at the provider, the access
    token's latest version is exactly the one the provider issued together with it, and the
    status records that refresh-token version. A state that is not whole (a run died between
    its writes) is accepted only when the status makes the next run refresh.
    """
    status = world.status()
    refresh = world.store.read(world.refresh_secret)
    if status.state == "needs-reauth":
        assert status.last_error, "needs-reauth without last-error"
        return "needs-reauth"
    grant = world.fake.grants.get(refresh.value)
    issued = grant is not None
    assert issued, "the stored refresh token was never issued by the provider"
    assert grant is not None  # for the type checker; already checked above
    spent = bool(grant.used)
    whole = status.refresh_token_version == refresh.version
    if not whole:
        decision = decide(
            status,
            now=datetime.now(UTC),
            margin=timedelta(minutes=35),
            refresh_token_version=refresh.version,
        )
        assert decision.refresh, f"half-written state not repaired: {decision.reason}"
        assert not spent, "the stored refresh token is spent and nobody is told"
        return "repair-due"
    assert not spent, "the stored refresh token was already spent"
    access = world.access_token()
    # Compared into booleans first: a failing assert must not print a token.
    issued_together = access is not None and access == grant.access_token
    assert issued_together, "the access token stored is not the one issued with the refresh token"
    live = access in world.fake.live_access_tokens
    assert live, "the access token stored is not live at the provider"
    assert status.state == "ok"
    return "whole"


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def summaries(text: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(text) if line.get("event") == "run_summary"]
