"""Fuzz the two public HTTP endpoints with generated requests, on the local stack.

    python -m devtools.fuzz --endpoint graph --requests 10000
    python -m devtools.fuzz --endpoint universign --requests 10000 --json out.json

Each endpoint (Graph ``graph_webhook_notify``, Universign ``universign_webhook``; described in
api/openapi.yaml) is served in this process by functions-framework's Flask app and receives
requests that hypothesis generates: methods, query strings, content types, extra headers,
bodies (JSON shaped like the real payloads with forged or near-miss secrets, arbitrary JSON,
raw bytes, non-UTF-8, empty, just over the size limit) and signatures (garbage, JWS-shaped,
signed by a key not in the key set under the real key id, the real key over other bytes,
``alg`` none or HMAC). The fuzzer never sends a valid signature or clientState.

Pass criteria: 0 responses 5xx, 0 unhandled exceptions (an exception escaping the test client
or a log record carrying a traceback), and afterwards nothing published on the endpoint's
topics and nothing stored in its buckets. A positive control then sends one genuine request
and checks that it *is* published, so "nothing published" cannot pass by accident.

Without the emulator variables in the environment the command starts its own stack (Pub/Sub,
fake-gcs-server, the Secret Manager stand-in) and stops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parent.parent
GRAPH_SOURCE = REPO_ROOT / "functions" / "graph_webhook_renew" / "main.py"
UNIVERSIGN_SOURCE = REPO_ROOT / "functions" / "universign_webhook" / "main.py"
ENDPOINTS = ("graph", "universign")
MAX_EXAMPLES_SHOWN = 5


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def describe(self, limit: int = 300) -> str:
        body = self.body[:limit].decode("utf-8", "replace")
        more = f"... ({len(self.body)} bytes)" if len(self.body) > limit else ""
        return (
            f"{self.method} /?{self.query[:100]} headers={dict(self.headers)!r:.300} "
            f"body={body!r}{more}"
        )


# Header values must be latin-1 without CR/LF to be sendable at all; names are HTTP tokens.
_HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=200,
)
_HEADER_NAME = st.from_regex(r"\A[A-Za-z][A-Za-z0-9\-]{0,30}\Z")
_LISTED_CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 16
    + [
        None,
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/cloudevents+json",
        "application/octet-stream",
        "application/json-patch+json",
        "",
    ]
)
# Mostly listed types (so bodies get past the content-type check), sometimes any text.
_CONTENT_TYPES = st.one_of(
    _LISTED_CONTENT_TYPES,
    _LISTED_CONTENT_TYPES,
    _LISTED_CONTENT_TYPES,
    _HEADER_TEXT.map(lambda s: s.strip()),
)
_METHODS = st.sampled_from(["POST"] * 24 + ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
_SMALL_TEXT = st.text(max_size=40)
_JSON_SCALAR = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60)
)
_ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    _JSON_SCALAR,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=20,
)


def _query() -> st.SearchStrategy[str]:
    pair = st.tuples(
        st.sampled_from(["validationToken", "token", "x", "validationtoken", "", "a[b]"])
        | _SMALL_TEXT,
        st.text(max_size=80),
    )

    def encode(pairs: list[tuple[str, str]], raw: bool) -> str:
        from urllib.parse import quote

        if raw:
            return "&".join(f"{k}={v}" for k, v in pairs)
        return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)

    return st.one_of(
        st.just(""),
        st.builds(encode, st.lists(pair, max_size=4), st.booleans()),
        st.integers(4000, 5000).map(lambda n: f"validationToken={'A' * n}"),
        st.sampled_from(["%", "%zz", "validationToken=%ff%fe", "=&=&", "validationToken"]),
    )


def _extra_headers() -> st.SearchStrategy[list[tuple[str, str]]]:
    known = st.sampled_from(
        [
            "X-Cloud-Trace-Context",
            "traceparent",
            "Content-Encoding",
            "Accept",
            "X-Forwarded-For",
            "Authorization",
            "Transfer-Encoding-X",
        ]
    )
    return st.lists(st.tuples(known | _HEADER_NAME, _HEADER_TEXT), max_size=4)


def _big_body(size: int) -> bytes:
    """A JSON-looking body of exactly ``size`` bytes (built, not generated, so it is cheap)."""
    head, tail = b'{"value":[{"subscriptionId":"s","changeType":"created","pad":"', b'"}]}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def _request(
    bodies: st.SearchStrategy[bytes],
    extra: st.SearchStrategy[list[tuple[str, str]]],
    max_bytes: int,
) -> st.SearchStrategy[FuzzRequest]:
    sized = st.sampled_from([max_bytes - 64, max_bytes + 1, max_bytes * 2]).map(_big_body)
    body = st.one_of(
        bodies,
        bodies,
        bodies,
        st.binary(max_size=300),
        st.just(b""),
        st.text(max_size=200).map(lambda s: s.encode("utf-16")),
        sized,
    )

    def build(
        method: str,
        query: str,
        content_type: str | None,
        headers: list[tuple[str, str]],
        more: list[tuple[str, str]],
        payload: bytes,
    ) -> FuzzRequest:
        all_headers = [("Content-Type", content_type)] if content_type is not None else []
        return FuzzRequest(method, query, tuple(all_headers + headers + more), payload)

    return st.builds(build, _METHODS, _query(), _CONTENT_TYPES, _extra_headers(), extra, body)


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SIGNATURE_KINDS = st.sampled_from(
    [
        "none",
        "empty",
        "attacker key, real kid",
        "real key, other bytes",
        "attacker key, own kid",
        "attached payload",
        "alg none",
        "alg HS256",
        "b64 false",
        "crit",
        "random header",
        "too long",
        "text",
    ]
)

# --------------------------------------------------------------------------- outcome


@dataclass
class FuzzResult:
    endpoint: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)
    published: int = 0
    stored: list[str] = field(default_factory=list)
    provider_calls: int = 0
    positive_control: str = "not run"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.server_errors
            and not self.unhandled
            and self.published == 0
            and not self.stored
            and self.provider_calls == 0
            and self.positive_control == "ok"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "responses_5xx": len(self.server_errors),
            "unhandled_exceptions": len(self.unhandled),
            "published_without_valid_secret": self.published,
            "stored_without_valid_secret": len(self.stored),
            "provider_calls": self.provider_calls,
            "positive_control": self.positive_control,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(self.seconds, 1),
            "requests_per_second": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "examples_5xx": self.server_errors[:MAX_EXAMPLES_SHOWN],
            "examples_unhandled": self.unhandled[:MAX_EXAMPLES_SHOWN],
            "examples_stored": self.stored[:MAX_EXAMPLES_SHOWN],
            "passed": self.ok,
        }


class _Recorder(logging.Handler):
    """Keeps log records that carry a traceback (an exception the code did not expect)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.tracebacks: list[str] = []
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        if record.exc_info or record.exc_text:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
            self.tracebacks.append(f"{record.getMessage()[:200]}\n{text[-1500:]}")


