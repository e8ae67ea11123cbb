"""shared.safe_json: the one rule for JSON received from outside. Every hostile shape that makes
``json.loads`` raise something other than JSONDecodeError, or return what later code cannot
encode, is refused with the caller's error and a reason that never quotes the input."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from shared.safe_json import MAX_DEPTH, UntrustedJsonError, loads_untrusted

CANARY = "canary-7f3a"
KEY = f'{{"{CANARY}": '
LIMIT_DIGITS = sys.get_int_max_str_digits()

REFUSED = [
    # (input, reason)
    (b"[" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
    ('{"a":' * 5000 + "1" + "}" * 5000, f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    ('{"value": [{"resourceData": ' + "[" * 900 + "]" * 900 + "}]}", "nested deeper than"),
    (b'{"n": ' + b"9" * (LIMIT_DIGITS + 1) + b"}", "a number has too many digits"),
    (b"-" + b"1" * 10_000, "a number has too many digits"),
    (b"[1e999]", "a number is too large"),
    (b"NaN", "NaN is not JSON"),
    (b'{"x": -Infinity}', "-Infinity is not JSON"),
    (b'"\\ud800"', "a string is not valid Unicode (lone surrogate)"),
    (b'{"clientState": "abc\\udfff"}', "a string is not valid Unicode (lone surrogate)"),
    (b'{"\\udc00": 1}', "a string is not valid Unicode (lone surrogate)"),
    ('["\ud800"]', "a string is not valid Unicode (lone surrogate)"),  # str input
    (b'{"k": "\xff\xfe"}', "not UTF-8"),
    (b"\xed\xa0\x80", "not UTF-8"),  # a surrogate encoded as if it were UTF-8
    ('{"a": 1'.encode("utf-16"), "not UTF-8"),
    (b"", "not JSON (Expecting value)"),
    (b"{not json", "not JSON (Expecting property name enclosed in double quotes)"),
    (b"\xef\xbb\xbf{}", "not JSON (Unexpected UTF-8 BOM (decode using utf-8-sig))"),
]


@pytest.mark.parametrize(("data", "reason"), REFUSED, ids=lambda v: repr(v)[:40])
def test_hostile_input_is_refused_with_a_reason(data: bytes | str, reason: str) -> None:
    with pytest.raises(UntrustedJsonError) as refused:
        loads_untrusted(data)
    assert str(refused.value).startswith(reason)
    assert isinstance(refused.value, ValueError)  # callers that catch ValueError still do
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


class BadInput(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"refused: {reason}")


@pytest.mark.parametrize(("data", "reason"), REFUSED, ids=lambda v: repr(v)[:40])
def test_the_callers_error_is_raised(data: bytes | str, reason: str) -> None:
    with pytest.raises(BadInput, match=r"^refused: "):
        loads_untrusted(data, bad=BadInput)


@pytest.mark.parametrize(
    "data",
    [
        KEY + "[" * 5000 + "]" * 5000 + "}",
        KEY + "7" * 5000 + "}",
        KEY + '"\\ud800"}',
        KEY + "NaN}",
        KEY + "oops}",
    ],
)
def test_the_reason_never_quotes_the_input(data: str) -> None:
    with pytest.raises(UntrustedJsonError) as refused:
        loads_untrusted(data)
    assert CANARY not in str(refused.value) and len(str(refused.value)) < 100


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b'{"value": []}', {"value": []}),
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one valid character
        ('"é ✓"'.encode(), "é ✓"),
        (b"9" * LIMIT_DIGITS, int("9" * LIMIT_DIGITS)),
        (b"[1.5e308, -2e-300, 0]", [1.5e308, -2e-300, 0]),
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, eval("[" * MAX_DEPTH + "]" * MAX_DEPTH)),  # noqa: S307
        (b' {"a": {"b": [null, true]}} ', {"a": {"b": [None, True]}}),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_ordinary_json_is_decoded(data: bytes | str, value: Any) -> None:
    assert loads_untrusted(data) == value


def test_max_depth_is_the_callers_choice() -> None:
    assert loads_untrusted(b'{"a": {"b": 1}}', max_depth=2) == {"a": {"b": 1}}
    with pytest.raises(UntrustedJsonError, match="nested deeper than 1 levels"):
        loads_untrusted(b'{"a": {"b": 1}}', max_depth=1)


def test_refusal_does_not_depend_on_how_deep_the_callers_stack_is() -> None:
    """Nesting the parser could handle on an empty stack is refused the same way near the
    recursion limit, where json.loads itself would raise RecursionError."""
    body = "[" * 200 + "]" * 200
    depth = sys.getrecursionlimit() - 150

    def at_depth(n: int) -> str:
        if n:
            return at_depth(n - 1)
        with pytest.raises(UntrustedJsonError) as refused:
            loads_untrusted(body)
        return str(refused.value)

    assert at_depth(depth) == f"nested deeper than {MAX_DEPTH} levels"
