"""Fuzz the two public HTTP endpoints and one Pub/Sub function with generated requests, on the
local stack.

    python -m devtools.fuzz --endpoint all --requests 10000
    python -m devtools.fuzz --endpoint universign --requests 10000 --json out.json

Each HTTP endpoint (Graph ``graph_webhook_notify``, Universign ``universign_webhook``; described
in api/openapi.yaml) is served in this process by functions-framework's Flask app and receives
requests that hypothesis generates: methods, query strings, content types, extra headers,
bodies (JSON shaped like the real payloads with forged or near-miss secrets, arbitrary JSON,
raw bytes, non-UTF-8, empty, just over the size limit) and signatures (garbage, JWS-shaped,
signed by a key not in the key set under the real key id, the real key over other bytes,
``alg`` none or HMAC). The fuzzer never sends a valid signature, nor a genuine clientState
except in a body that a pathological fragment makes unusable as a whole.

Pathological JSON (``PATHOLOGIES``: nesting deeper than any payload, integers past Python's
4,300-digit limit, lone surrogates, invalid UTF-8, NaN/Infinity/1e999) is placed in every JSON
position (the whole document, an object value, an array element, an object key) of bodies,
of the Universign signature's protected header, and of Pub/Sub data and attributes.

The Pub/Sub function (``b24``: ``b24_token_refresh``, the main job) is fed CloudEvents as
Eventarc delivers them, structured or binary, each unusable: pathological data, attributes
Pub/Sub never sends, data that is not base64, a publish time out of range, or a message older
than EVENT_MAX_AGE_MINUTES (whatever its data). Each must be acknowledged (HTTP 200), logged as
a WARNING naming its message id, and its payload (a canary string) never logged.

Pass criteria: 0 responses 5xx, 0 unhandled exceptions (an exception escaping the test client
or a log record carrying a traceback), 0 failed per-request checks (the Pub/Sub ones above),
and afterwards nothing published on the endpoint's topics, nothing stored in its buckets or
secrets and no provider called. A positive control then sends one genuine request and checks
that it *is* acted on, so "nothing published" cannot pass by accident.

Without the emulator variables in the environment the command starts its own stack (Pub/Sub,
fake-gcs-server, the Secret Manager stand-in) and stops it at the end.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parent.parent
GRAPH_SOURCE = REPO_ROOT / "functions" / "graph_webhook_renew" / "main.py"
UNIVERSIGN_SOURCE = REPO_ROOT / "functions" / "universign_webhook" / "main.py"
B24_SOURCE = REPO_ROOT / "functions" / "b24_token_refresh" / "main.py"
ENDPOINTS = ("graph", "universign", "b24")
MAX_EXAMPLES_SHOWN = 5


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # What the request tries ("generated", or a pathology and where it sits), for the summary.
    kind: str = "generated"
    # Pub/Sub only: the message id the function's WARNING must name.
    message_id: str = ""

    def describe(self, limit: int = 300) -> str:
        body = self.body[:limit].decode("utf-8", "replace")
        more = f"... ({len(self.body)} bytes)" if len(self.body) > limit else ""
        return (
            f"[{self.kind}] {self.method} /?{self.query[:100]} "
            f"headers={dict(self.headers)!r:.300} body={body!r}{more}"
        )


T = TypeVar("T")


def _weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of the strategies, in proportion to its weight: ``st.one_of`` counts a strategy
    listed several times only once, so repeating it does not weight it."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


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
_CONTENT_TYPES = _weighted((3, _LISTED_CONTENT_TYPES), (1, _HEADER_TEXT.map(lambda s: s.strip())))
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
    body = _weighted(
        (3, bodies),
        (1, st.binary(max_size=300)),
        (1, st.just(b"")),
        (1, st.text(max_size=200).map(lambda s: s.encode("utf-16"))),
        (1, sized),
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

# --------------------------------------------------------------------------- pathological JSON

# The classes of input that make json.loads raise something other than JSONDecodeError, or
# return what later code cannot encode or pass on (issue 18). Every one is refused by
# shared/safe_json.py wherever it sits, so a request carrying one must never be acted on.
PATHOLOGIES = (
    "deep nesting",
    "huge integer",
    "lone surrogate",
    "invalid UTF-8",
    "not a finite number",
)
# Only strings can be object keys.
_KEY_PATHOLOGIES = ("lone surrogate", "invalid UTF-8")
_MARK = "fuzz-pathology-mark"
_INT_DIGITS_LIMIT = sys.get_int_max_str_digits()


@st.composite
def _deep_nesting(draw: st.DrawFn, max_depth: int = 50_000) -> bytes:
    """Arrays, objects or both, from just past safe_json's limit (33) to far past the
    interpreter's recursion limit; sometimes never closed."""
    depth = draw(
        st.sampled_from([d for d in (33, 100, 999, 1000, 1001, 3000) if d <= max_depth])
        | st.integers(33, max_depth)
    )
    leaf = draw(st.sampled_from([b"1", b"{}", b"[]", b'"x"', b"null"]))
    opening, closing = draw(
        st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"k":', b"}]"), (b'{"":[', b"]}")])
    )
    tail = b"" if draw(st.integers(0, 9)) == 0 else closing * depth
    return opening * depth + leaf + tail


def _huge_integer() -> st.SearchStrategy[bytes]:
    digits = st.sampled_from([_INT_DIGITS_LIMIT + 1, 10_000]) | st.integers(
        _INT_DIGITS_LIMIT + 1, 60_000
    )
    return st.builds(
        lambda sign, first, n: sign + first + b"0" * (n - 1),
        st.sampled_from([b"", b"-"]),
        st.sampled_from([b"1", b"7", b"9"]),
        digits,
    )


def _lone_surrogate() -> st.SearchStrategy[bytes]:
    """A JSON string with a \\uD800-\\uDFFF escape that pairs with nothing."""
    code = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}")
    upper = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04X}")
    escape = st.one_of(
        code,
        upper,
        st.just("\\ud83d\\u0041"),  # a high surrogate followed by a plain character
        st.just("\\ude00\\ud83d"),  # a pair in the wrong order
    )
    return st.builds(
        lambda before, middle, after: f'"{before}{middle}{after}"'.encode(),
        st.sampled_from(["", "sub-", "x" * 40]),
        escape,
        st.sampled_from(["", "-tail"]),
    )


