"""A Universign API v1 server, as far as the public contract goes, that signs its webhooks.

- HTTP Basic with the API key as user name and an empty password (or ``Bearer KEY``); 401
  otherwise.
- ``GET /v1/transactions/{id}``: ``{"object": "transaction", "id": "tx_...", "state": ...,
  "participants": [...], "documents": [...]}``; states draft, started, paused, cancelled,
  expired, completed, archived. Unknown ids answer 404.
- Signed documents: ``GET /v1/transactions/{tx}/archive/documents/{doc}/download`` once
  completed (or archived), ``GET /v1/archives/{tx}/documents/{doc}/download`` once archived.
- ``GET /v1/webhooks/jwks.json``: the RSA public key(s) the webhooks are signed with.
- Webhooks: ``{"object": "event", "id": "evt_...", "type": ..., "createdAt": <unix s>,
  "payload": {"object": {...}}}`` POSTed with a detached compact JWS (PS256) over the raw body
  in a header (``X-JWS-Signature`` unless told otherwise).

Assumptions where the contract is unconfirmed: the participant field names (``state``
``waiting|open|signed|refused`` and ``refusal_reason``) and the ``action.stalled`` payload
(an ``action`` object with ``transaction``, ``participant`` and ``reason``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devtools.fakes.base import FakeServer, Request, Response

STATES = ("draft", "started", "paused", "cancelled", "expired", "completed", "archived")
LIFECYCLE_EVENT = {
    "draft": "transaction.lifecycle.created",
    "started": "transaction.lifecycle.started",
    "paused": "transaction.lifecycle.paused",
    "cancelled": "transaction.lifecycle.cancelled",
    "expired": "transaction.lifecycle.expired",
    "completed": "transaction.lifecycle.completed",
    "archived": "transaction.lifecycle.completed",
}
TRANSACTION_ROUTE = "/v1/transactions/{tx}"
DOWNLOAD_ROUTE = "/v1/transactions/{tx}/archive/documents/{doc}/download"
ARCHIVE_DOWNLOAD_ROUTE = "/v1/archives/{tx}/documents/{doc}/download"
JWKS_ROUTE = "/v1/webhooks/jwks.json"
DEFAULT_HEADER = "X-JWS-Signature"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, bits: int = 2048) -> SigningKey:
        kid = f"scd_{secrets.token_hex(8)}"
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=bits))

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "PS256",
            "n": _uint(numbers.n),
            "e": _uint(numbers.e),
        }

    def sign(self, body: bytes, *, kid: str | None = None) -> str:
        """A detached compact JWS, ``header..signature``, PS256 over ``header.b64url(body)``."""
        header = b64url(json.dumps({"alg": "PS256", "kid": kid or self.kid}).encode())
        signature = self.private.sign(
            f"{header}.{b64url(body)}".encode("ascii"),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
        return f"{header}..{b64url(signature)}"


@dataclass
class Participant:
    email: str
    id: str = field(default_factory=lambda: f"ptc_{secrets.token_hex(6)}")
    name: str | None = None
    role: str = "signer"
    state: str = "waiting"
    refusal_reason: str | None = None
    signed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "object": "participant",
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "state": self.state,
        }
        if self.refusal_reason:
            body["refusal_reason"] = self.refusal_reason
        if self.signed_at:
            body["signed_at"] = self.signed_at
        return body


@dataclass
class Document:
    name: str
    content: bytes
    id: str = field(default_factory=lambda: f"doc_{secrets.token_hex(6)}")


@dataclass
class Transaction:
    id: str
    state: str
    participants: list[Participant]
    documents: list[Document]
    created_at: int = field(default_factory=lambda: int(time.time()))

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "transaction",
            "id": self.id,
            "name": f"Transaction {self.id}",
            "state": self.state,
            "created_at": self.created_at,
            "participants": [p.to_json() for p in self.participants],
            "documents": [
                {"object": "document", "id": d.id, "name": d.name} for d in self.documents
            ],
        }


class UniversignFake(FakeServer):
    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        key_bits: int = 2048,
    ) -> None:
        super().__init__(host, port)
        self.api_key = api_key or f"apikey_{secrets.token_urlsafe(24)}"
        self.key_bits = key_bits
        self.keys: list[SigningKey] = [SigningKey.generate(key_bits)]
        self.transactions: dict[str, Transaction] = {}
        self.downloads = 0
        self.unauthorized = 0
        self.route("GET", JWKS_ROUTE, self._jwks)
        self.route("GET", DOWNLOAD_ROUTE, self._download)
        self.route("GET", ARCHIVE_DOWNLOAD_ROUTE, self._archive_download)
        self.route("GET", TRANSACTION_ROUTE, self._transaction)

    # --- keys ---------------------------------------------------------------------------

    @property
    def key(self) -> SigningKey:
        return self.keys[-1]

    def rotate_key(self, *, keep_previous: bool = False) -> SigningKey:
        """Sign with a new key (new kid) from now on; the JWKS serves it (and the old one too
        when ``keep_previous``)."""
        new = SigningKey.generate(self.key_bits)
        with self.lock:
            self.keys = [*self.keys, new] if keep_previous else [new]
        return new

    def _jwks(self, _request: Request) -> Response:
        with self.lock:
            return Response(body={"keys": [k.jwk() for k in self.keys]})

    # --- transactions -------------------------------------------------------------------

    def create_transaction(
        self,
        *,
        state: str = "draft",
        signers: list[str] | None = None,
        documents: dict[str, bytes] | None = None,
    ) -> Transaction:
        if state not in STATES:
            raise ValueError(f"unknown state {state}")
        docs = documents if documents is not None else {"contrat.pdf": b"%PDF-1.7 fake contract"}
        tx = Transaction(
            id=f"tx_{secrets.token_hex(10)}",
            state=state,
            participants=[Participant(email=e) for e in (signers or ["client@example.com"])],
            documents=[Document(name=n, content=c) for n, c in docs.items()],
        )
        with self.lock:
            self.transactions[tx.id] = tx
        return tx

    def set_state(self, transaction_id: str, state: str) -> Transaction:
        if state not in STATES:
            raise ValueError(f"unknown state {state}")
        with self.lock:
            tx = self.transactions[transaction_id]
            tx.state = state
            if state in ("started",):
                for p in tx.participants:
                    if p.state == "waiting":
                        p.state = "open"
            if state in ("completed", "archived"):
                for p in tx.participants:
                    p.state, p.signed_at = "signed", p.signed_at or "2026-01-01T00:00:00Z"
        return tx

    def refuse(self, transaction_id: str, reason: str = "signature_refusal") -> Transaction:
        """The first participant refuses; the transaction stays started (Universign has no
        refused transaction state)."""
        with self.lock:
            tx = self.transactions[transaction_id]
            tx.participants[0].state = "refused"
            tx.participants[0].refusal_reason = reason
        return tx

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return secrets.compare_digest(header[7:], self.api_key)
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return secrets.compare_digest(user, self.api_key) and password == ""
        return False

    def _unauthorized(self) -> Response:
        with self.lock:
            self.unauthorized += 1
        return Response(401, {"error": "unauthorized", "message": "Invalid or missing API key"})

    def _transaction(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        with self.lock:
            tx = self.transactions.get(request.match["tx"])
            if tx is None:
                return Response(404, {"error": "not_found", "message": "Transaction not found"})
            return Response(body=tx.to_json())

    def _document(self, request: Request, states: tuple[str, ...]) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        with self.lock:
            tx = self.transactions.get(request.match["tx"])
            doc = (
                next((d for d in tx.documents if d.id == request.match["doc"]), None)
                if tx
                else None
            )
            if tx is None or doc is None or tx.state not in states:
                return Response(404, {"error": "not_found"})
            self.downloads += 1
            return Response(raw=doc.content, headers={"Content-Type": "application/pdf"})

    def _download(self, request: Request) -> Response:
        return self._document(request, ("completed", "archived"))

    def _archive_download(self, request: Request) -> Response:
        return self._document(request, ("archived",))

    # --- webhooks -----------------------------------------------------------------------

    def event(
        self,
        transaction_id: str,
        event_type: str | None = None,
        *,
        reason: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """An event as Universign would send it for the transaction's current state."""
        with self.lock:
            tx = self.transactions[transaction_id]
            kind = event_type or LIFECYCLE_EVENT[tx.state]
            if kind.startswith("action."):
                participant = tx.participants[0]
                obj: dict[str, Any] = {
                    "object": "action",
                    "id": f"act_{secrets.token_hex(6)}",
                    "transaction": tx.id,
                    "participant": participant.email,
                }
                if reason:
                    obj["reason"] = reason
            else:
                obj = tx.to_json()
        return {
            "object": "event",
            "id": event_id or f"evt_{secrets.token_hex(10)}",
            "type": kind,
            "createdAt": int(time.time()),
            "payload": {"object": obj},
        }

    @staticmethod
    def encode(event: dict[str, Any]) -> bytes:
        return json.dumps(event, separators=(",", ":")).encode("utf-8")

    def deliver(
        self,
        url: str,
        event: dict[str, Any] | bytes,
        *,
        header: str = DEFAULT_HEADER,
        signature: str | None = None,
        key: SigningKey | None = None,
        timeout: float = 30.0,
    ) -> requests.Response:
        """POST an event signed with the current key (or ``key``); ``signature`` overrides."""
        body = event if isinstance(event, bytes) else self.encode(event)
        headers = {"Content-Type": "application/json"}
        sig = signature if signature is not None else (key or self.key).sign(body)
        if sig:
            headers[header] = sig
        return requests.post(url, data=body, headers=headers, timeout=timeout)

    # --- admin for standalone demos ------------------------------------------------------

    def admin(self, request: Request) -> Response:
        if request.path == "/_admin/transactions" and request.method == "POST":
            spec = request.json() or {}
            tx = self.create_transaction(
                state=spec.get("state", "draft"), signers=spec.get("signers")
            )
            return Response(201, tx.to_json())
        if request.path == "/_admin/state" and request.method == "POST":
            spec = request.json()
            return Response(body=self.set_state(spec["transaction_id"], spec["state"]).to_json())
        if request.path == "/_admin/refuse" and request.method == "POST":
            spec = request.json()
            return Response(
                body=self.refuse(
                    spec["transaction_id"], spec.get("reason", "signature_refusal")
                ).to_json()
            )
        if request.path == "/_admin/rotate" and request.method == "POST":
            return Response(body={"kid": self.rotate_key().kid})
        if request.path == "/_admin/deliver" and request.method == "POST":
            spec = request.json()
            event = self.event(spec["transaction_id"], spec.get("type"), reason=spec.get("reason"))
            answer = self.deliver(spec["url"], event, header=spec.get("header", DEFAULT_HEADER))
            return Response(body={"event_id": event["id"], "status": answer.status_code})
        return super().admin(request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fakes.universign")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", help="default: a random key (printed once)")
    args = parser.parse_args(argv)
    fake = UniversignFake(api_key=args.api_key, host=args.host, port=args.port)
    print(f"ready url={fake.url} kid={fake.key.kid}", flush=True)
    if not args.api_key:
        print(f"api key (local fake only): {fake.api_key}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
