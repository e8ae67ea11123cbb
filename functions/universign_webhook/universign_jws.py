"""Universign webhook signatures: a detached-payload compact JWS (``header..signature``), PS256.

Research status (see the function's README notes in main.py): the scheme, the ``PS256``
algorithm and the key set at ``{api}/v1/webhooks/jwks.json`` come from several independent
implementations that cite Universign's webhook page, not from a page we could read ourselves;
the header carrying the JWS is unconfirmed, hence configurable.

Verification rebuilds ``header.BASE64URL(raw body).signature`` (or, when the protected header
says ``"b64": false`` as RFC 7797 allows, ``header.<raw body>``) and checks it with the RSA key
named by ``kid``. Only ``PS256`` is accepted, whatever the header claims, so neither ``none``
nor an HMAC algorithm keyed with a public key can slip through.

Keys are cached for the life of the instance. A ``kid`` we do not know may be a key Universign
has just published, so it is refused for good (``SignatureError``, 401) only once the key set
has been fetched for it and did not list it. Each unknown ``kid`` triggers its own refetch,
bounded twice so a stream of forged key ids costs Universign little: the same ``kid`` at most
once per ``min_refetch`` seconds (its repeats meanwhile are refused on that answer), and all
fetches of the instance at most ``max_fetches_per_minute`` per minute. When that budget is
spent, a ``kid`` nobody checked yet gets ``KeyCooldown`` (503 with Retry-After) rather than a
refusal, and Universign's retry is checked once the budget frees up.

Untrusted text reaches two JSON parsers here, the protected header and the key set, both
through ``shared.safe_json.loads_untrusted``: whatever it refuses (deep nesting, huge integers,
lone surrogates, text that is not UTF-8) is a bad signature, or an unusable key set.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.errors import ProviderError
from shared.http import HttpClient
from shared.safe_json import loads_untrusted

log = logging.getLogger(__name__)

ALGORITHM = "PS256"
MIN_RSA_BITS = 2048
MAX_SIGNATURE_HEADER = 8192
# Unknown key ids remembered as checked; the fetch budget keeps far fewer than this in use.
MAX_CHECKED_KIDS = 1024
FETCH_WINDOW_SECONDS = 60.0


class SignatureError(ValueError):
    """The signature is missing, malformed, made with an unknown key, or does not verify."""


class KeysUnavailable(RuntimeError):
    """The key set could not be fetched and no cached key fits: retry later, do not reject."""


class KeyCooldown(KeysUnavailable):
    """An unknown ``kid`` arrived while the key set fetch budget is spent: it could not be
    checked, so it is not refused; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"key set fetch budget spent; retry in {retry_after} s")
        self.retry_after = retry_after


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
    # RFC 7515: the header is UTF-8 JSON; loads_untrusted takes nothing else.
    header = loads_untrusted(
        b64url_decode(header_b64), bad=lambda why: SignatureError(f"protected header: {why}")
    )
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
    if not b64 and "b64" not in crit:
        # RFC 7797 section 6: a recipient that ignored b64 would verify other bytes.
        raise SignatureError('"b64": false must be listed in crit')
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
        max_fetches_per_minute: int = 10,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.http = http
        self.ttl = ttl
        self.min_refetch = min_refetch
        self.max_fetches_per_minute = max_fetches_per_minute
        self._monotonic = monotonic
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._stale_attempt_at: float | None = None
        # Start times of this minute's fetches, and when each unknown kid was last checked.
        self._recent: deque[float] = deque()
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def verify(self, compact: str | None, body: bytes) -> str:
        """Return the kid that verified ``body``; raise SignatureError, KeysUnavailable or
        KeyCooldown (a KeysUnavailable)."""
        arrived = self._monotonic()
        if not compact or not compact.strip():
            raise SignatureError("signature header missing")
        parsed = parse(compact, body)
        key = self._key(parsed.kid, arrived)
        verify_with_key(key, parsed, body)
        return parsed.kid

    def _key(self, kid: str, arrived: float) -> rsa.RSAPublicKey:
        # A fresh cached key needs no lock, so a slow fetch for some other kid (the lock is held
        # across it) never holds up a webhook signed with a key we know. _keys is replaced,
        # never changed in place.
        key, fetched = self._keys.get(kid), self._fetched_at
        if key is not None and fetched is not None and arrived - fetched <= self.ttl:
            return key
        with self._lock:
            now = self._monotonic()
            key = self._keys.get(kid)
            if key is not None:
                return self._known(kid, key, now)
            fetched = self._fetched_at
            checked = self._checked.get(kid)
            if (fetched is not None and fetched > arrived) or (
                checked is not None and now - checked < self.min_refetch
            ):
                # The key set was read after this request arrived, or for this very kid a
                # moment ago: that answer stands.
                raise SignatureError("unknown key id")
            wait = self._budget_wait(now)
            if wait > 0:
                raise KeyCooldown(wait)  # its webhook_request line says so; no line per kid
            try:
                self._refresh(now)
            except (ProviderError, SignatureError) as error:
                log.warning("could not fetch the Universign key set: %s", error)
                # Perhaps a legitimate rotation we cannot see yet: ask for a retry.
                raise KeysUnavailable(str(error)) from None
            self._remember_checked(kid, now)
            key = self._keys.get(kid)
            if key is None:
                raise SignatureError("unknown key id")
            return key

    def _known(self, kid: str, key: rsa.RSAPublicKey, now: float) -> rsa.RSAPublicKey:
        """A cached key, after refreshing the set when it is older than the TTL (tried at
        most once per ``min_refetch``, and only within the fetch budget)."""
        assert self._fetched_at is not None
        if now - self._fetched_at <= self.ttl:
            return key
        last = self._stale_attempt_at
        if (last is not None and now - last < self.min_refetch) or self._budget_wait(now) > 0:
            return key
        self._stale_attempt_at = now
        try:
            self._refresh(now)
        except (ProviderError, SignatureError) as error:
            # Keep the old keys: an outage of the key endpoint must not stop webhooks.
            log.warning("could not fetch the Universign key set: %s", error)
            return key
        fresh = self._keys.get(kid)
        if fresh is None:
            raise SignatureError("unknown key id")  # withdrawn by Universign
        return fresh

    def _budget_wait(self, now: float) -> int:
        """0 when a fetch may start now, else the whole seconds until one may."""
        while self._recent and now - self._recent[0] >= FETCH_WINDOW_SECONDS:
            self._recent.popleft()
        if len(self._recent) < self.max_fetches_per_minute:
            return 0
        return max(1, math.ceil(self._recent[0] + FETCH_WINDOW_SECONDS - now))

    def _refresh(self, now: float) -> None:
        self._recent.append(now)  # a failed fetch costs Universign a request too
        self._keys = self._fetch()
        self._fetched_at = now

    def _remember_checked(self, kid: str, now: float) -> None:
        for old, at in list(self._checked.items()):
            if now - at >= self.min_refetch:
                del self._checked[old]
        self._checked[kid] = now
        while len(self._checked) > MAX_CHECKED_KIDS:
            del self._checked[next(iter(self._checked))]

    def _fetch(self) -> dict[str, rsa.RSAPublicKey]:
        self.fetches += 1
        response: requests.Response = self.http.request(
            "GET", self.jwks_url, headers={"Accept": "application/json"}
        )
        if response.status_code != 200:
            raise ProviderError(
                f"key set answered HTTP {response.status_code}", status=response.status_code
            )
        document = loads_untrusted(
            response.content, bad=lambda why: SignatureError(f"key set: {why}")
        )
        keys_field = document.get("keys") if isinstance(document, dict) else None
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
