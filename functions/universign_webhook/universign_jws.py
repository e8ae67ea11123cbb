"""Universign webhook signatures: a detached-payload compact JWS (``header..signature``), PS256.

Research status (see the function's README notes in main.py): the scheme, the ``PS256``
algorithm and the key set at ``{api}/v1/webhooks/jwks.json`` come from several independent
implementations that cite Universign's webhook page, not from a page we could read ourselves;
the header carrying the JWS is unconfirmed, hence configurable.

Verification rebuilds ``header.BASE64URL(raw body).signature`` (or, when the protected header
says ``"b64": false`` as RFC 7797 allows, ``header.<raw body>``) and checks it with the RSA key
named by ``kid``. Only ``PS256`` is accepted, whatever the header claims, so neither ``none``
nor an HMAC algorithm keyed with a public key can slip through.

Keys are cached for the life of the instance. An unknown ``kid`` triggers one refetch, but not
more often than every ``min_refetch`` seconds: a stream of forged key ids costs us nothing and
costs Universign at most one request per interval.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.errors import ProviderError
from shared.http import HttpClient, json_body

log = logging.getLogger(__name__)

ALGORITHM = "PS256"
MIN_RSA_BITS = 2048
MAX_SIGNATURE_HEADER = 8192


class SignatureError(ValueError):
    """The signature is missing, malformed, made with an unknown key, or does not verify."""


class KeysUnavailable(RuntimeError):
    """The key set could not be fetched and no cached key fits: retry later, do not reject."""


def b64url_decode(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise SignatureError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError("not base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class ParsedJws:
    header: dict[str, Any]
    header_b64: str
    signature: bytes
    kid: str
    b64: bool


def parse(compact: str, body: bytes) -> ParsedJws:
    """Split and check a compact JWS; the payload part must be empty (detached) or the body."""
    compact = compact.strip()
    if len(compact) > MAX_SIGNATURE_HEADER:
        raise SignatureError("signature header too long")
    parts = compact.split(".")
    if len(parts) != 3:
        raise SignatureError("not a compact JWS")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json.loads(b64url_decode(header_b64))
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("protected header is not JSON") from None
    if not isinstance(header, dict):
        raise SignatureError("protected header is not a JSON object")
    if header.get("alg") != ALGORITHM:
        raise SignatureError(f"algorithm {str(header.get('alg'))[:20]!r} refused; only PS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 200:
        raise SignatureError("protected header has no kid")
    b64 = header.get("b64", True)
    if not isinstance(b64, bool):
        raise SignatureError("b64 must be a boolean")
    crit = header.get("crit", [])
    if not isinstance(crit, list) or any(c != "b64" for c in crit):
        raise SignatureError("unsupported critical header parameters")
    if payload_b64 and (not b64 or payload_b64 != b64url_encode(body)):
        # An attached payload is tolerated only when it is exactly the body we received.
        raise SignatureError("attached payload differs from the body")
    return ParsedJws(header, header_b64, b64url_decode(signature_b64), kid, b64)


def signing_input(parsed: ParsedJws, body: bytes) -> bytes:
    payload = b64url_encode(body).encode("ascii") if parsed.b64 else body
    return parsed.header_b64.encode("ascii") + b"." + payload


def verify_with_key(key: rsa.RSAPublicKey, parsed: ParsedJws, body: bytes) -> None:
    try:
        key.verify(
            parsed.signature,
            signing_input(parsed, body),
            # RFC 7518 fixes the salt at the hash length (32); AUTO accepts that and any signer
            # that chose another length, at no cost to security.
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
            hashes.SHA256(),
        )
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None


def key_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey | None:
    """The RSA public key of one JWK, or None when it is not a usable PS256 signing key."""
    if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
        return None
    if jwk.get("alg", ALGORITHM) != ALGORITHM:
        return None
    try:
        n = int.from_bytes(b64url_decode(str(jwk["n"])), "big")
        e = int.from_bytes(b64url_decode(str(jwk["e"])), "big")
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except (KeyError, SignatureError, ValueError):
        return None
    return key if key.key_size >= MIN_RSA_BITS else None


class JwksVerifier:
    """Verifies webhook signatures against a cached JWKS; safe to share between threads."""

    def __init__(
        self,
        jwks_url: str,
        http: HttpClient,
        *,
        ttl: float = 3600.0,
        min_refetch: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.http = http
        self.ttl = ttl
        self.min_refetch = min_refetch
        self._monotonic = monotonic
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def verify(self, compact: str | None, body: bytes) -> str:
        """Return the kid that verified ``body``; raise SignatureError or KeysUnavailable."""
        if not compact or not compact.strip():
            raise SignatureError("signature header missing")
        parsed = parse(compact, body)
        key = self._key(parsed.kid)
        verify_with_key(key, parsed, body)
        return parsed.kid

    def _key(self, kid: str) -> rsa.RSAPublicKey:
        with self._lock:
            now = self._monotonic()
            stale = self._fetched_at is None or now - self._fetched_at > self.ttl
            key = self._keys.get(kid)
            if key is not None and not stale:
                return key
            may_fetch = self._attempted_at is None or now - self._attempted_at >= self.min_refetch
            if may_fetch:
                self._attempted_at = now
                try:
                    self._keys = self._fetch()
                    self._fetched_at = now
                except (ProviderError, SignatureError) as error:
                    log.warning("could not fetch the Universign key set: %s", error)
                    if key is None:
                        # Perhaps a legitimate rotation we cannot see yet: ask for a retry.
                        raise KeysUnavailable(str(error)) from None
                    # Keep the old keys: an outage of the key endpoint must not stop webhooks.
            key = self._keys.get(kid)
            if key is None:
                raise SignatureError("unknown key id")
            return key

    def _fetch(self) -> dict[str, rsa.RSAPublicKey]:
        self.fetches += 1
        response: requests.Response = self.http.request(
            "GET", self.jwks_url, headers={"Accept": "application/json"}
        )
        if response.status_code != 200:
            raise ProviderError(
                f"key set answered HTTP {response.status_code}", status=response.status_code
            )
        keys_field = json_body(response).get("keys")
        if not isinstance(keys_field, list):
            raise SignatureError("key set has no keys list")
        keys: dict[str, rsa.RSAPublicKey] = {}
        for jwk in keys_field:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                key = key_from_jwk(jwk)
                if key is not None:
                    keys[jwk["kid"]] = key
        log.info("fetched the Universign key set: %d usable key(s)", len(keys))
        return keys