def _invalid_utf8() -> st.SearchStrategy[bytes]:
    broken = st.sampled_from(
        [
            b"\xff",
            b"\xfe\xff",
            b"\x80",
            b"\xc3",  # a sequence cut short
            b"\xc3(",
            b"\xe2\x82",
            b"\xed\xa0\x80",  # a surrogate encoded as if UTF-8 allowed it
            b"\xc0\xaf",  # an overlong encoding
            b"\xf8\x88\x80\x80\x80",
        ]
    )
    return st.builds(lambda b, quoted: b'"' + b + b'"' if quoted else b, broken, st.booleans())


_NOT_FINITE = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1E400"])


def _fragment(pathology: str, *, max_depth: int = 50_000) -> st.SearchStrategy[bytes]:
    if pathology == "deep nesting":
        return _deep_nesting(max_depth)
    if pathology == "huge integer":
        return _huge_integer()
    if pathology == "lone surrogate":
        return _lone_surrogate()
    if pathology == "invalid UTF-8":
        return _invalid_utf8()
    return _NOT_FINITE


def _place_mark(draw: st.DrawFn, value: Any, as_key: bool) -> tuple[Any, str]:
    """``value`` with the mark put somewhere in it, and where: the whole document, an object
    value, an array element or an object key, at any depth."""
    if not isinstance(value, dict | list) or (not as_key and draw(st.integers(0, 5)) == 0):
        return ({_MARK: value}, "object key") if as_key else (_MARK, "whole document")
    root = node = value
    while True:
        children = node.values() if isinstance(node, dict) else node
        containers = [c for c in children if isinstance(c, dict | list)]
        if not containers or draw(st.booleans()):
            break
        node = draw(st.sampled_from(containers))
    if isinstance(node, list):
        if as_key:
            node.append({_MARK: 0})
            return root, "object key"
        node.insert(draw(st.integers(0, len(node))), _MARK)
        return root, "array element"
    if as_key:
        node[_MARK] = 0
        return root, "object key"
    keys = sorted(node)
    replace_one = bool(keys) and draw(st.booleans())
    node[draw(st.sampled_from(keys)) if replace_one else "fuzz"] = _MARK
    return root, "object value"


