"""Every import in a function's deploy archive resolves where the function runs.

Cloud Build installs a function from its folder's requirements.txt alone, while the tests'
development venv holds every function's packages at once; a folder that forgets one still
passes everywhere but in production. This check reads every module the archive ships (the
folder's own files and all of ``shared/``, laid out by :func:`devtools.shipenv.stage`) with
``ast``, and requires each module it imports, anywhere in the file (inside functions, under
``if``/``try``, ``importlib.import_module("literal")``), to come from

* the standard library (``sys.stdlib_module_names``),
* the shipped files themselves (sibling modules of main.py, package ``shared``), or
* a distribution the folder's requirements.txt names, directly or as a declared dependency:
  the closure of Requires-Dist (with extras) over the distributions installed in the
  function's own venv, which :mod:`devtools.shipenv` builds from that file. Import names map
  to distributions through each one's RECORD (its installed files), so namespace packages are
  told apart: ``google.cloud.storage`` is google-cloud-storage's, not any google-* package's.

Only ``if TYPE_CHECKING:`` bodies are exempt: they never run. All of shared/ is checked
against every function, imported by it or not: the archive ships every shared module, and the
next edit that imports one (directly or through another shared module) must not be the one
that discovers its dependency is missing in production.

    .venv/bin/python -m tools.import_check [NAME ...]   # all function folders by default

Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata as metadata
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `devtools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import shipenv

FRAMEWORK = "functions-framework"  # Cloud Build installs it whether named or not
_EXTENSION = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?:\.[\w-]+)?\.(?:so|pyd)$")
_REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
                          r"(?:\[(?P<extras>[^\]]*)\])?")  # fmt: skip
_EXTRA_IN_MARKER = re.compile(
    r"""\bextra\s*==\s*['"](?P<a>[^'"]+)['"]|['"](?P<b>[^'"]+)['"]\s*==\s*extra\b"""
)


def normalize(name: str) -> str:
    """A distribution or extra name as PEP 503 / 685 compare them."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- what is imported


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported. ``names`` are a from-import's names (each may
    be a submodule or an attribute of ``module``); empty for ``import module``."""

    module: str
    file: str
    line: int
    names: tuple[str, ...] = ()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str | None, level: int, package: str) -> str | None:
    """The absolute name of ``from <level dots><module> import ...`` in ``package``."""
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level > len(parts):
        return None  # beyond the top: fails at import time
    base = parts[: len(parts) - level + 1]
    return ".".join([*base, module] if module else base)


class _Collector(ast.NodeVisitor):
    def __init__(self, file: str, package: str) -> None:
        self.file, self.package = file, package
        self.found: list[Import] = []
        self.broken: list[tuple[int, str]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # the body never runs; an else branch does
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(alias.name, self.file, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _absolute(node.module, node.level, self.package)
        if module is None:
            self.broken.append((node.lineno, f"relative import beyond the top: level {node.level}"))
            return
        names = tuple(a.name for a in node.names if a.name != "*")
        self.found.append(Import(module, self.file, node.lineno, names))

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("x") / import_module("x") / __import__("x") with a literal.
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called in {"import_module", "__import__"} and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                module = first.value
                if module.startswith("."):
                    level = len(module) - len(module.lstrip("."))
                    module = _absolute(module.lstrip(".") or None, level, self.package) or module
                self.found.append(Import(module, self.file, node.lineno))
        self.generic_visit(node)


def module_name(relative: Path) -> str:
    """``shared/lock.py`` -> ``shared.lock``; ``shared/__init__.py`` -> ``shared``."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(path: Path, root: Path) -> tuple[list[Import], list[Problem]]:
    """Every import in ``path`` (a file under ``root``), and what cannot even be parsed."""
    relative = path.relative_to(root)
    name = module_name(relative)
    package = name if relative.name == "__init__.py" else name.rpartition(".")[0]
    file = relative.as_posix()
    try:
        tree = ast.parse(path.read_text("utf-8"), filename=file)
    except SyntaxError as err:
        return [], [Problem(file, err.lineno or 0, "", f"does not parse: {err.msg}")]
    collector = _Collector(file, package)
    collector.visit(tree)
    broken = [Problem(file, line, "", why) for line, why in collector.broken]
    return collector.found, broken


# --------------------------------------------------------------------------- what is provided


