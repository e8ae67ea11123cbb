"""universign_jws's edges found unpinned by mutation testing: which published keys are usable
(size, use, algorithm), the protected header's rules (crit, b64, alg, kid), the base64url
alphabet, and the key cache's lifetime on a clock that does not start at 0."""

from __future__ import annotations

import base64
import io
import json
from functools import cache
from typing import Any

import pytest
import requests
import universign_jws as jws
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.http import HttpClient, RetryPolicy

BODY = b'{"event": "transaction.completed"}'


@cache
def private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def number(value: int) -> str:
    return str(jws.b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big")))


def jwk(kid: str = "k1", bits: int = 2048, **extra: Any) -> dict[str, Any]:
    public = private_key(bits).public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "n": number(public.n), "e": number(public.e), **extra}


def sign(header: dict[str, Any], body: bytes = BODY, *, attached: bool = False) -> str:
    header_b64 = jws.b64url_encode(json.dumps(header).encode())
    b64 = header.get("b64", True)
    payload = jws.b64url_encode(body).encode() if b64 else body
    signature = private_key(2048).sign(
        header_b64.encode() + b"." + payload,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    middle = jws.b64url_encode(body) if attached else ""
    return f"{header_b64}.{middle}.{jws.b64url_encode(signature)}"


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "usable"),
    [
        (jwk(), True),
        (jwk(use="sig"), True),
        (jwk(alg="PS256"), True),
        (jwk(use="enc"), False),
        (jwk(alg="RS256"), False),
        (jwk(alg="PS512"), False),
        ({**jwk(), "kty": "EC"}, False),
        ({k: v for k, v in jwk().items() if k != "kty"}, False),
        ({k: v for k, v in jwk().items() if k != "n"}, False),
        ({**jwk(), "e": "not+base64url"}, False),
        (jwk(bits=1024), False),
        (jwk(bits=2047) if False else jwk(bits=1536), False),
    ],
    ids=[
        "plain",
        "use sig",
        "alg PS256",
        "for encryption",
        "RS256",
        "PS512",
        "EC",
        "no kty",
        "no n",
        "bad e",
        "1024 bits",
        "1536 bits",
    ],
)
def test_which_published_keys_are_usable(entry: dict[str, Any], usable: bool) -> None:
    assert (jws.key_from_jwk(entry) is not None) is usable


def test_a_2048_bit_key_is_the_smallest_accepted() -> None:
    key = jws.key_from_jwk(jwk())
    assert key is not None and key.key_size == 2048 == jws.MIN_RSA_BITS


# --- base64url ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "ab+c", "ab/c", "ab=c", "ab c", "abé", "a.b"])
def test_only_the_base64url_alphabet_is_decoded(text: str) -> None:
    with pytest.raises(jws.SignatureError, match=r"^not base64url$"):
        jws.b64url_decode(text)


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xfb\xff", b"abc", b"\x00" * 5])
def test_base64url_round_trip(data: bytes) -> None:
    encoded = jws.b64url_encode(data)
    assert "=" not in encoded
    assert encoded == base64.urlsafe_b64encode(data).decode().rstrip("=")
    if data:
        assert jws.b64url_decode(encoded) == data


def test_every_alphabet_character_is_accepted() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert jws.b64url_decode(alphabet) == base64.urlsafe_b64decode(alphabet)


def test_a_base64url_length_that_cannot_be_is_refused() -> None:
    with pytest.raises(jws.SignatureError, match=r"^not base64url$"):
        jws.b64url_decode("abcde")


# --- the protected header -----------------------------------------------------------------------

PS256 = {"alg": "PS256", "kid": "k1"}


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ({"alg": "RS256", "kid": "k1"}, "algorithm 'RS256' refused; only PS256"),
        ({"kid": "k1"}, "algorithm 'None' refused; only PS256"),
        ({"alg": "PS256"}, "protected header has no kid"),
        ({"alg": "PS256", "kid": ""}, "protected header has no kid"),
        ({"alg": "PS256", "kid": 7}, "protected header has no kid"),
        ({"alg": "PS256", "kid": "k" * 201}, "protected header has no kid"),
        ({**PS256, "b64": "false"}, "b64 must be a boolean"),
        ({**PS256, "crit": "b64"}, "unsupported critical header parameters"),
        ({**PS256, "crit": ["exp"]}, "unsupported critical header parameters"),
        ({**PS256, "crit": ["b64", "exp"]}, "unsupported critical header parameters"),
        ({**PS256, "b64": False}, '"b64": false must be listed in crit'),
    ],
)
def test_header_rules(header: dict[str, Any], why: str) -> None:
    with pytest.raises(jws.SignatureError, match=rf"^{why}$"):
        jws.parse(sign(header), BODY)