@st.composite
def _pathological_json(
    draw: st.DrawFn, shaped: st.SearchStrategy[Any], max_depth: int = 50_000
) -> tuple[str, bytes]:
    """A value shaped like the real payload with one pathological fragment in it, and a label
    naming the pathology and its position."""
    pathology = draw(st.sampled_from(PATHOLOGIES))
    fragment = draw(_fragment(pathology, max_depth=max_depth))
    as_key = pathology in _KEY_PATHOLOGIES and fragment.startswith(b'"') and draw(st.booleans())
    value, position = _place_mark(draw, copy.deepcopy(draw(shaped)), as_key)
    text = json.dumps(value).encode("utf-8")
    return f"{pathology} as {position}", text.replace(json.dumps(_MARK).encode(), fragment, 1)


def _pathological_request(
    label: str, documents: st.SearchStrategy[tuple[str, bytes]]
) -> st.SearchStrategy[FuzzRequest]:
    """A POST a webhook sender would make (JSON content type, any extra headers) whose body is
    pathological JSON, so that it reaches the decoder."""
    content_type = st.sampled_from(["application/json", "application/json; charset=utf-8"])

    def build(
        document: tuple[str, bytes], ctype: str, headers: list[tuple[str, str]]
    ) -> FuzzRequest:
        kind, body = document
        return FuzzRequest(
            "POST", "", (("Content-Type", ctype), *headers), body, f"{label}: {kind}"
        )

    return st.builds(build, documents, content_type, _extra_headers())


# --------------------------------------------------------------------------- outcome


@dataclass
class FuzzResult:
    endpoint: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
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
            and not self.failed_checks
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
            "failed_checks": len(self.failed_checks),
            "published_without_valid_secret": self.published,
            "stored_without_valid_secret": len(self.stored),
            "provider_calls": self.provider_calls,
            "positive_control": self.positive_control,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "inputs": dict(sorted(Counter(k.split(":")[0] for k in self.kinds.elements()).items())),
            "pathological_inputs": self.pathologies(),
            "seconds": round(self.seconds, 1),
            "requests_per_second": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "examples_5xx": self.server_errors[:MAX_EXAMPLES_SHOWN],
            "examples_unhandled": self.unhandled[:MAX_EXAMPLES_SHOWN],
            "examples_failed_checks": self.failed_checks[:MAX_EXAMPLES_SHOWN],
            "examples_stored": self.stored[:MAX_EXAMPLES_SHOWN],
            "passed": self.ok,
        }

    def pathologies(self) -> dict[str, int]:
        """Requests sent per pathology (``PATHOLOGIES``), wherever it sat."""
        return {
            p: sum(n for kind, n in self.kinds.items() if f": {p} as " in kind) for p in PATHOLOGIES
        }