@dataclass
class ModuleIndex:
    """Dotted module names something provides. ``modules`` includes namespace packages (a
    directory without ``__init__.py`` that only holds other modules); ``regular`` only the
    modules and packages that have code, i.e. can define attributes for ``from x import y``."""

    modules: set[str] = field(default_factory=set)
    regular: set[str] = field(default_factory=set)
    owners: dict[str, set[str]] = field(default_factory=dict)  # module -> distributions

    def add(self, dotted: str, *, regular: bool, owner: str = "") -> None:
        parts = dotted.split(".")
        if not all(p.isidentifier() for p in parts):
            return  # data directories, foo-1.0.data/, ...
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            self.modules.add(name)
            if owner:
                self.owners.setdefault(name, set()).add(owner)
        if regular:
            self.regular.add(dotted)

    def add_file(self, relative: str, owner: str = "") -> None:
        """Index one installed or shipped file, by its path relative to the import root."""
        parts = relative.split("/")
        if any(p in {"", ".", ".."} for p in parts) or "__pycache__" in parts:
            return
        if parts[-1].endswith(".py"):
            stem = parts[-1][:-3]
        else:
            match = _EXTENSION.match(parts[-1])
            if match is None:
                return
            stem = match["name"]
        if stem == "__init__":
            self.add(".".join(parts[:-1]), regular=True, owner=owner)
        else:
            self.add(".".join([*parts[:-1], stem]), regular=True, owner=owner)

    def update(self, other: ModuleIndex) -> None:
        self.modules |= other.modules
        self.regular |= other.regular
        for name, owners in other.owners.items():
            self.owners.setdefault(name, set()).update(owners)


def shipped_index(app: Path) -> ModuleIndex:
    """The modules a staged archive provides itself (it is first on sys.path)."""
    index = ModuleIndex()
    for path in sorted(app.rglob("*")):
        if path.is_file():
            index.add_file(path.relative_to(app).as_posix())
    return index


def _files_of(dist: metadata.Distribution) -> Iterator[str]:
    for file in dist.files or []:
        yield file.as_posix()


def distribution_index(dists: Iterable[metadata.Distribution]) -> ModuleIndex:
    """The modules the given distributions install, from their RECORD (or top_level.txt when a
    distribution has no file list)."""
    index = ModuleIndex()
    for dist in dists:
        owner = normalize(dist.metadata["Name"])
        files = list(_files_of(dist))
        for relative in files:
            index.add_file(relative, owner)
        if not files:
            for top in (dist.read_text("top_level.txt") or "").split():
                index.add(top, regular=True, owner=owner)
    return index


@dataclass(frozen=True)
class Requirement:
    name: str  # normalized
    extras: frozenset[str]


def parse_requirement(line: str) -> Requirement | None:
    """Name and extras of a requirement line or a Requires-Dist value (None: not one)."""
    match = _REQUIREMENT.match(line)
    if match is None:
        return None
    extras = frozenset(normalize(e) for e in (match["extras"] or "").split(",") if e.strip())
    return Requirement(normalize(match["name"]), extras)


def read_requirements(
    path: Path, seen: set[Path] | None = None
) -> tuple[list[Requirement], list[str]]:
    """The requirements a requirements.txt names (following -r), and the lines that name no
    distribution (a bare URL or path: what it installs cannot be told from here)."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return [], []
    seen.add(path)
    found: list[Requirement] = []
    unknown: list[str] = []
    text = path.read_text("utf-8").replace("\\\n", "")
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        include = re.match(r"^(?:-r|--requirement)(?:\s+|=)(\S+)", line)
        if include:
            more, odd = read_requirements(path.parent / include[1], seen)
            found += more
            unknown += odd
            continue
        if re.match(r"^(?:-e|--editable)\b", line):
            unknown.append(line)  # installs a project whose name only its own files tell
            continue
        if line.startswith("-"):
            continue  # options: --hash, --index-url, -c (constraints install nothing)
        requirement = parse_requirement(line)
        if requirement is None or re.match(r"^[\w.+-]+://|^\.{0,2}/", line):
            unknown.append(line)
        else:
            found.append(requirement)
    return found, unknown


def _marker_extras(requirement: str) -> set[str]:
    _, _, marker = requirement.partition(";")
    return {normalize(m["a"] or m["b"]) for m in _EXTRA_IN_MARKER.finditer(marker)}


def closure(
    installed: Mapping[str, metadata.Distribution], roots: Sequence[Requirement]
) -> tuple[dict[str, metadata.Distribution], list[str]]:
    """The installed distributions ``roots`` need, following Requires-Dist (and the extras
    asked for); and the roots that are not installed at all.

    A dependency conditional on an extra counts only when that extra was asked for; one
    conditional on the environment (python_version, sys_platform) counts when it is installed,
    since pip evaluated that marker when it built the venv from these same requirements.
    """
    visited: dict[str, frozenset[str]] = {}
    todo = list(roots)
    while todo:
        requirement = todo.pop()
        dist = installed.get(requirement.name)
        done = visited.get(requirement.name)
        if dist is None or (done is not None and requirement.extras <= done):
            continue
        extras = (done or frozenset()) | requirement.extras
        visited[requirement.name] = extras
        for line in dist.requires or []:
            dependency = parse_requirement(line)
            needs = _marker_extras(line)
            if dependency is None or (needs and not needs & extras):
                continue
            todo.append(dependency)
    missing = sorted({r.name for r in roots if r.name not in installed})
    return {name: installed[name] for name in visited}, missing


def installed_distributions(site_packages: Path) -> dict[str, metadata.Distribution]:
    """Every distribution installed in ``site_packages``, by normalized name."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(path=[str(site_packages)]):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist)
    return found


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    module: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else "requirements.txt"
        what = f"{self.module}: " if self.module else ""
        return f"{where}: {what}{self.reason}"