@pytest.mark.parametrize(
    "header",
    [
        PS256,
        {**PS256, "kid": "k" * 200},
        {**PS256, "crit": []},
        {**PS256, "b64": False, "crit": ["b64"]},
        {**PS256, "b64": True, "crit": ["b64"]},
    ],
)
def test_headers_that_are_accepted(header: dict[str, Any]) -> None:
    parsed = jws.parse(sign(header), BODY)
    assert parsed.kid == header["kid"] and parsed.b64 is header.get("b64", True)
    assert parsed.header == header


def test_the_signature_header_length_limit() -> None:
    compact = sign(PS256)
    with pytest.raises(jws.SignatureError, match=r"^signature header too long$"):
        jws.parse(compact + " " + "A" * (jws.MAX_SIGNATURE_HEADER), BODY)
    padded = " " * (jws.MAX_SIGNATURE_HEADER) + compact  # stripped before the length check
    assert jws.parse(padded, BODY).kid == "k1"


@pytest.mark.parametrize("compact", ["a.b", "a.b.c.d", "abc"])
def test_not_three_parts(compact: str) -> None:
    with pytest.raises(jws.SignatureError, match=r"^not a compact JWS$"):
        jws.parse(compact, BODY)


def test_a_header_that_is_not_an_object() -> None:
    with pytest.raises(jws.SignatureError, match=r"^protected header is not a JSON object$"):
        jws.parse(jws.b64url_encode(b"[1]") + "..AAAA", BODY)


def test_an_attached_payload_must_be_the_body_and_b64() -> None:
    assert jws.parse(sign(PS256, attached=True), BODY).kid == "k1"
    unencoded = {**PS256, "b64": False, "crit": ["b64"]}
    with pytest.raises(jws.SignatureError, match=r"^attached payload differs from the body$"):
        jws.parse(sign(unencoded, attached=True), BODY)


# --- the verifier and its cache -----------------------------------------------------------------