class _Recorder(logging.Handler):
    """Keeps log records that carry a traceback (an exception the code did not expect)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.tracebacks: list[str] = []
        self.lines = 0
        # (level, message) of the records since the last ``clear``: one request's lines.
        self.records: list[tuple[int, str]] = []

    def clear(self) -> None:
        self.records.clear()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        self.records.append((record.levelno, record.getMessage()))
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

    def app_client(self) -> Any: ...
    def requests(self, *, pathological_only: bool = False) -> st.SearchStrategy[FuzzRequest]: ...
    def check_request(
        self, request: FuzzRequest, status: int, records: list[tuple[int, str]]
    ) -> str | None: ...
    def check_after(self, result: FuzzResult) -> None: ...
    def positive_control(self, client: Any) -> str: ...
    def close(self) -> None: ...


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


def _create_app(target: str, source: Path, signature_type: str = "http") -> Any:
    import functions_framework

    app = functions_framework.create_app(target, str(source), signature_type)  # type: ignore[no-untyped-call]
    return app.test_client()


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
        return _weighted((2, forged), (1, broken), (1, _ANY_JSON))

    def _genuine_batch(self) -> st.SearchStrategy[dict[str, Any]]:
        """A batch with one notification carrying the real clientState among forged items:
        published as it stands, so a pathology the decoder let through would show."""
        genuine = st.fixed_dictionaries(
            {
                "subscriptionId": st.text("abcdef0123456789-", min_size=1, max_size=36),
                "clientState": st.just(self.client_state),
                "changeType": st.sampled_from(["created", "updated", "deleted"]),
                "resource": st.just("users/u/messages/m"),
                "tenantId": st.just("tenant-1"),
            },
            optional={"resourceData": st.fixed_dictionaries({"id": _SMALL_TEXT})},
        )
        return st.builds(
            lambda g, others, at: {"value": [*others[:at], g, *others[at:]]},
            genuine,
            st.lists(self._item(), max_size=3),
            st.integers(0, 3),
        )

    def requests(self, *, pathological_only: bool = False) -> st.SearchStrategy[FuzzRequest]:
        pathological = _pathological_request(
            "body", _pathological_json(self._genuine_batch() | _ANY_JSON)
        )
        if pathological_only:
            return pathological
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
        generated = _request(bodies, st.just([]), self.max_bytes)
        return _weighted((3, generated), (1, pathological))

    def check_request(
        self, request: FuzzRequest, status: int, records: list[tuple[int, str]]
    ) -> str | None:
        return None  # 5xx and tracebacks are what fuzz() counts for an HTTP endpoint

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

    def close(self) -> None:
        pass


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
        # The work topic the webhook queues verified events on (universign_sync is not run:
        # a forged event must not even be queued).
        self.sync_topic = _unique("fuzz-universign-sync")
        gcp.create_topic(self.project, self.sync_topic)
        self.sync_subscription = gcp.create_subscription(
            self.project, self.sync_topic, _unique("fuzz-sync-sub")
        )
        self.max_bytes = 262_144
        self.env = {
            "STATE_BUCKET": self.state_bucket,
            "ARCHIVE_BUCKET": self.archive_bucket,
            "UNIVERSIGN_API_URL": self.fake.url,
            "UNIVERSIGN_API_KEY_SECRET": key_secret,
            "UNIVERSIGN_STATUS_TOPIC": self.topic,
            "UNIVERSIGN_SYNC_TOPIC": self.sync_topic,
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
        return _weighted((2, shaped), (1, _ANY_JSON))

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

    def _protected_header(self) -> st.SearchStrategy[dict[str, Any]]:
        """A JWS protected header as Universign would send it (alg, kid), maybe with b64/crit."""
        return st.fixed_dictionaries(
            {"alg": st.just("PS256") | _SMALL_TEXT, "kid": st.just(self.fake.key.kid)},
            optional={"b64": st.booleans(), "crit": st.just(["b64"])},
        )

    def requests(self, *, pathological_only: bool = False) -> st.SearchStrategy[FuzzRequest]:
        from devtools.fakes.universign import b64url

        bodies = self._event().map(lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"))
        names = st.sampled_from(["X-JWS-Signature", "X-Universign-Signature", "x-jws-signature"])

        @st.composite
        def signed(draw: st.DrawFn, requests: st.SearchStrategy[FuzzRequest]) -> FuzzRequest:
            request = draw(requests)
            signature = self._signature(draw(_SIGNATURE_KINDS), request.body, draw)
            if signature is None:
                return request
            return replace(request, headers=(*request.headers, (draw(names), signature)))

        @st.composite
        def pathological_header(draw: st.DrawFn) -> FuzzRequest:
            """A well-formed event under a signature whose protected header is pathological
            JSON; it must be refused before any key is looked up."""
            body = draw(bodies)
            # Short enough that most headers stay under the 8192-character limit and reach
            # the JSON decoder; "[" nesting past 1000 is what raises RecursionError there.
            kind, header = draw(_pathological_json(self._protected_header(), max_depth=5000))
            tail = draw(st.text(_B64URL_ALPHABET, min_size=0, max_size=400))
            signature = f"{b64url(header)}..{tail}"
            return FuzzRequest(
                "POST",
                "",
                (("Content-Type", "application/json"), (draw(names), signature)),
                body,
                f"signature header: {kind}",
            )

        pathological = st.one_of(
            pathological_header(),
            signed(
                _pathological_request("body", _pathological_json(self._event(), max_depth=40_000))
            ),
        )
        if pathological_only:
            return pathological
        generated = signed(_request(bodies, st.just([]), self.max_bytes))
        return _weighted((3, generated), (1, pathological))

    def check_request(
        self, request: FuzzRequest, status: int, records: list[tuple[int, str]]
    ) -> str | None:
        return None  # 5xx and tracebacks are what fuzz() counts for an HTTP endpoint

    def check_after(self, result: FuzzResult) -> None:
        result.published = _pull_count(self.subscription) + _pull_count(self.sync_subscription)
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
        if answer.status_code != 202:
            return f"genuine event answered {answer.status_code}: {answer.get_data(as_text=True)}"
        queued = _pull_count(self.sync_subscription)
        if queued < 1:
            return f"genuine event: queued {queued} on the work topic"
        return "ok"

    def close(self) -> None:
        self.fake.stop()


class B24Endpoint:
    """``b24_token_refresh`` (the main job), fed CloudEvents as Eventarc delivers Pub/Sub
    messages, none of them usable: no message may refresh, store, lock or call Bitrix24."""

    name = "b24"
    # Put in the generated payloads; a log line that contains it quoted the payload.
    canary = "fuzz-canary-payload"

    def __init__(self, env: dict[str, str]) -> None:
        from devtools import gcp
        from devtools.fakes.bitrix24 import Bitrix24Fake, function_env, seed_secrets
        from shared.secrets import SecretStore

        self.project = env.get("GOOGLE_CLOUD_PROJECT") or os.environ["GOOGLE_CLOUD_PROJECT"]
        self.fake = Bitrix24Fake()
        self.fake.start()
        roles = ("client_id", "client_secret", "refresh_token", "access_token")
        self.secrets = {role: _unique(f"fuzz-b24-{role.replace('_', '-')}") for role in roles}
        self.store = SecretStore(self.project)
        seed_secrets(self.fake, self.store, self.secrets)
        self.bucket_name = _unique("fuzz-b24-state")
        self.bucket = gcp.create_bucket(self.bucket_name, project=self.project)
        self.max_age = timedelta(minutes=30)
        self.env = {
            **function_env(self.fake, self.secrets, self.bucket_name),
            "EVENT_MAX_AGE_MINUTES": str(int(self.max_age.total_seconds() // 60)),
            "FUNCTION_TARGET": "b24_token_refresh",
        }
        self.before = self._stored()

    def app_client(self) -> Any:
        os.environ.update(self.env)
        return _create_app("b24_token_refresh", B24_SOURCE, "cloudevent")

    def _stored(self) -> dict[str, Any]:
        """What a run would change: each secret's latest version and the status annotations."""
        stored: dict[str, Any] = {
            secret_id: self.store.latest_version(secret_id) for secret_id in self.secrets.values()
        }
        stored["status annotations"] = self.store.info(self.secrets["access_token"]).annotations
        return stored

    # The messages ------------------------------------------------------------------------

    def _triggers(self) -> st.SearchStrategy[Any]:
        """What the scheduler and people publish, some with the canary in them."""
        return st.one_of(
            st.sampled_from([{}, {"force": True}, {"force": False}]),
            st.fixed_dictionaries({"force": st.booleans(), "note": st.just(self.canary)}),
            st.fixed_dictionaries({self.canary: _ANY_JSON}),
        )

    def _attributes(self) -> st.SearchStrategy[tuple[str, Any]]:
        """Attributes Pub/Sub never sends (it sends string pairs), as JSON in the envelope can
        carry them: the envelope itself stays parseable by functions-framework."""
        text = st.sampled_from(["origin", "scheduler", self.canary])
        nested = st.integers(33, 400).map(lambda n: json.loads("[" * n + "]" * n))
        return st.one_of(
            st.builds(
                lambda k, c: ("lone surrogate as object value", {k: f"{self.canary}{chr(c)}"}),
                text,
                st.integers(0xD800, 0xDFFF),
            ),
            st.builds(
                lambda c: ("lone surrogate as object key", {f"{chr(c)}{self.canary}": "x"}),
                st.integers(0xD800, 0xDFFF),
            ),
            # How a lenient decoder represents invalid UTF-8 (surrogateescape): \udc80-\udcff.
            st.builds(
                lambda b: (
                    "invalid UTF-8 as object value",
                    {"origin": b.decode("utf-8", "surrogateescape")},
                ),
                st.sampled_from([b"\xff", b"x\xc3", b"\xed\xa0\x80"]),
            ),
            st.builds(lambda v: ("deep nesting as object value", {"origin": v}), nested),
            st.builds(
                lambda n: ("long integer as object value", {"n": int("9" * n)}),
                st.integers(20, _INT_DIGITS_LIMIT),
            ),
            st.sampled_from(
                [
                    ("not a finite number as object value", {"n": float("nan")}),
                    ("not a finite number as object value", {"n": float("inf")}),
                    ("not an object", ["origin", "x"]),
                    ("not an object", "origin=x"),
                    ("not an object", 7),
                    ("not strings", {"origin": None}),
                    ("not strings", {"force": True}),
                ]
            ),
        )

    def _message(
        self,
        draw: st.DrawFn,
        *,
        data: str,
        attributes: Any = None,
        published: str | None = None,
        kind: str,
    ) -> FuzzRequest:
        """A CloudEvent carrying one Pub/Sub message, structured or binary, as Eventarc posts it."""
        message_id = draw(st.uuids()).hex
        when = published or _rfc3339(
            datetime.now(UTC) - timedelta(seconds=draw(st.integers(0, 1200)))
        )
        message: dict[str, Any] = {"data": data, "messageId": message_id, "publishTime": when}
        if attributes is not None:
            message["attributes"] = attributes
        envelope = {"message": message, "subscription": "projects/p/subscriptions/fuzz"}
        source = "//pubsub.googleapis.com/projects/p/topics/b24-token-refresh-trigger"
        kind_of_event = "google.cloud.pubsub.topic.v1.messagePublished"
        if draw(st.booleans()):
            event = {
                "specversion": "1.0",
                "type": kind_of_event,
                "source": source,
                "id": message_id,
                "time": when,
                "datacontenttype": "application/json",
                "data": envelope,
            }
            headers: tuple[tuple[str, str], ...] = (
                ("Content-Type", "application/cloudevents+json"),
            )
            body = json.dumps(event).encode()
        else:
            # Binary mode; the CloudEvent id header is sometimes not UTF-8 once sent (latin-1).
            event_id = draw(st.just(message_id) | _HEADER_TEXT.filter(lambda t: t.strip() != ""))
            headers = (
                ("Content-Type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-type", kind_of_event),
                ("ce-source", source),
                ("ce-id", event_id.strip()),
                ("ce-time", when),
            )
            body = json.dumps(envelope).encode()
        return FuzzRequest("POST", "", headers, body, kind, message_id)

    def requests(self, *, pathological_only: bool = False) -> st.SearchStrategy[FuzzRequest]:
        """Every message is unusable, so ``pathological_only`` changes nothing here."""
        valid_data = self._triggers().map(lambda v: _b64(json.dumps(v).encode()))
        pathological_data = _pathological_json(self._triggers())

        @st.composite
        def message(draw: st.DrawFn) -> FuzzRequest:
            where = draw(
                st.sampled_from(
                    ["Pub/Sub data"] * 4
                    + ["attributes"] * 2
                    + ["old message", "publish time", "data field"]
                )
            )
            if where == "Pub/Sub data":
                kind, data = draw(pathological_data)
                return self._message(draw, data=_b64(data), kind=f"Pub/Sub data: {kind}")
            if where == "attributes":
                kind, attributes = draw(self._attributes())
                return self._message(
                    draw, data=draw(valid_data), attributes=attributes, kind=f"attributes: {kind}"
                )
            if where == "old message":
                # Dropped for its age before its data is read, whatever the data is.
                age = timedelta(seconds=draw(st.integers(31 * 60, 10 * 365 * 86400)))
                published = _rfc3339(datetime.now(UTC) - age)
                if draw(st.booleans()):
                    return self._message(
                        draw, data=draw(valid_data), published=published, kind=where
                    )
                kind, data = draw(pathological_data)
                return self._message(
                    draw,
                    data=_b64(data),
                    published=published,
                    kind=f"{where}, Pub/Sub data: {kind}",
                )
            if where == "publish time":
                when = draw(
                    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
                )
                return self._message(
                    draw, data=draw(valid_data), published=when, kind="publish time out of range"
                )
            text = draw(
                st.sampled_from(["not base64!", "e30=\u00e9", "\ud800", "e30", "===="])
                | st.text(min_size=1, max_size=40).filter(lambda t: not t.isascii())
            )
            return self._message(draw, data=text, kind="data field: not base64")

        return message()

    def check_request(
        self, request: FuzzRequest, status: int, records: list[tuple[int, str]]
    ) -> str | None:
        if status != 200:
            return f"not acknowledged (HTTP {status})"
        if not any(
            level == logging.WARNING and f"message {request.message_id}" in text
            for level, text in records
        ):
            return "no WARNING naming the message id"
        if any(level >= logging.ERROR for level, _ in records):
            return "logged an ERROR"
        if any(self.canary in text for _, text in records):
            return "the payload reached a log line"
        return None

    def check_after(self, result: FuzzResult) -> None:
        result.stored = [b.name for b in self.bucket.list_blobs()]
        now = self._stored()
        result.stored += [f"{name} changed" for name in now if now[name] != self.before[name]]
        with self.fake.lock:
            result.provider_calls = len(self.fake.calls)

    def positive_control(self, client: Any) -> str:
        """One genuine ``{"force": true}``, fresh: Bitrix24 is called and the token stored."""
        request = FuzzRequest(
            "POST",
            "",
            (("Content-Type", "application/cloudevents+json"),),
            json.dumps(
                {
                    "specversion": "1.0",
                    "type": "google.cloud.pubsub.topic.v1.messagePublished",
                    "source": "//pubsub.googleapis.com/projects/p/topics/b24-token-refresh-trigger",
                    "id": "fuzz-control",
                    "time": _rfc3339(datetime.now(UTC)),
                    "data": {
                        "message": {
                            "data": _b64(b'{"force": true}'),
                            "messageId": "fuzz-control",
                            "attributes": {"origin": "fuzz"},
                        }
                    },
                }
            ).encode(),
        )
        status = send(client, request)
        if status != 200:
            return f"genuine trigger answered {status}"
        version = self.store.latest_version(self.secrets["access_token"])
        if self.fake.refreshes != 1 or version is None:
            return f"genuine trigger: {self.fake.refreshes} refreshes, access token {version}"
        return "ok"

    def close(self) -> None:
        self.fake.stop()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- running


