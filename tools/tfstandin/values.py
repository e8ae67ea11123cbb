"""cty values as Terraform's plugin protocol carries them: msgpack (and state JSON) of a type.

Python form of a value of cty type ``ty`` (the type's JSON form: ``"string"``,
``["list", T]``, ``["object", {name: T}]``...):

- null is ``None``; an unknown is :data:`UNKNOWN` (at any depth);
- string ``str``, number ``int`` or ``float``, bool ``bool``;
- list, set and tuple a ``list`` (a set keeps the order it came in: its elements, objects
  included, need not be hashable), map and object a ``dict`` (an object has every attribute);
- a value of DynamicPseudoType (``"dynamic"``) a :class:`Dynamic`, which carries its real type.

Only msgpack is needed, so the dev venv can import this for its unit tests.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

CtyType = Any  # the JSON form of a cty type: str or list

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# cty writes an unknown as fixext1 of type 0; Terraform >= 1.6 may send a refined unknown
# (one that knows e.g. it is not null, or a string prefix) as ext type 12. Refinements only
# narrow what a value may become, so reading both as plain unknown loses nothing we use.
_EXT_UNKNOWN: Final = 0
_EXT_REFINED_UNKNOWN: Final = 12


class _Unknown:
    """A value not known until apply; compared by identity with :data:`UNKNOWN`."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True)
class Dynamic:
    """A value whose schema type is DynamicPseudoType: the wire carries its real type."""

    type: CtyType
    value: Any


class CtyValueError(ValueError):
    """A value does not conform to its type."""


# --------------------------------------------------------------------------- types


def kind(ty: CtyType) -> str:
    """The type's kind: string, number, bool, dynamic, list, set, map, object, tuple."""
    return ty if isinstance(ty, str) else str(ty[0])


def element_type(ty: CtyType) -> CtyType:
    return ty[1]


def attribute_types(ty: CtyType) -> dict[str, CtyType]:
    # An object type constraint may carry a third element (its optional attributes); a value's
    # type is the same object without it.
    result: dict[str, CtyType] = ty[1]
    return result


def parse_type(data: bytes | str) -> CtyType:
    return json.loads(data)