@contextlib.contextmanager
def _captured_logs(verbose: bool) -> Iterator[_Recorder]:
    """Route every log record to a recorder; the functions' stdout handlers are muted unless
    ``verbose`` (ten thousand requests would print tens of thousands of lines)."""
    root = logging.getLogger()
    recorder = _Recorder()
    muted = [] if verbose else [h for h in root.handlers if type(h).__name__ == "_StdoutHandler"]
    for handler in muted:
        root.removeHandler(handler)
    root.addHandler(recorder)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        for handler in muted:
            root.addHandler(handler)


# --------------------------------------------------------------------------- endpoints


class Endpoint(Protocol):
    name: str
    max_bytes: int

    def app_client(self) -> Any: ...
    def requests(self) -> st.SearchStrategy[FuzzRequest]: ...
    def check_after(self, result: FuzzResult) -> None: ...
    def positive_control(self, client: Any) -> str: ...


def _pull_count(subscription: str) -> int:
    """Messages waiting on a pull subscription (acknowledged as they are counted)."""
    from devtools import gcp

    subscriber = gcp.subscriber()
    total = 0
    try:
        for _ in range(3):
            response = subscriber.pull(
                request={"subscription": subscription, "max_messages": 1000},
                timeout=5,
            )
            if not response.received_messages:
                break
            total += len(response.received_messages)
            subscriber.acknowledge(
                request={
                    "subscription": subscription,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
    except Exception as error:
        if "Deadline" not in type(error).__name__:
            raise
    finally:
        subscriber.close()
    return total


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _create_app(target: str, source: Path) -> Any:
    import functions_framework

    return functions_framework.create_app(target, str(source)).test_client()  # type: ignore[no-untyped-call]


class GraphEndpoint:
    """``graph_webhook_notify``: validation handshake and change notifications."""

    name = "graph"

    def __init__(self, env: dict[str, str]) -> None:
        from devtools import gcp
        from shared.secrets import SecretStore

        self.project = env.get("GOOGLE_CLOUD_PROJECT") or os.environ["GOOGLE_CLOUD_PROJECT"]
        self.client_state = secrets.token_urlsafe(48)
        self.secret_id = _unique("fuzz-graph-client-state")
        store = SecretStore(self.project)
        store.create(self.secret_id)
        store.add_version(self.secret_id, self.client_state)
        self.topics = {"notifications": _unique("fuzz-graph-notes"), "renew": _unique("fuzz-renew")}
        self.subscriptions = {}
        for role, topic in self.topics.items():
            gcp.create_topic(self.project, topic)
            self.subscriptions[role] = gcp.create_subscription(
                self.project, topic, _unique("fuzz-sub")
            )
        self.max_bytes = 1_000_000
        self.env = {
            "GRAPH_CLIENT_STATE_SECRET": self.secret_id,
            "GRAPH_NOTIFICATIONS_TOPIC": self.topics["notifications"],
            "GRAPH_RENEW_TOPIC": self.topics["renew"],
            "GRAPH_NOTIFY_MAX_BYTES": str(self.max_bytes),
        }

    def app_client(self) -> Any:
        os.environ.update(self.env)
        return _create_app("graph_webhook_notify", GRAPH_SOURCE)

    def _forged_states(self) -> st.SearchStrategy[Any]:
        real = self.client_state
        near = [
            real[:-1],
            real + "x",
            real.upper(),
            " " + real,
            real + "\n",
            real[::-1],
            real.replace(real[0], "\u0430", 1),  # a Cyrillic look-alike first letter
            "",
        ]
        return st.sampled_from(near) | _JSON_SCALAR | st.text(max_size=140)

    def _item(self) -> st.SearchStrategy[Any]:
        forged = st.fixed_dictionaries(
            {
                "subscriptionId": st.text(min_size=1, max_size=40) | _JSON_SCALAR,
                "clientState": self._forged_states(),
            },
            optional={
                "changeType": st.sampled_from(["created", "updated", "deleted"]) | _SMALL_TEXT,
                "lifecycleEvent": st.sampled_from(
                    ["reauthorizationRequired", "subscriptionRemoved", "missed", "other"]
                ),
                "resource": _SMALL_TEXT,
                "tenantId": _SMALL_TEXT,
                "subscriptionExpirationDateTime": _SMALL_TEXT,
                "resourceData": _ANY_JSON,
            },
        )
        # The real clientState on an item that is malformed anyway: still nothing published.
        broken = st.fixed_dictionaries(
            {
                "subscriptionId": st.sampled_from(["", None, 7, ["x"], "s" * 257]),
                "clientState": st.just(self.client_state),
                "changeType": st.just("created"),
            }
        )
        return st.one_of(forged, forged, broken, _ANY_JSON)

    def requests(self) -> st.SearchStrategy[FuzzRequest]:
        item = self._item()
        shaped = st.one_of(
            st.builds(lambda v: {"value": v}, st.lists(item, max_size=6)),
            st.builds(lambda v: {"value": v}, _ANY_JSON),
            _ANY_JSON,
            st.integers(100, 3000).map(
                lambda n: {"value": [{"subscriptionId": "s", "clientState": "x"}] * n}
            ),
        )
        bodies = shaped.map(lambda v: json.dumps(v).encode("utf-8"))
        return _request(bodies, st.just([]), self.max_bytes)

    def check_after(self, result: FuzzResult) -> None:
        result.published = sum(_pull_count(s) for s in self.subscriptions.values())

    def positive_control(self, client: Any) -> str:
        body = {
            "value": [
                {
                    "subscriptionId": "fuzz-control",
                    "clientState": self.client_state,
                    "changeType": "created",
                    "resource": "users/u/messages/m",
                }
            ]
        }
        answer = client.post("/", json=body)
        if answer.status_code != 202:
            return f"genuine notification answered {answer.status_code}"
        published = _pull_count(self.subscriptions["notifications"])
        return "ok" if published == 1 else f"genuine notification published {published} times"


class UniversignEndpoint:
    """``universign_webhook``: JWS-signed events (PS256, detached payload)."""

    name = "universign"

    def __init__(self, env: dict[str, str]) -> None:
        from devtools import gcp
        from devtools.fakes.universign import SigningKey, UniversignFake
        from shared.secrets import SecretStore

        self.project = env.get("GOOGLE_CLOUD_PROJECT") or os.environ["GOOGLE_CLOUD_PROJECT"]
        self.fake = UniversignFake()
        self.fake.start()
        self.attacker = SigningKey.generate()
        self.state_bucket, self.archive_bucket = _unique("fuzz-uni-state"), _unique("fuzz-uni-arc")
        self.state = gcp.create_bucket(self.state_bucket, project=self.project)
        self.archive = gcp.create_bucket(self.archive_bucket, project=self.project)
        key_secret = _unique("fuzz-universign-api-key")
        store = SecretStore(self.project)
        store.create(key_secret)
        store.add_version(key_secret, self.fake.api_key)
        self.topic = _unique("fuzz-universign-status")
        gcp.create_topic(self.project, self.topic)
        self.subscription = gcp.create_subscription(self.project, self.topic, _unique("fuzz-sub"))
        self.max_bytes = 262_144
        self.env = {
            "STATE_BUCKET": self.state_bucket,
            "ARCHIVE_BUCKET": self.archive_bucket,
            "UNIVERSIGN_API_URL": self.fake.url,
            "UNIVERSIGN_API_KEY_SECRET": key_secret,
            "UNIVERSIGN_STATUS_TOPIC": self.topic,
            "UNIVERSIGN_WEBHOOK_MAX_BYTES": str(self.max_bytes),
            "HTTP_ATTEMPTS": "2",
            "FUNCTION_TARGET": "universign_webhook",
        }
        # A real transaction, so forged events can name something that exists.
        self.transaction = self.fake.create_transaction(state="started").id

    def app_client(self) -> Any:
        os.environ.update(self.env)
        return _create_app("universign_webhook", UNIVERSIGN_SOURCE)

    def _event(self) -> st.SearchStrategy[Any]:
        tx = st.sampled_from([self.transaction, "tx_0000", "tx_" + "a" * 300]) | _SMALL_TEXT
        kinds = st.sampled_from(
            [
                "transaction.lifecycle.completed",
                "transaction.lifecycle.started",
                "action.stalled",
                "apikey.created",
                "",
            ]
        )
        shaped = st.fixed_dictionaries(
            {"object": st.just("event"), "type": kinds | _SMALL_TEXT},
            optional={
                "id": st.sampled_from(["evt_1", "evt_" + "f" * 40]) | _JSON_SCALAR,
                "createdAt": st.integers() | _JSON_SCALAR,
                "payload": st.fixed_dictionaries(
                    {
                        "object": st.fixed_dictionaries(
                            {"object": st.just("transaction"), "id": tx},
                            optional={"state": _SMALL_TEXT, "reason": _SMALL_TEXT},
                        )
                        | _ANY_JSON
                    }
                )
                | _ANY_JSON,
                "transaction": tx,
            },
        )
        return st.one_of(shaped, shaped, _ANY_JSON)

    def _signature(self, kind: str, body: bytes, draw: st.DrawFn) -> str | None:
        """One adversarial signature of the given kind; RSA work only for the kind drawn."""
        from devtools.fakes.universign import b64url

        real, attacker = self.fake.key, self.attacker

        def header(fields: dict[str, Any]) -> str:
            return b64url(json.dumps(fields).encode())

        if kind == "none":
            return None
        if kind == "empty":
            return ""
        if kind == "attacker key, real kid":
            return attacker.sign(body, kid=real.kid)
        if kind == "real key, other bytes":
            return real.sign(body + b" ")  # same JSON meaning, different bytes
        if kind == "attacker key, own kid":
            return attacker.sign(body)
        if kind == "attached payload":
            forged = attacker.sign(body, kid=real.kid).split("..")[0]
            return f"{forged}.{b64url(body)}.{b64url(b'x' * 256)}"
        if kind == "alg none":
            return f"{header({'alg': 'none', 'kid': real.kid})}.."
        if kind == "alg HS256":
            return f"{header({'alg': 'HS256', 'kid': real.kid})}..{b64url(b'sig')}"
        if kind == "b64 false":
            return f"{header({'alg': 'PS256', 'kid': real.kid, 'b64': False})}..{b64url(b'0')}"
        if kind == "crit":
            return f"{header({'alg': 'PS256', 'kid': real.kid, 'crit': ['b64']})}..AAAA"
        if kind == "random header":
            fields = draw(_ANY_JSON)
            tail = draw(st.text(_B64URL_ALPHABET, max_size=400))
            return f"{b64url(json.dumps(fields).encode())}..{tail}"
        if kind == "too long":
            return "A" * draw(st.integers(8000, 9000))
        text: str = draw(_HEADER_TEXT)
        return text

    def requests(self) -> st.SearchStrategy[FuzzRequest]:
        bodies = self._event().map(lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"))
        names = st.sampled_from(["X-JWS-Signature", "X-Universign-Signature", "x-jws-signature"])

        @st.composite
        def signed(draw: st.DrawFn) -> FuzzRequest:
            request = draw(_request(bodies, st.just([]), self.max_bytes))
            signature = self._signature(draw(_SIGNATURE_KINDS), request.body, draw)
            if signature is None:
                return request
            extra = ((draw(names), signature),)
            return FuzzRequest(request.method, request.query, request.headers + extra, request.body)

        return signed()

    def check_after(self, result: FuzzResult) -> None:
        result.published = _pull_count(self.subscription)
        result.stored = [b.name for b in self.state.list_blobs()] + [
            b.name for b in self.archive.list_blobs()
        ]
        from devtools.fakes.universign import JWKS_ROUTE

        # Fetching the public key set is allowed; any other API call means a forged event
        # made it past the signature check.
        with self.fake.lock:
            result.provider_calls = sum(1 for _, name in self.fake.calls if name != JWKS_ROUTE)

    def positive_control(self, client: Any) -> str:
        self.fake.set_state(self.transaction, "completed")
        event = self.fake.event(self.transaction)
        body = self.fake.encode(event)
        answer = client.post(
            "/",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-JWS-Signature": self.fake.key.sign(body),
            },
        )
        if answer.status_code != 200:
            return f"genuine event answered {answer.status_code}: {answer.get_data(as_text=True)}"
        published = _pull_count(self.subscription)
        stored = list(self.state.list_blobs(prefix=f"universign/transactions/{self.transaction}"))
        if published < 1 or not stored:
            return f"genuine event: published {published}, documents {len(stored)}"
        return "ok"

    def close(self) -> None:
        self.fake.stop()


# --------------------------------------------------------------------------- running


def make_endpoint(name: str) -> GraphEndpoint | UniversignEndpoint:
    if name == "graph":
        return GraphEndpoint(dict(os.environ))
    if name == "universign":
        if not UNIVERSIGN_SOURCE.is_file():
            raise FileNotFoundError(f"{UNIVERSIGN_SOURCE.relative_to(REPO_ROOT)} is missing")
        return UniversignEndpoint(dict(os.environ))
    raise ValueError(f"unknown endpoint {name!r}; choose from {ENDPOINTS}")


def send(client: Any, request: FuzzRequest) -> int:
    response = client.open(
        "/",
        method=request.method,
        query_string=request.query,
        headers=list(request.headers),
        data=request.body,
    )
    status = int(response.status_code)
    response.close()
    return status


def fuzz(
    endpoint: GraphEndpoint | UniversignEndpoint,
    count: int,
    *,
    seed: int | None = None,
    verbose: bool = False,
    progress: Callable[[int], None] | None = None,
) -> FuzzResult:
    """Send ``count`` generated requests; the stack must be up and its variables set."""
    result = FuzzResult(endpoint.name)
    client = endpoint.app_client()
    started = time.monotonic()
    with _captured_logs(verbose) as recorder:

        @settings(
            max_examples=count,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(endpoint.requests())
        def one(request: FuzzRequest) -> None:
            if result.requests >= count:
                return
            result.requests += 1
            before = len(recorder.tracebacks)
            try:
                status = send(client, request)
            except Exception as error:  # noqa: BLE001 - this is what we are counting
                result.unhandled.append(f"{type(error).__name__}: {error} <- {request.describe()}")
                return
            result.statuses[status] += 1
            if status >= 500:
                result.server_errors.append(f"HTTP {status} <- {request.describe()}")
            for trace in recorder.tracebacks[before:]:
                result.unhandled.append(f"{trace} <- {request.describe()}")
            if progress is not None and result.requests % 1000 == 0:
                progress(result.requests)

        if seed is not None:
            one = fixed_seed(seed)(one)
        # Hypothesis may stop a little short of max_examples once it has seen enough
        # duplicates; top up until the count is reached.
        for _ in range(5):
            if result.requests >= count:
                break
            one()
        result.seconds = time.monotonic() - started
        endpoint.check_after(result)
        result.positive_control = endpoint.positive_control(client)
    return result


@contextlib.contextmanager
def local_stack() -> Iterator[None]:
    """Use the emulators named in the environment, or start them for the duration."""
    needed = ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "SECRET_MANAGER_EMULATOR_HOST")
    if all(os.environ.get(v) for v in needed):
        os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "local-project")
        yield
        return
    from devtools.stack import Stack

    with tempfile.TemporaryDirectory(prefix="fuzz-stack-") as logs, Stack(logs) as stack:
        stack.start(["pubsub", "gcs", "secretmanager"])
        os.environ.update(stack.env())
        yield


def _progress(name: str) -> Callable[[int], None]:
    def report(done: int) -> None:
        print(f"{name}: {done} requests", file=sys.stderr)

    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--endpoint", choices=[*ENDPOINTS, "all"], default="all")
    parser.add_argument("--requests", type=int, default=10_000, help="per endpoint")
    parser.add_argument("--seed", type=int, help="reproducible generation")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true", help="print the functions' logs")
    args = parser.parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    names = list(ENDPOINTS) if args.endpoint == "all" else [args.endpoint]
    summaries: list[dict[str, Any]] = []
    with local_stack():
        for name in names:
            try:
                endpoint = make_endpoint(name)
            except FileNotFoundError as missing:
                print(f"{name}: skipped, {missing}", file=sys.stderr)
                summaries.append({"endpoint": name, "skipped": str(missing), "passed": True})
                continue
            try:
                result = fuzz(
                    endpoint,
                    args.requests,
                    seed=args.seed,
                    verbose=args.verbose,
                    progress=_progress(name),
                )
            finally:
                if isinstance(endpoint, UniversignEndpoint):
                    endpoint.close()
            summaries.append(result.summary())
            print(json.dumps(result.summary(), indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2) + "\n")
    return 0 if all(s["passed"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