def make_endpoint(name: str) -> Endpoint:
    if name == "graph":
        return GraphEndpoint(dict(os.environ))
    if name == "universign":
        if not UNIVERSIGN_SOURCE.is_file():
            raise FileNotFoundError(f"{UNIVERSIGN_SOURCE.relative_to(REPO_ROOT)} is missing")
        return UniversignEndpoint(dict(os.environ))
    if name == "b24":
        return B24Endpoint(dict(os.environ))
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
    endpoint: Endpoint,
    count: int,
    *,
    seed: int | None = None,
    verbose: bool = False,
    progress: Callable[[int], None] | None = None,
    pathological_only: bool = False,
) -> FuzzResult:
    """Send ``count`` generated requests (only pathological JSON when ``pathological_only``);
    the stack must be up and its variables set."""
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
        @given(endpoint.requests(pathological_only=pathological_only))
        def one(request: FuzzRequest) -> None:
            if result.requests >= count:
                return
            result.requests += 1
            result.kinds[request.kind] += 1
            before = len(recorder.tracebacks)
            recorder.clear()
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
            problem = endpoint.check_request(request, status, recorder.records)
            if problem is not None:
                result.failed_checks.append(f"{problem} <- {request.describe()}")
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
    parser.add_argument(
        "--endpoint",
        choices=[*ENDPOINTS, "all"],
        default="all",
        help="b24 is the Pub/Sub function b24_token_refresh; all: every one in turn",
    )
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
                endpoint.close()
            summaries.append(result.summary())
            print(json.dumps(result.summary(), indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2) + "\n")
    return 0 if all(s["passed"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
