"""Signature verification against the fake's real RSA keys (no emulators needed)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from typing import Any

import pytest
from universign_jws import JwksVerifier, KeyCooldown, KeysUnavailable, SignatureError

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


def forged(kid: str) -> str:
    return SigningKey.generate().sign(BODY, kid=kid)


def test_an_unknown_kid_is_checked_once_then_refused_until_its_interval_passes(
    fake: UniversignFake,
) -> None:
    clock = Clock()
    v = verifier(fake, clock)
    v.verify(fake.key.sign(BODY), BODY)
    compact = forged("scd_forged")
    for _ in range(5):
        with pytest.raises(SignatureError, match="unknown key"):
            v.verify(compact, BODY)
    # One fetch at start, one to check the unknown kid; its repeats hammered nothing.
    assert fake.count(JWKS_ROUTE) == 2
    clock.now += 61
    with pytest.raises(SignatureError, match="unknown key"):
        v.verify(compact, BODY)
    assert fake.count(JWKS_ROUTE) == 3


def test_a_key_published_right_after_a_forged_kid_is_accepted(fake: UniversignFake) -> None:
    clock = Clock()
    v = verifier(fake, clock)
    v.verify(fake.key.sign(BODY), BODY)
    with pytest.raises(SignatureError, match="unknown key"):
        v.verify(forged("scd_forged"), BODY)
    clock.now += 1  # within the refetch interval of the forged kid
    new = fake.rotate_key()
    assert v.verify(new.sign(BODY), BODY) == new.kid
    assert fake.count(JWKS_ROUTE) == 3


def test_a_forged_kid_flood_is_bounded_and_never_refuses_an_unchecked_kid(
    fake: UniversignFake,
) -> None:
    clock = Clock()
    http = HttpClient(timeout=5, retry=RetryPolicy(attempts=1))
    v = JwksVerifier(
        f"{fake.url}{JWKS_ROUTE}",
        http,
        ttl=3600,
        min_refetch=60,
        max_fetches_per_minute=3,
        monotonic=clock,
    )
    v.verify(fake.key.sign(BODY), BODY)  # fetch 1 of this minute
    clock.now += 10
    for i in range(2):  # fetches 2 and 3: checked, then refused for good
        with pytest.raises(SignatureError, match="unknown key"):
            v.verify(forged(f"scd_forged{i}"), BODY)
    clock.now += 5
    for i in range(2, 20):  # the budget is spent: not checked, so not refused for good
        with pytest.raises(KeyCooldown) as caught:
            v.verify(forged(f"scd_forged{i}"), BODY)
        assert caught.value.retry_after == 45  # when the first fetch leaves the minute
    assert fake.count(JWKS_ROUTE) == 3
    # A genuine key published meanwhile is asked for again, not refused.
    new = fake.rotate_key()
    with pytest.raises(KeyCooldown):
        v.verify(new.sign(BODY), BODY)
    clock.now += 45
    assert v.verify(new.sign(BODY), BODY) == new.kid
    assert fake.count(JWKS_ROUTE) == 4


def test_a_slow_fetch_for_an_unknown_kid_does_not_hold_up_a_known_key(
    fake: UniversignFake,
) -> None:
    v = verifier(fake)
    v.verify(fake.key.sign(BODY), BODY)
    fake.inject(JWKS_ROUTE, 503, delay=3.0)

    def unknown() -> None:
        with contextlib.suppress(KeysUnavailable):
            v.verify(forged("scd_forged"), BODY)

    slow = threading.Thread(target=unknown)
    slow.start()
    deadline = time.monotonic() + 5
    while fake.count(JWKS_ROUTE) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    assert v.verify(fake.key.sign(BODY), BODY) == fake.key.kid
    assert time.monotonic() - started < 1.5  # did not wait for the 3 s fetch
    slow.join(timeout=10)


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


def test_unencoded_payload_must_be_declared_critical(fake: UniversignFake) -> None:
    """RFC 7797 section 6: ``"b64": false`` is only valid with ``b64`` listed in ``crit``,
    even under a signature that verifies."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    extras: list[dict[str, Any]] = [{}, {"crit": []}]
    for extra in extras:
        header = b64url(
            json.dumps({"alg": "PS256", "kid": fake.key.kid, "b64": False, **extra}).encode()
        )
        signature = fake.key.private.sign(
            header.encode() + b"." + BODY,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
        with pytest.raises(SignatureError, match="crit"):
            verifier(fake).verify(f"{header}..{b64url(signature)}", BODY)


DEEP = 2500  # well past the interpreter's recursion limit, still under the header size limit


@pytest.mark.parametrize(
    "protected",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"alg":"PS256","kid":"k","x":' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"alg":"PS256","kid":"k","x":' + b"9" * 5000 + b"}",
        b'{"alg":"PS256","kid":"\xff"}',
        '{"alg":"PS256","kid":"k"}'.encode("utf-16-le"),
    ],
    ids=["nested", "nested-in-object", "huge-integer", "invalid-utf8", "utf16"],
)
def test_a_protected_header_no_json_parser_takes_is_a_bad_signature(
    fake: UniversignFake, protected: bytes
) -> None:
    _, _, signature = fake.key.sign(BODY).partition("..")
    with pytest.raises(SignatureError, match="protected header"):
        verifier(fake).verify(f"{b64url(protected)}..{signature}", BODY)
    assert fake.count(JWKS_ROUTE) == 0


def nested_route(fake: UniversignFake) -> str:
    """A path on the fake that answers 200 with JSON nested past the recursion limit."""
    from devtools.fakes.base import Response

    fake.route("GET", "/nested", lambda _r: Response(raw=b"[" * 100_000 + b"]" * 100_000))
    return f"{fake.url}/nested"


def test_a_key_set_no_json_parser_takes_is_unavailable_not_a_crash(fake: UniversignFake) -> None:
    http = HttpClient(timeout=5, retry=RetryPolicy(attempts=1))
    v = JwksVerifier(nested_route(fake), http, monotonic=Clock())
    with pytest.raises(KeysUnavailable):
        v.verify(fake.key.sign(BODY), BODY)
