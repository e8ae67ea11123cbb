"""What a stand-in provider does, from a schema file alone (no gRPC here; server.py serves it).

It plans and applies the way an SDKv2 provider does, so that Terraform core sees at plan time
exactly what it would see from the real provider: every computed attribute left null in the
configuration is unknown on create (at any depth), an update keeps what core proposes and asks
for replacement when a ForceNew path changes, and apply fills each unknown with a fixed,
plausible value (a few in real shapes, because other resources consume them).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.tfstandin import archive
from tools.tfstandin.values import UNKNOWN, CtyType, Dynamic, encode, equal, kind

# An attribute path, as steps ("attr", name), ("index", int) or ("key", str).
AttrPath = tuple[tuple[str, str | int], ...]

# Values that other resources read and whose shape matters downstream, by resource or data
# source type and attribute path (nested block attributes dotted, list indexes left out).
# Templates take {attribute} of the same object's known top-level strings, falling back to the
# provider configuration's ({project}, {region}); {location} falls back to the region.
# Anything else gets a generic value (StandIn._fill): project/region/location/zone as above,
# id "<type>/<hash of the configuration>", other strings "fake-<name>", numbers 0, bools
# false, collections empty.
TEMPLATES: dict[str, dict[str, str]] = {
    "google_service_account": {
        "email": "{account_id}@{project}.iam.gserviceaccount.com",
        "member": "serviceAccount:{email}",
        "name": "projects/{project}/serviceAccounts/{email}",
        "id": "projects/{project}/serviceAccounts/{email}",
    },
    "google_pubsub_topic": {"id": "projects/{project}/topics/{name}"},
    "google_pubsub_subscription": {"id": "projects/{project}/subscriptions/{name}"},
    "google_secret_manager_secret": {
        "id": "projects/{project}/secrets/{secret_id}",
        "name": "projects/{project}/secrets/{secret_id}",
    },
    "google_project": {
        "number": "123456789012",
        "project_id": "{project}",
        "name": "{project}",
        "id": "projects/{project}",
    },
    "google_storage_project_service_account": {
        "email_address": "service-123456789012@gs-project-accounts.iam.gserviceaccount.com",
        "member": "serviceAccount:{email_address}",
    },
    "google_cloudfunctions2_function": {
        "id": "projects/{project}/locations/{location}/functions/{name}",
        "url": "https://{location}-{project}.cloudfunctions.net/{name}",
        "service_config.service": "projects/{project}/locations/{location}/services/{name}",
        "service_config.uri": "https://{name}-abcdefghij-ew.a.run.app",
    },
    "google_storage_bucket": {
        "id": "{name}",
        "url": "gs://{name}",
        "self_link": "https://www.googleapis.com/storage/v1/b/{name}",
    },
    "google_project_iam_custom_role": {
        "id": "projects/{project}/roles/{role_id}",
        "name": "projects/{project}/roles/{role_id}",
    },
    "time_sleep": {"id": "2000-01-01T00:00:00Z"},
}


class Problem(Exception):
    """An error diagnostic: ``summary`` and ``detail``, as Terraform shows them."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Attribute:
    type: CtyType
    computed: bool
    nested: NestedBlock | None = None  # a protocol 6 nested attribute type, as a block


@dataclass(frozen=True)
class NestedBlock:
    nesting: str  # single, group, list, set or map
    block: Block


@dataclass(frozen=True)
class Block:
    attributes: dict[str, Attribute]
    block_types: dict[str, NestedBlock]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Block:
        """From the block format of ``terraform providers schema -json``."""
        attributes: dict[str, Attribute] = {}
        for name, spec in (obj.get("attributes") or {}).items():
            computed = bool(spec.get("computed"))
            if "nested_type" in spec:
                nt = spec["nested_type"]
                nested = NestedBlock(nt["nesting_mode"], cls.from_json(nt))
                attributes[name] = Attribute(_nested_type(nested), computed, nested)
            else:
                attributes[name] = Attribute(spec["type"], computed)
        block_types = {
            name: NestedBlock(bt["nesting_mode"], cls.from_json(bt.get("block") or {}))
            for name, bt in (obj.get("block_types") or {}).items()
        }
        return cls(attributes, block_types)

    def implied_type(self) -> CtyType:
        """The object type of this block's values, as Terraform core derives it."""
        atys = {name: a.type for name, a in self.attributes.items()}
        atys.update({name: _nested_type(nb) for name, nb in self.block_types.items()})
        return ["object", atys]


