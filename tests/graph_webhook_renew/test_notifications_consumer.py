"""The minimal push consumer docs/operations.md ("Consumers") shows for NOVA-like apps, run
as printed: it reads a Pub/Sub push request only with a Google-signed token for its audience
and its subscription's service account, and hands the message over.

Google's signing keys are stood in by a local key served at ``GOOGLE_CERTS_URL`` (the
example's configurable certs endpoint); the Pub/Sub emulator sends no token (push auth is not
emulated), so the push envelope is posted as Pub/Sub sends it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
AUDIENCE = "https://nova.example.com/api/webhooks/graph"
IDENTITY = "keepalive-consumer-push@p.iam.gserviceaccount.com"
KID = "test-key"


def consumer_source() -> str:
    section = DOC.read_text().split("\n## Consumers\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    sources: list[str] = [b for b in blocks if "def receive" in b]
    (source,) = sources
    return source


class Keys:
    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.signer = crypt.RSASigner.from_string(pem, key_id=KID)
        self.public_pem = (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def token(self, signer: Any = None, **changes: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": IDENTITY,
            "email_verified": True,
            "sub": "1234567890",
            "iat": now,
            "exp": now + 3600,
            **changes,
        }
        token: bytes = jwt.encode(signer or self.signer, claims)
        return token.decode()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def certs_url(keys: Keys) -> Iterator[str]:
    body = json.dumps({KID: keys.public_pem}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v1/certs"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs_url: str
) -> tuple[ModuleType, list[Any]]:
    monkeypatch.setenv("PUSH_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("PUSH_SERVICE_ACCOUNT", IDENTITY)
    monkeypatch.setenv("GOOGLE_CERTS_URL", certs_url)
    path = tmp_path / "nova_consumer.py"
    path.write_text(consumer_source())
    spec = importlib.util.spec_from_file_location("nova_consumer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handled: list[Any] = []
    monkeypatch.setattr(module, "handle", lambda *args: handled.append(args))
    return module, handled


# What Pub/Sub posts to a push endpoint (as the emulator showed in the research notes).
ITEM = {"subscriptionId": "s-1", "changeType": "created", "resource": "Users/u/Messages/m"}
ENVELOPE: dict[str, Any] = {
    "message": {
        "data": base64.b64encode(json.dumps(ITEM).encode()).decode(),
        "attributes": {"subscriptionId": "s-1", "changeType": "created"},
        "messageId": "42",
        "publishTime": "2026-11-22T08:00:00Z",
    },
    "subscription": "projects/p/subscriptions/nova-graph",
}


def post(module: ModuleType, token: str | None, body: Any = ENVELOPE) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    client = module.app.test_client()
    response = client.post("/api/webhooks/graph", json=body, headers=headers)
    status: int = response.status_code
    return status


def test_a_signed_push_is_read_and_acknowledged(consumer, keys) -> None:
    module, handled = consumer
    assert post(module, keys.token()) == 204
    assert handled == [("42", ENVELOPE["message"]["attributes"], ITEM)]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"aud": "https://elsewhere.example.com/"}, 401),
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 4200}, 401),
        ({"email": "someone@p.iam.gserviceaccount.com"}, 403),
        ({"email_verified": False}, 403),
        ({"iss": "https://evil.example.com"}, 403),
    ],
)
def test_a_token_not_for_this_consumer_is_refused(consumer, keys, changes, status) -> None:
    module, handled = consumer
    assert post(module, keys.token(**changes)) == status
    assert handled == []


def test_no_token_or_a_forged_one_is_refused(consumer) -> None:
    module, handled = consumer
    other = Keys()  # a key Google never published, under the same key id
    assert post(module, None) == 401
    assert post(module, "not-a-jwt") == 401
    assert post(module, other.token()) == 401
    assert handled == []


def test_a_message_that_is_not_json_is_refused_for_dead_lettering(consumer, keys) -> None:
    module, handled = consumer
    bad = {"message": {"data": base64.b64encode(b"\xff not json").decode(), "messageId": "7"}}
    assert post(module, keys.token(), bad) == 400
    assert handled == []
