"""Signature verification against the fake's real RSA keys (no emulators needed)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from universign_jws import JwksVerifier, KeysUnavailable, SignatureError

from devtools.fakes.universign import JWKS_ROUTE, SigningKey, UniversignFake, b64url
from shared.http import HttpClient, RetryPolicy

BODY = b'{"object":"event","id":"evt_1","type":"transaction.lifecycle.started"}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(fake: UniversignFake, clock: Clock | None = None) -> Any:
    http = HttpClient(timeout=5, retry=RetryPolicy(attempts=1))
    return JwksVerifier(
        f"{fake.url}{JWKS_ROUTE}", http, ttl=3600, min_refetch=60, monotonic=clock or Clock()
    )


def test_valid_signature_verifies_and_names_the_key(fake: UniversignFake) -> None:
    assert verifier(fake).verify(fake.key.sign(BODY), BODY) == fake.key.kid


def test_jwks_is_fetched_once_and_cached(fake: UniversignFake) -> None:
    v = verifier(fake)
    for _ in range(5):
        v.verify(fake.key.sign(BODY), BODY)
    assert fake.count(JWKS_ROUTE) == 1


@pytest.mark.parametrize(
    "body",
    [BODY + b" ", BODY.replace(b"started", b"completed"), b"", BODY[:-1]],
    ids=["trailing-space", "changed-type", "empty", "truncated"],
)
def test_tampered_body_is_refused(fake: UniversignFake, body: bytes) -> None:
    with pytest.raises(SignatureError):
        verifier(fake).verify(fake.key.sign(BODY), body)


def test_tampered_signature_is_refused(fake: UniversignFake) -> None:
    header, _, signature = fake.key.sign(BODY).partition("..")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    with pytest.raises(SignatureError, match="does not verify"):
        verifier(fake).verify(f"{header}..{b64url(bytes(raw))}", BODY)


@pytest.mark.parametrize("value", [None, "", "   ", "abc", "a.b", "a..b..c", "!!..!!"])
def test_missing_or_malformed_signature_is_refused(fake: UniversignFake, value: str | None) -> None:
    with pytest.raises(SignatureError):
        verifier(fake).verify(value, BODY)


def test_signature_by_another_key_with_a_served_kid_is_refused(fake: UniversignFake) -> None:
    intruder = SigningKey.generate()
    with pytest.raises(SignatureError, match="does not verify"):
        verifier(fake).verify(intruder.sign(BODY, kid=fake.key.kid), BODY)


def test_signature_by_an_unknown_key_is_refused(fake: UniversignFake) -> None:
    with pytest.raises(SignatureError, match="unknown key"):
        verifier(fake).verify(SigningKey.generate().sign(BODY), BODY)


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "PS384", None])
def test_other_algorithms_are_refused_before_any_key_is_used(
    fake: UniversignFake, alg: str | None
) -> None:
    header = b64url(json.dumps({"alg": alg, "kid": fake.key.kid}).encode())
    _, _, signature = fake.key.sign(BODY).partition("..")
    with pytest.raises(SignatureError, match=r"algorithm|kid"):
        verifier(fake).verify(f"{header}..{signature}", BODY)
    assert fake.count(JWKS_ROUTE) == 0


def test_unknown_kid_refetches_once_then_waits_the_minimum_interval(fake: UniversignFake) -> None:
    clock = Clock()
    v = verifier(fake, clock)
    v.verify(fake.key.sign(BODY), BODY)
    with pytest.raises(SignatureError):  # right after a fetch: no refetch at all
        v.verify(SigningKey.generate().sign(BODY, kid="scd_early"), BODY)
    assert fake.count(JWKS_ROUTE) == 1
    clock.now += 61
    intruder = SigningKey.generate()
    forged = [intruder.sign(BODY, kid=f"scd_forged{i}") for i in range(20)]
    for compact in forged:
        with pytest.raises(SignatureError):
            v.verify(compact, BODY)
    # One fetch at start, one for the first unknown kid; the other 19 hammered nothing.
    assert fake.count(JWKS_ROUTE) == 2
    clock.now += 61
    with pytest.raises(SignatureError):
        v.verify(forged[0], BODY)
    assert fake.count(JWKS_ROUTE) == 3


def test_key_rotation_is_picked_up_on_the_new_kid(fake: UniversignFake) -> None:
    clock = Clock()
    v = verifier(fake, clock)
    old = fake.key
    v.verify(old.sign(BODY), BODY)
    clock.now += 120  # the previous fetch is older than the minimum interval
    new = fake.rotate_key()
    assert new.kid != old.kid
    assert v.verify(new.sign(BODY), BODY) == new.kid
    assert fake.count(JWKS_ROUTE) == 2


def test_cached_keys_expire_after_the_ttl(fake: UniversignFake) -> None:
    clock = Clock()
    v = verifier(fake, clock)
    old = fake.key
    v.verify(old.sign(BODY), BODY)
    fake.rotate_key()  # the old key is withdrawn
    clock.now += 3601
    with pytest.raises(SignatureError, match="unknown key"):
        v.verify(old.sign(BODY), BODY)


def test_key_set_outage_with_no_usable_key_asks_for_a_retry(fake: UniversignFake) -> None:
    fake.inject(JWKS_ROUTE, 503, count=5)
    with pytest.raises(KeysUnavailable):
        verifier(fake).verify(fake.key.sign(BODY), BODY)


def test_key_set_outage_keeps_known_keys_working(fake: UniversignFake) -> None:
    clock = Clock()
    v = verifier(fake, clock)
    v.verify(fake.key.sign(BODY), BODY)
    fake.inject(JWKS_ROUTE, 503, count=5)
    clock.now += 3601  # the cache is stale and the refetch fails
    assert v.verify(fake.key.sign(BODY), BODY) == fake.key.kid


def test_unencoded_payload_option_is_supported(fake: UniversignFake) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = b64url(
        json.dumps({"alg": "PS256", "kid": fake.key.kid, "b64": False, "crit": ["b64"]}).encode()
    )
    signature = fake.key.private.sign(
        header.encode() + b"." + BODY,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    assert verifier(fake).verify(f"{header}..{b64url(signature)}", BODY) == fake.key.kid


def test_attached_payload_must_be_the_body(fake: UniversignFake) -> None:
    header, _, signature = fake.key.sign(BODY).partition("..")
    assert verifier(fake).verify(f"{header}.{b64url(BODY)}.{signature}", BODY)
    with pytest.raises(SignatureError, match="attached"):
        verifier(fake).verify(f"{header}.{b64url(b'other')}.{signature}", BODY)