def type_json(ty: CtyType) -> bytes:
    return json.dumps(ty, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- msgpack


def _ext_hook(code: int, data: bytes) -> Any:
    if code in (_EXT_UNKNOWN, _EXT_REFINED_UNKNOWN):
        return UNKNOWN
    raise CtyValueError(f"unexpected msgpack extension type {code}")


def decode(ty: CtyType, data: bytes) -> Any:
    """A value of type ``ty`` from its msgpack bytes (DynamicValue.msgpack)."""
    raw = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    return _from_wire(ty, raw)


def encode(ty: CtyType, value: Any) -> bytes:
    """The msgpack bytes of ``value`` as a value of type ``ty``."""
    packed: bytes = msgpack.packb(_to_wire(ty, value), use_bin_type=True)
    return packed


def _number(raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise CtyValueError(f"bool {raw!r} where a number is expected")
    if isinstance(raw, int | float):
        return raw
    if isinstance(raw, str):
        # cty writes a number that is neither an int64 nor an exact float64 as its decimal text.
        try:
            return int(raw)
        except ValueError:
            return float(raw)
    raise CtyValueError(f"{raw!r} is not a number")


def _from_wire(ty: CtyType, raw: Any) -> Any:
    if raw is None or raw is UNKNOWN:
        return raw
    k = kind(ty)
    if k == "dynamic":
        if not (isinstance(raw, list) and len(raw) == 2):
            raise CtyValueError(f"dynamic value must be [type, value], got {raw!r}")
        real = parse_type(raw[0])
        return Dynamic(real, _from_wire(real, raw[1]))
    if k == "string":
        if not isinstance(raw, str):
            raise CtyValueError(f"{raw!r} is not a string")
        return raw
    if k == "number":
        return _number(raw)
    if k == "bool":
        if not isinstance(raw, bool):
            raise CtyValueError(f"{raw!r} is not a bool")
        return raw
    if k in ("list", "set"):
        return [_from_wire(element_type(ty), item) for item in raw]
    if k == "map":
        return {key: _from_wire(element_type(ty), item) for key, item in raw.items()}
    if k == "object":
        return {name: _from_wire(aty, raw.get(name)) for name, aty in attribute_types(ty).items()}
    if k == "tuple":
        return [_from_wire(ety, item) for ety, item in zip(ty[1], raw, strict=True)]
    raise CtyValueError(f"unsupported cty type {ty!r}")


def _number_to_wire(value: int | float) -> int | float | str:
    # As cty does: an int64 as an integer, an exact float as a float, anything else as text.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    return value


def _to_wire(ty: CtyType, value: Any) -> Any:
    if value is UNKNOWN:
        return msgpack.ExtType(_EXT_UNKNOWN, b"\x00")
    if value is None:
        return None
    k = kind(ty)
    if k == "dynamic":
        if not isinstance(value, Dynamic):
            raise CtyValueError(f"dynamic value {value!r} carries no type")
        return [type_json(value.type), _to_wire(value.type, value.value)]
    if k == "string":
        if not isinstance(value, str):
            raise CtyValueError(f"{value!r} is not a string")
        return value
    if k == "number":
        return _number_to_wire(_number(value))
    if k == "bool":
        if not isinstance(value, bool):
            raise CtyValueError(f"{value!r} is not a bool")
        return value
    if k == "list":
        return [_to_wire(element_type(ty), item) for item in value]
    if k == "set":
        # In their encodings' order, so equal sets encode alike (see equal()).
        items = [_to_wire(element_type(ty), item) for item in value]
        return sorted(items, key=lambda item: msgpack.packb(item, use_bin_type=True))
    if k == "map":
        return {key: _to_wire(element_type(ty), value[key]) for key in sorted(value)}
    if k == "object":
        atys = attribute_types(ty)
        return {name: _to_wire(atys[name], value.get(name)) for name in sorted(atys)}
    if k == "tuple":
        return [_to_wire(ety, item) for ety, item in zip(ty[1], value, strict=True)]
    raise CtyValueError(f"unsupported cty type {ty!r}")


# --------------------------------------------------------------------------- state JSON


def from_json(ty: CtyType, obj: Any) -> Any:
    """A value from Terraform's state JSON (UpgradeResourceState's raw state). Attributes the
    type does not have are dropped, as a provider drops those its schema no longer has."""
    if obj is None:
        return None
    k = kind(ty)
    if k == "dynamic":
        # State JSON writes a dynamic value as {"value": ..., "type": ...}.
        real = obj["type"]
        return Dynamic(real, from_json(real, obj["value"]))
    if k in ("string", "bool"):
        return obj
    if k == "number":
        return _number(obj)
    if k in ("list", "set"):
        return [from_json(element_type(ty), item) for item in obj]
    if k == "map":
        return {key: from_json(element_type(ty), item) for key, item in obj.items()}
    if k == "object":
        return {name: from_json(aty, obj.get(name)) for name, aty in attribute_types(ty).items()}
    if k == "tuple":
        return [from_json(ety, item) for ety, item in zip(ty[1], obj, strict=True)]
    raise CtyValueError(f"unsupported cty type {ty!r}")


# --------------------------------------------------------------------------- inspection


def is_known(value: Any) -> bool:
    """True if no part of the value is unknown."""
    if value is UNKNOWN:
        return False
    if isinstance(value, Dynamic):
        return is_known(value.value)
    if isinstance(value, list):
        return all(is_known(item) for item in value)
    if isinstance(value, dict):
        return all(is_known(item) for item in value.values())
    return True


def equal(ty: CtyType, a: Any, b: Any) -> bool:
    """Whether two values of ``ty`` are known to be equal (an unknown equals nothing, as for
    cty's ``Equals``, whose unknown result Terraform reads as "may differ")."""
    if not (is_known(a) and is_known(b)):
        return False
    return encode(ty, a) == encode(ty, b)