@dataclass
class Environment:
    """What a staged function can import: its own files, the standard library and the
    distributions its requirements pull in."""

    shipped: ModuleIndex
    installed: ModuleIndex
    stdlib: frozenset[str] = frozenset(sys.stdlib_module_names | set(sys.builtin_module_names))

    def provides(self, module: str) -> bool:
        return (
            module.partition(".")[0] in self.stdlib
            or module in self.shipped.modules
            or module in self.installed.modules
        )

    def holds_attributes(self, module: str) -> bool:
        return (
            module.partition(".")[0] in self.stdlib
            or module in self.shipped.regular
            or module in self.installed.regular
        )

    def missing(self, found: Import, known: ModuleIndex | None = None) -> list[str]:
        """The modules ``found`` needs that nothing here provides (``known``: modules that
        exist elsewhere, to name ``x.y`` rather than ``x`` for ``from x import y``)."""
        if not found.names:
            return [] if self.provides(found.module) else [found.module]
        gaps: list[str] = []
        for name in found.names:
            submodule = f"{found.module}.{name}"
            if self.provides(submodule) or self.holds_attributes(found.module):
                continue  # a module of its own, or maybe an attribute of a module that imports
            # A namespace package holds no attributes: ``name`` must be a module of its own.
            elsewhere = known is not None and submodule in known.modules
            specific = self.provides(found.module) or elsewhere
            gaps.append(submodule if specific else found.module)
        return list(dict.fromkeys(gaps))


def _where(module: str, hints: ModuleIndex) -> str:
    owners = sorted(hints.owners.get(module, ()))
    if not owners:
        return ""
    return f" ({' or '.join(owners)} provides it)"


def _hint_index() -> ModuleIndex:
    """Who provides what in the environment running this check (the development venv), to
    name the distribution a reported import is missing."""
    return distribution_index(metadata.distributions())


def check_app(app: Path, site_packages: Path, hints: ModuleIndex | None = None) -> list[Problem]:
    """Every import in the staged archive ``app`` that would fail with only the distributions
    its requirements.txt (plus functions-framework) pull into ``site_packages``."""
    problems: list[Problem] = []
    roots, unknown = read_requirements(app / "requirements.txt")
    problems += [
        Problem("", 0, line, "cannot tell which distribution it installs") for line in unknown
    ]
    roots.append(Requirement(FRAMEWORK, frozenset()))
    needed, absent = closure(installed_distributions(site_packages), roots)
    problems += [
        Problem("", 0, name, f"required but not installed in {site_packages} (stale venv?)")
        for name in absent
    ]
    env = Environment(shipped_index(app), distribution_index(needed.values()))
    hints = hints if hints is not None else _hint_index()
    for path in sorted(app.rglob("*.py")):
        found, broken = imports_in(path, app)
        problems += broken
        for one in found:
            for module in env.missing(one, hints):
                reason = "not in the standard library, the shipped files or the requirements"
                problems.append(Problem(one.file, one.line, module, reason + _where(module, hints)))
    return problems


def check_function(folder: Path, hints: ModuleIndex | None = None) -> list[Problem]:
    """:func:`check_app` for a function folder: its venv built if stale, its archive staged."""
    python = shipenv.ensure(folder)
    with tempfile.TemporaryDirectory(prefix=f"import-check-{folder.name}-") as tmp:
        app = shipenv.stage(folder, Path(tmp) / "app")
        return check_app(app, shipenv.site_packages(python.parent.parent), hints)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.import_check",
        description="Check that every import in each function's archive resolves from what "
        "its requirements.txt installs.",
    )
    parser.add_argument("names", nargs="*", help="function folders (default: all)")
    args = parser.parse_args(argv)
    hints = _hint_index()
    failed = 0
    for name in args.names or shipenv.function_names():
        problems = check_function(shipenv.function_dir(name), hints)
        for problem in problems:
            print(f"{name}: {problem}")
        if problems:
            failed += 1
        else:
            print(f"{name}: every import resolves")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