class KeySet:
    """The key set endpoint, answered without a network (test_universign_jws.py serves one)."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.status = 200
        self.calls = 0

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls += 1
        made = requests.Response()
        made.status_code = self.status
        made._content = json.dumps({"keys": self.keys}).encode()
        made.raw = io.BytesIO(b"")
        return made


class Clock:
    def __init__(self, at: float = 5000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def verifier(keys: KeySet, clock: Clock, **kwargs: Any) -> jws.JwksVerifier:
    http = HttpClient(session=keys, retry=RetryPolicy(attempts=1), sleep=lambda s: None)  # type: ignore[arg-type]
    return jws.JwksVerifier("https://u/jwks.json", http, monotonic=clock, **kwargs)


def test_cached_keys_live_for_the_ttl_exactly() -> None:
    keys, clock = KeySet(jwk()), Clock()
    check = verifier(keys, clock, ttl=100.0)
    assert check.verify(sign(PS256), BODY) == "k1"
    assert keys.calls == 1
    clock.at += 100.0
    assert check.verify(sign(PS256), BODY) == "k1"
    assert keys.calls == 1
    clock.at += 0.5
    assert check.verify(sign(PS256), BODY) == "k1"
    assert keys.calls == 2


def test_a_withdrawn_key_is_refused_after_the_ttl() -> None:
    keys, clock = KeySet(jwk()), Clock()
    check = verifier(keys, clock, ttl=100.0)
    check.verify(sign(PS256), BODY)
    keys.keys = [jwk("k2")]
    clock.at += 101
    with pytest.raises(jws.SignatureError, match=r"^unknown key id$"):
        check.verify(sign(PS256), BODY)


def test_a_stale_refresh_is_tried_once_per_min_refetch() -> None:
    keys, clock = KeySet(jwk()), Clock()
    check = verifier(keys, clock, ttl=100.0, min_refetch=60.0)
    check.verify(sign(PS256), BODY)
    keys.status = 503
    clock.at += 101
    assert check.verify(sign(PS256), BODY) == "k1"  # outage: the old key still works
    assert keys.calls == 2
    clock.at += 59
    check.verify(sign(PS256), BODY)
    assert keys.calls == 2
    clock.at += 1
    check.verify(sign(PS256), BODY)
    assert keys.calls == 3


def test_entries_without_a_usable_kid_are_skipped_not_a_crash() -> None:
    no_kid = {k: v for k, v in jwk("x").items() if k != "kid"}
    keys = KeySet(no_kid, {**jwk("y"), "kid": 5}, "junk", jwk("k1"))  # type: ignore[arg-type]
    check = verifier(keys, Clock())
    assert check.verify(sign(PS256), BODY) == "k1"
    assert set(check._keys) == {"k1"}


def test_an_unknown_kid_is_rechecked_only_after_min_refetch() -> None:
    keys, clock = KeySet(jwk("k2")), Clock()
    check = verifier(keys, clock, min_refetch=60.0)
    for _ in range(2):
        with pytest.raises(jws.SignatureError, match=r"^unknown key id$"):
            check.verify(sign(PS256), BODY)
    assert keys.calls == 1
    clock.at += 60
    keys.keys = [jwk("k1")]
    assert check.verify(sign(PS256), BODY) == "k1"
    assert keys.calls == 2


def test_the_fetch_budget_per_minute() -> None:
    keys, clock = KeySet(jwk("k0")), Clock()
    check = verifier(keys, clock, max_fetches_per_minute=2)
    for kid in ("a", "b"):
        with pytest.raises(jws.SignatureError):
            check.verify(sign({**PS256, "kid": kid}), BODY)
    with pytest.raises(jws.KeyCooldown) as cooled:
        check.verify(sign({**PS256, "kid": "c"}), BODY)
    assert cooled.value.retry_after == 60
    clock.at += 59.5
    with pytest.raises(jws.KeyCooldown) as cooled:
        check.verify(sign({**PS256, "kid": "c"}), BODY)
    assert cooled.value.retry_after == 1
    clock.at += 0.5
    with pytest.raises(jws.SignatureError, match=r"^unknown key id$"):
        check.verify(sign({**PS256, "kid": "c"}), BODY)
    assert keys.calls == 3


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_signature(value: str | None) -> None:
    with pytest.raises(jws.SignatureError, match=r"^signature header missing$"):
        verifier(KeySet(jwk()), Clock()).verify(value, BODY)


def test_a_key_set_without_a_keys_list_is_unavailable() -> None:
    keys = KeySet()
    keys.keys = None  # type: ignore[assignment]
    with pytest.raises(jws.KeysUnavailable, match="key set has no keys list"):
        verifier(keys, Clock()).verify(sign(PS256), BODY)


# --- second round: what the first mutation run still let through ---------------------------------


def test_base64url_encoding_strips_only_padding() -> None:
    ending_in_x = next(
        bytes([0, 0, i]) for i in range(256) if jws.b64url_encode(bytes([0, 0, i])).endswith("X")
    )
    assert jws.b64url_encode(ending_in_x) == base64.urlsafe_b64encode(ending_in_x).decode()


def test_a_signature_by_another_key_does_not_verify() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    parsed = jws.parse(sign(PS256), BODY)
    with pytest.raises(jws.SignatureError, match=r"^signature does not verify$"):
        jws.verify_with_key(other, parsed, BODY)


def test_the_cooldown_says_when_to_retry() -> None:
    assert str(jws.KeyCooldown(5)) == "key set fetch budget spent; retry in 5 s"


def test_fetches_are_counted() -> None:
    keys, clock = KeySet(jwk()), Clock()
    check = verifier(keys, clock, ttl=10.0)
    check.verify(sign(PS256), BODY)
    clock.at += 11
    check.verify(sign(PS256), BODY)
    assert check.fetches == 2 == keys.calls


def test_checked_kids_are_forgotten_after_min_refetch(monkeypatch: pytest.MonkeyPatch) -> None:
    check = verifier(KeySet(), Clock(), min_refetch=60.0)
    check._remember_checked("a", 5000.0)
    check._remember_checked("b", 5030.0)
    assert list(check._checked) == ["a", "b"]
    check._remember_checked("c", 5060.0)
    assert list(check._checked) == ["b", "c"]
    monkeypatch.setattr(jws, "MAX_CHECKED_KIDS", 2)
    check._remember_checked("d", 5061.0)
    assert list(check._checked) == ["c", "d"]