def _has_dynamic(ty: CtyType) -> bool:
    k = kind(ty)
    if k == "dynamic":
        return True
    if k in ("list", "set", "map"):
        return _has_dynamic(ty[1])
    if k == "object":
        return any(_has_dynamic(t) for t in ty[1].values())
    if k == "tuple":
        return any(_has_dynamic(t) for t in ty[1])
    return False


def _nested_type(nb: NestedBlock) -> CtyType:
    obj = nb.block.implied_type()
    if nb.nesting in ("single", "group"):
        return obj
    # Core cannot give a list or map of objects with a dynamic attribute one element type.
    if nb.nesting in ("list", "map") and _has_dynamic(obj):
        return "dynamic"
    return [nb.nesting, obj]


def _map_nested(nesting: str, value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to each object of a nested block's value."""
    if value is None or value is UNKNOWN or isinstance(value, Dynamic):
        return value
    if nesting in ("single", "group"):
        return fn(value)
    if nesting == "map":
        return {key: fn(item) for key, item in value.items()}
    return [fn(item) for item in value]


def unknown_computed(block: Block, obj: Any) -> Any:
    """``obj`` with every computed attribute that is null made unknown, at any depth: what an
    SDKv2 provider plans on create, and what core then must not depend on at plan time."""
    if obj is None or obj is UNKNOWN:
        return obj
    out = dict(obj)
    for name, attr in block.attributes.items():
        if out.get(name) is None and attr.computed:
            out[name] = UNKNOWN
        elif attr.nested is not None:
            nested = attr.nested
            out[name] = _map_nested(
                nested.nesting, out.get(name), functools.partial(unknown_computed, nested.block)
            )
    for name, nb in block.block_types.items():
        out[name] = _map_nested(
            nb.nesting, out.get(name), functools.partial(unknown_computed, nb.block)
        )
    return out


def _at_path(
    block: Block, obj: Any, names: list[str], prefix: AttrPath
) -> dict[AttrPath, tuple[Any, Any]]:
    """The values at the schema path ``names`` in ``obj``, by concrete path, each with its
    type: a list index or map key for each element of a list or map block on the way; a set
    block ends the path (its elements have no address, so SDKv2 names the whole set)."""
    name, rest = names[0], names[1:]
    value: Any = obj if obj is None or obj is UNKNOWN else obj.get(name)
    path = (*prefix, ("attr", name))
    attr = block.attributes.get(name)
    if attr is not None:
        nb = attr.nested
        ty = attr.type
    elif name in block.block_types:
        nb = block.block_types[name]
        ty = _nested_type(nb)
    else:
        return {}  # a path the schema does not have: nothing to compare
    if not rest or nb is None or value is None or value is UNKNOWN or nb.nesting == "set":
        return {path: (value, ty)}
    if nb.nesting in ("single", "group"):
        return _at_path(nb.block, value, rest, path)
    found: dict[AttrPath, tuple[Any, Any]] = {}
    items = value.items() if nb.nesting == "map" else enumerate(value)
    step = "key" if nb.nesting == "map" else "index"
    for key, item in items:
        found.update(_at_path(nb.block, item, rest, (*path, (step, key))))
    return found


def replace_paths(block: Block, prior: Any, planned: Any, paths: list[list[str]]) -> list[AttrPath]:
    """The concrete paths among the ForceNew ``paths`` whose value changes (or is unknown)."""
    changed: list[AttrPath] = []
    for names in paths:
        before = _at_path(block, prior, names, ())
        after = _at_path(block, planned, names, ())
        # A path on one side only (a list block that grew or shrank) compares with null.
        for path in sorted(before.keys() | after.keys(), key=repr):
            old, old_type = before.get(path, (None, None))
            new, new_type = after.get(path, (None, None))
            if not equal(old_type or new_type, old, new) and path not in changed:
                changed.append(path)
    return changed


# --------------------------------------------------------------------------- fake values


# Computed attributes, at any depth, that take the resource's (or provider's) own value.
_PLACEMENT = ("project", "region", "location", "zone")


class _Context(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"unset-{key}"


def _fill(ty: CtyType, value: Any, path: tuple[str, ...], fake: Callable[..., Any]) -> Any:
    """``value`` with every unknown in it replaced by ``fake(type, attribute names)``."""
    if value is UNKNOWN:
        return fake(ty, path)
    if value is None:
        return None
    k = kind(ty)
    if k == "dynamic":
        return Dynamic(value.type, _fill(value.type, value.value, path, fake))
    if k in ("list", "set"):
        return [_fill(ty[1], item, path, fake) for item in value]
    if k == "map":
        return {key: _fill(ty[1], item, path, fake) for key, item in value.items()}
    if k == "object":
        return {n: _fill(t, value.get(n), (*path, n), fake) for n, t in ty[1].items()}
    if k == "tuple":
        return [_fill(t, item, path, fake) for t, item in zip(ty[1], value, strict=True)]
    return value


class StandIn:
    """One provider, from its schema file's JSON."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.name = str(spec["source"]).rsplit("/", 1)[-1]
        self.provider = Block.from_json(spec["provider"]["block"])
        self._resources: dict[str, Block] = {}
        self._data_sources: dict[str, Block] = {}
        self.config: dict[str, Any] = {}

    def resource(self, type_name: str) -> Block:
        # Parsed on first use: the google schema has hundreds of types and a plan uses a few.
        if type_name not in self._resources:
            if type_name not in self.spec["resource_schemas"]:
                raise Problem(f"{self.name} stand-in has no resource type {type_name}")
            self._resources[type_name] = Block.from_json(
                self.spec["resource_schemas"][type_name]["block"]
            )
        return self._resources[type_name]

    def data_source(self, type_name: str) -> Block:
        if type_name not in self._data_sources:
            if type_name not in self.spec["data_source_schemas"]:
                raise Problem(f"{self.name} stand-in has no data source {type_name}")
            self._data_sources[type_name] = Block.from_json(
                self.spec["data_source_schemas"][type_name]["block"]
            )
        return self._data_sources[type_name]

    def configure(self, config: dict[str, Any] | None) -> None:
        self.config = dict(config or {})

    # ------------------------------------------------------------------ resources

    def plan(self, type_name: str, prior: Any, proposed: Any) -> tuple[Any, list[AttrPath]]:
        """The planned state and the paths that force replacement."""
        block = self.resource(type_name)
        if proposed is None:
            return None, []  # destroy
        if prior is None:
            return unknown_computed(block, proposed), []
        # Core's proposal already keeps the prior value of every computed attribute the
        # configuration leaves null, so an unchanged configuration plans no change.
        forcenew = self.spec.get("requires_replace", {}).get(type_name, [])
        return proposed, replace_paths(block, prior, proposed, forcenew)

    def apply(self, type_name: str, planned: Any) -> Any:
        """The new state: the plan with its unknowns made known. A destroy returns null.
        time_sleep, like everything here, returns at once: the gate proves that the resources
        waiting on it are ordered after it, not how long it waits."""
        if planned is None:
            return None
        return self._fill(type_name, self.resource(type_name), planned)

    # ------------------------------------------------------------------ data sources

    def read(self, type_name: str, config: Any) -> Any:
        block = self.data_source(type_name)
        state = dict(config)
        if self.name == "archive" and type_name == "archive_file":
            try:
                built = archive.build(config)
            except (archive.ArchiveError, OSError) as err:
                raise Problem("Archive creation error", str(err)) from err
            state.update({k: v for k, v in built.items() if k in block.attributes})
        return self._fill(type_name, block, unknown_computed(block, state))

    # ------------------------------------------------------------------ fake values

    def _context(self, obj: dict[str, Any]) -> _Context:
        ctx = _Context({k: v for k, v in self.config.items() if isinstance(v, str) and v})
        ctx.update({k: v for k, v in obj.items() if isinstance(v, str) and v})
        ctx.setdefault("location", ctx.get("region", "unset-location"))
        return ctx

    def _fill(self, type_name: str, block: Block, obj: dict[str, Any]) -> Any:
        templates = TEMPLATES.get(type_name, {})
        obj = dict(obj)
        ctx = self._context(obj)
        # Top-level templates first, in table order, so later ones can use earlier results
        # (a service account's member is built from its email).
        for name, template in templates.items():
            if "." not in name and obj.get(name) is UNKNOWN:
                obj[name] = ctx[name] = template.format_map(ctx)
        packed = encode(block.implied_type(), obj)
        # A generic id, unique per configuration (not security: usedforsecurity=False).
        digest = hashlib.sha1(packed, usedforsecurity=False).hexdigest()[:12]

        def fake(ty: CtyType, path: tuple[str, ...]) -> Any:
            k = kind(ty)
            if k == "string":
                template = templates.get(".".join(path))
                if template is not None:
                    return template.format_map(ctx)
                if path == ("id",):
                    return f"{type_name}/{digest}"
                if path[-1] in _PLACEMENT:
                    return ctx[path[-1]]
                return f"fake-{path[-1]}"
            if k == "number":
                return 0
            if k == "bool":
                return False
            if k in ("list", "set"):
                return []
            if k == "tuple":
                return [fake(t, path) for t in ty[1]]
            if k == "map":
                return {}
            if k == "object":
                return {n: fake(t, (*path, n)) for n, t in ty[1].items()}
            return None  # dynamic: null is a known value of any type

        return _fill(block.implied_type(), obj, (), fake)
