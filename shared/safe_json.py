"""JSON that came from outside (request bodies, signature headers, Pub/Sub data), decoded by one
rule so that no input can make a caller fail with anything but its own "bad input" error.

``json.loads`` fails on hostile input in ways its ``JSONDecodeError`` does not cover:
``RecursionError`` on deeply nested arrays or objects, and a plain ``ValueError`` on an integer
longer than Python's int-string limit (4,300 digits). It also accepts what later code cannot
use: lone surrogates (``"\\ud800"``, which ``str.encode`` refuses when the value is compared,
logged or published), and ``NaN``, ``Infinity`` and ``1e999`` (read as infinity), none of them
JSON, which ``json.dumps`` would hand on to the apps downstream. ``loads_untrusted`` refuses all
of these, and nesting deeper than any payload this project receives, with one error the caller
chooses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

# Deeper than every payload this project reads (Graph batches, Universign events and JWS
# headers, Pub/Sub triggers nest a few levels), far below the interpreter's recursion limit,
# so a refusal never depends on how deep the caller's stack already is.
MAX_DEPTH = 32

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class UntrustedJsonError(ValueError):
    """Input refused by ``loads_untrusted``; the message says why without quoting the input."""


class _Refused(Exception):
    """Raised inside the decoder; turned into the caller's error at the boundary."""


def loads_untrusted(
    data: bytes | str,
    *,
    bad: Callable[[str], Exception] = UntrustedJsonError,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Decode JSON received from outside, or raise ``bad(reason)``.

    Bytes must be UTF-8. Refused, each with a short reason that never quotes the input: text
    that is not JSON, nesting deeper than ``max_depth`` arrays/objects, an integer longer than
    the interpreter's int-string limit, a number too large for a float, ``NaN``, ``Infinity``
    and a lone surrogate in any string or key. ``bad`` builds the caller's own error from the
    reason (``BadMessage``, ``SignatureError``, ...); by default ``UntrustedJsonError``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        _check(value, max_depth)
    except UnicodeDecodeError:
        raise bad("not UTF-8") from None
    except _Refused as refused:
        raise bad(str(refused)) from None
    except RecursionError:
        raise bad(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as error:
        raise bad(f"not JSON ({error.msg})") from None
    except ValueError:
        # The only other ValueError json.loads raises: int("1" * 5000) is refused.
        raise bad("a number has too many digits") from None
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refused("a number is too large")
    return number


def _check(value: Any, max_depth: int) -> None:
    """Refuse a lone surrogate in any string or key, or nesting deeper than ``max_depth``.

    Iterative: walking the tree must not hit the recursion limit the parser just escaped.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                raise _Refused("a string is not valid Unicode (lone surrogate)")
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise _Refused(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
