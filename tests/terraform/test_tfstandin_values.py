"""The stand-in providers' value encoding (tools/tfstandin/values.py): cty values as msgpack,
the way Terraform core writes and reads them; what the planning code does with them; and the
archive_file data source's zip."""

from __future__ import annotations

import hashlib
import json
import zipfile

import msgpack  # type: ignore[import-untyped]
import pytest

from tools.tfstandin import archive, provider, values
from tools.tfstandin.values import UNKNOWN, Dynamic

# A resource type's implied type with what the gate meets: nested list and set blocks of
# objects, collections, numbers, and a dynamic attribute.
OBJECT = [
    "object",
    {
        "id": "string",
        "name": "string",
        "size": "number",
        "enabled": "bool",
        "labels": ["map", "string"],
        "tags": ["set", "string"],
        "anything": "dynamic",
        "rule": [
            "list",
            [
                "object",
                {
                    "action": ["set", ["object", {"type": "string", "class": "string"}]],
                    "age": "number",
                },
            ],
        ],
    },
]


def sample(**changes):
    value = {
        "id": "projects/p/things/t",
        "name": "t",
        "size": 3,
        "enabled": True,
        "labels": {"app": "x", "team": "y"},
        "tags": ["b", "a"],
        "anything": Dynamic(["list", "string"], ["x", "y"]),
        "rule": [
            {"action": [{"type": "Delete", "class": None}], "age": 30},
            {"action": [], "age": None},
        ],
    }
    value.update(changes)
    return value


def test_round_trip_of_a_nested_value():
    value = sample()
    decoded = values.decode(OBJECT, values.encode(OBJECT, value))
    assert decoded == {**value, "tags": sorted(value["tags"])}


@pytest.mark.parametrize(
    "path",
    [
        ("id",),
        ("rule",),
        ("rule", 0, "age"),
        ("rule", 0, "action"),
        ("rule", 0, "action", 0, "class"),
        ("labels", "app"),
        ("anything",),
    ],
)
def test_unknown_survives_at_any_depth(path):
    value = sample()
    target = value
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = UNKNOWN
    decoded = values.decode(OBJECT, values.encode(OBJECT, value))
    found = decoded
    for step in path:
        found = found[step]
    assert found is UNKNOWN
    assert not values.is_known(decoded)


def test_unknown_is_the_bytes_cty_writes():
    # cty: fixext1 of extension type 0.
    assert values.encode("string", UNKNOWN) == b"\xd4\x00\x00"


def test_refined_unknown_reads_as_unknown():
    # Terraform >= 1.6 may send an unknown that knows it is not null: extension type 12.
    refined = msgpack.packb(msgpack.ExtType(12, msgpack.packb({1: False})))
    assert values.decode("string", refined) is UNKNOWN


def test_null_object_and_null_attributes():
    assert values.decode(OBJECT, values.encode(OBJECT, None)) is None
    empty = {name: None for name in OBJECT[1]}
    assert values.decode(OBJECT, values.encode(OBJECT, {})) == empty


def test_object_attributes_are_written_in_sorted_order():
    raw = msgpack.unpackb(values.encode(OBJECT, sample()))
    assert list(raw) == sorted(OBJECT[1])


def test_dynamic_value_carries_its_type():
    raw = msgpack.unpackb(values.encode("dynamic", Dynamic(["map", "number"], {"a": 1})))
    assert json.loads(raw[0]) == ["map", "number"]
    assert raw[1] == {"a": 1}
    decoded = values.decode("dynamic", values.encode("dynamic", Dynamic("bool", True)))
    assert decoded == Dynamic("bool", True)


def test_unknown_dynamic_value_is_a_bare_unknown():
    assert values.decode("dynamic", values.encode("dynamic", UNKNOWN)) is UNKNOWN


@pytest.mark.parametrize(
    ("number", "wire"),
    [(3, 3), (3.0, 3), (2.5, 2.5), (2**70, str(2**70)), (-(2**63), -(2**63))],
)
def test_numbers_as_cty_writes_them(number, wire):
    raw = msgpack.unpackb(values.encode("number", number))
    assert raw == wire
    assert values.decode("number", values.encode("number", number)) == number


def test_number_written_as_text_is_read():
    assert values.decode("number", msgpack.packb("12345678901234567890123")) == (
        12345678901234567890123
    )
    assert values.decode("number", msgpack.packb("0.1")) == 0.1


def test_wrong_type_is_refused():
    with pytest.raises(values.CtyValueError):
        values.encode("string", 3)
    with pytest.raises(values.CtyValueError):
        values.decode("bool", msgpack.packb("true"))


def test_sets_compare_regardless_of_order():
    ty = ["set", ["object", {"type": "string", "class": "string"}]]
    a = [{"type": "A", "class": None}, {"type": "B", "class": "x"}]
    assert values.equal(ty, a, list(reversed(a)))
    assert not values.equal(ty, a, a[:1])
    assert not values.equal("string", UNKNOWN, UNKNOWN)


def test_state_json_to_value():
    state = {
        "id": "x",
        "size": 1,
        "tags": ["a"],
        "anything": {"value": ["x"], "type": ["list", "string"]},
        "removed_attribute": "dropped",
        "rule": [{"action": [{"type": "Delete", "class": None}], "age": 2}],
    }
    value = values.from_json(OBJECT, state)
    assert "removed_attribute" not in value
    assert value["anything"] == Dynamic(["list", "string"], ["x"])
    assert value["name"] is None
    assert values.decode(OBJECT, values.encode(OBJECT, value)) == value


# --------------------------------------------------------------------------- planning

BLOCK = provider.Block.from_json(
    {
        "attributes": {
            "name": {"type": "string", "required": True},
            "id": {"type": "string", "optional": True, "computed": True},
            "url": {"type": "string", "computed": True},
        },
        "block_types": {
            "service_config": {
                "nesting_mode": "list",
                "max_items": 1,
                "block": {
                    "attributes": {
                        "memory": {"type": "string", "optional": True},
                        "uri": {"type": "string", "computed": True},
                    },
                },
            },
            "action": {
                "nesting_mode": "set",
                "block": {
                    "attributes": {
                        "type": {"type": "string", "required": True},
                        "class": {"type": "string", "optional": True, "computed": True},
                    }
                },
            },
        },
    }
)


def test_create_plans_computed_attributes_unknown_at_any_depth():
    config = {
        "name": "f",
        "id": None,
        "url": None,
        "service_config": [{"memory": "256M", "uri": None}],
        "action": [{"type": "Delete", "class": None}, {"type": "Keep", "class": "x"}],
    }
    planned = provider.unknown_computed(BLOCK, config)
    assert planned["id"] is UNKNOWN and planned["url"] is UNKNOWN
    assert planned["service_config"] == [{"memory": "256M", "uri": UNKNOWN}]
    assert planned["action"] == [
        {"type": "Delete", "class": UNKNOWN},
        {"type": "Keep", "class": "x"},
    ]
    # And the plan survives the wire.
    ty = BLOCK.implied_type()
    assert values.decode(ty, values.encode(ty, planned))["service_config"][0]["uri"] is UNKNOWN


def test_replace_paths_name_list_elements_and_whole_sets():
    prior = {
        "name": "f",
        "id": "i",
        "url": "u",
        "service_config": [{"memory": "256M", "uri": "x"}],
        "action": [{"type": "Delete", "class": "c"}],
    }
    paths = [["name"], ["service_config", "memory"], ["action", "type"]]
    assert provider.replace_paths(BLOCK, prior, prior, paths) == []
    changed = {
        **prior,
        "service_config": [{"memory": "512M", "uri": "x"}],
        "action": [{"type": "Keep", "class": "c"}],
    }
    assert provider.replace_paths(BLOCK, prior, changed, paths) == [
        (("attr", "service_config"), ("index", 0), ("attr", "memory")),
        (("attr", "action"),),
    ]
    assert provider.replace_paths(BLOCK, prior, {**prior, "name": UNKNOWN}, paths) == [
        (("attr", "name"),)
    ]


# --------------------------------------------------------------------------- archive_file


def test_archive_is_reproducible_and_checksummed(tmp_path):
    """Object names embed the MD5: the same inputs must give the same bytes on every read."""
    sources = [
        {"filename": "main.py", "content": "print(1)\n"},
        {"filename": "shared/util.py", "content": "X = 1\n"},
    ]
    first = archive.build(
        {"type": "zip", "output_path": str(tmp_path / "a.zip"), "source": sources}
    )
    again = archive.build(
        {"type": "zip", "output_path": str(tmp_path / "b.zip"), "source": sources[::-1]}
    )
    assert first == again
    data = (tmp_path / "a.zip").read_bytes()
    assert first["output_md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert (
        first["id"] == first["output_sha"] == hashlib.sha1(data, usedforsecurity=False).hexdigest()
    )
    assert first["output_size"] == len(data)
    with zipfile.ZipFile(tmp_path / "a.zip") as packed:
        assert packed.namelist() == ["main.py", "shared/util.py"]


def test_archive_of_a_directory_honours_excludes(tmp_path):
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "main.py").write_text("x")
    (folder / "sub" / "skip.txt").write_text("y")
    (folder / "notes.md").write_text("z")
    config = {
        "type": "zip",
        "source_dir": str(folder),
        "excludes": ["sub/skip.txt", "*.md"],
        "output_path": str(folder / "out.zip"),  # inside its own source: never packs itself
    }
    archive.build(config)
    archive.build(config)
    with zipfile.ZipFile(folder / "out.zip") as packed:
        assert packed.namelist() == ["main.py"]
