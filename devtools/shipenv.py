"""Each function as it ships: its own virtual environment and its deploy archive's layout.

Cloud Build installs a function from nothing but its folder's ``requirements.txt`` (plus
functions-framework when the file does not name it), and the archive it builds from holds the
folder's files plus ``shared/`` minus what ``terraform/modules/function/main.tf`` skips. The
development venv has every function's requirements at once, so code served from it can import
a package its own folder never asks for and still pass. This module recreates the shipped
situation locally:

* :func:`ensure` builds ``.venvs/<function>/`` from the folder's requirements only, and rebuilds
  it only when those requirements (or the Python building it) changed: a stamp file in the venv
  holds their hash. A file lock per venv lets concurrent test processes share the work.
* :func:`stage` lays out a directory exactly as the archive holds the function, reading the
  skip rules from the Terraform module itself so the two never drift apart.

From a shell (what ``make`` runs before pytest, so the builds happen outside test time-outs)::

    python -m devtools.shipenv build [NAME ...]     # all function folders by default
    python -m devtools.shipenv stage NAME DEST

Standard library only: the import check in tools/ uses it too.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
SHARED_DIR = REPO_ROOT / "shared"
MODULE_TF = REPO_ROOT / "terraform" / "modules" / "function" / "main.tf"
VENVS_DIR = REPO_ROOT / ".venvs"
# Venvs of folders outside functions/ (a test's or a benchmark's own main.py) live here, named
# by the hash of their requirements, so two such folders never fight over one name.
OTHER_VENVS = "_other"
STAMP = ".shipenv-stamp"
# Bumped when the way a venv is built changes, so every stamp goes stale at once.
SCHEME = 1
FRAMEWORK = "functions-framework"
PIP_TIMEOUT = 1800.0

Log = Callable[[str], None]


class ShipEnvError(RuntimeError):
    """A venv could not be built or a folder staged; the message says which and why."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- folders


def function_names(functions_dir: Path = FUNCTIONS_DIR) -> list[str]:
    """Every deployable function folder: one holding a main.py and a requirements.txt."""
    return sorted(
        d.name
        for d in functions_dir.iterdir()
        if (d / "main.py").is_file() and (d / "requirements.txt").is_file()
    )


def function_dir(name: str) -> Path:
    folder = FUNCTIONS_DIR / name
    if not (folder / "requirements.txt").is_file():
        raise ShipEnvError(f"{folder} has no requirements.txt: not a function folder")
    return folder


# --------------------------------------------------------------------------- archive layout

# The skip rule is an HCL expression in the module's locals: either one string or
# join("<sep>", [<string>, ...]). Only those forms are read; anything else is an error rather
# than a guess, since a wrong guess would stage files the archive leaves out (or vice versa).
_SKIP_START = re.compile(r"^\s*skip\s*=", re.M)
_HCL_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    | (?P<punct>[()\[\],])
    """,
    re.X | re.S,
)
_HCL_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _hcl_string(literal: str) -> str:
    """The value of a quoted HCL string (escapes and ``$${``/``%%{`` undone)."""
    body = literal[1:-1]
    if re.search(r"[$%]\{", body.replace("$${", "").replace("%%{", "")):
        raise ShipEnvError(f"{MODULE_TF}: skip rule {literal} uses a template; cannot read it")
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            code = body[i + 1]
            if code in _HCL_ESCAPES:
                out.append(_HCL_ESCAPES[code])
                i += 2
            elif code in "uU":
                width = 4 if code == "u" else 8
                out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
                i += 2 + width
            else:
                raise ShipEnvError(f"{MODULE_TF}: unknown escape \\{code} in {literal}")
        elif body.startswith(("$${", "%%{"), i):
            out.append(body[i + 1 : i + 3])
            i += 3
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _hcl_tokens(text: str, start: int) -> Iterator[tuple[str, str]]:
    pos = start
    while pos < len(text):
        match = _HCL_TOKEN.match(text, pos)
        if match is None:
            raise ShipEnvError(
                f"{MODULE_TF}: cannot read the skip rule near {text[pos : pos + 40]!r}"
            )
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            yield kind, match.group()


def skip_rule(module_tf: Path = MODULE_TF) -> str:
    """The regular expression the function module leaves files out of an archive with."""
    text = module_tf.read_text("utf-8")
    found = _SKIP_START.search(text)
    if found is None:
        raise ShipEnvError(f"{module_tf}: no `skip = ...` in its locals")
    tokens = _hcl_tokens(text, found.end())
    kind, value = next(tokens, ("", ""))
    if kind == "string":
        return _hcl_string(value)
    expected = [("punct", "("), ("string", None), ("punct", ","), ("punct", "[")]
    if (kind, value) != ("ident", "join"):
        raise ShipEnvError(f"{module_tf}: skip is neither a string nor join(...): {value}")
    separator = ""
    for want_kind, want_value in expected:
        kind, value = next(tokens, ("", ""))
        if kind != want_kind or (want_value is not None and value != want_value):
            raise ShipEnvError(f"{module_tf}: unexpected {value!r} in skip = join(...)")
        if kind == "string":
            separator = _hcl_string(value)
    parts: list[str] = []
    for kind, value in tokens:
        if kind == "string":
            parts.append(_hcl_string(value))
        elif value == "]":
            break
        elif value != ",":
            raise ShipEnvError(f"{module_tf}: unexpected {value!r} in the skip list")
    if next(tokens, ("", ""))[1] != ")":
        raise ShipEnvError(f"{module_tf}: skip = join(...) is not closed after its list")
    return separator.join(parts)


def shipped_files(
    folder: Path, shared_dir: Path = SHARED_DIR, module_tf: Path = MODULE_TF
) -> dict[str, Path]:
    """Archive name -> source file, as the function module packs ``folder`` plus shared/.

    As Terraform does: ``fileset(dir, "**")`` (every file, dot files included, relative with
    ``/``), names matching the skip rule dropped, shared/ merged over the folder's own files,
    and files that are not UTF-8 text left out (``file()`` cannot read them; the module's check
    block names them at plan time).
    """
    skip = re.compile(skip_rule(module_tf))
    files: dict[str, Path] = {}
    for base, prefix in ((folder, ""), (shared_dir, "shared/")):
        for root, _dirs, names in os.walk(base):
            for file_name in names:
                path = Path(root) / file_name
                relative = path.relative_to(base).as_posix()
                if skip.search(relative) or not path.is_file():
                    continue
                try:
                    path.read_bytes().decode("utf-8")
                except UnicodeDecodeError:
                    continue
                files[prefix + relative] = path
    return dict(sorted(files.items()))


def stage(folder: Path, destination: Path) -> Path:
    """Lay out ``folder`` in ``destination`` (created; must not exist) as the deploy archive
    holds it: the folder's files at the top, shared/ as package ``shared``."""
    destination.mkdir(parents=True)
    for name, source in shipped_files(folder).items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return destination


# --------------------------------------------------------------------------- venvs


def _requirement_files(requirements: Path, seen: set[Path] | None = None) -> list[Path]:
    """``requirements`` and every file it includes with -r (pip reads those too)."""
    seen = seen if seen is not None else set()
    path = requirements.resolve()
    if path in seen:
        return []
    seen.add(path)
    found = [path]
    for line in path.read_text("utf-8").splitlines():
        match = re.match(r"^\s*(?:-r|--requirement)(?:\s+|=)(\S+)", line)
        if match:
            found += _requirement_files(path.parent / match[1], seen)
    return found


def _names_framework(requirements: Path) -> bool:
    pattern = re.compile(r"^\s*functions[-_.]framework\s*(?:[\[<>=!~;@ ]|$)", re.I)
    return any(
        pattern.match(line)
        for path in _requirement_files(requirements)
        for line in path.read_text("utf-8").splitlines()
    )


def install_arguments(folder: Path) -> list[str]:
    """What pip installs for ``folder``, as Cloud Build does: its requirements.txt, plus
    functions-framework when that file does not name it (Cloud Build then adds the latest)."""
    requirements = folder / "requirements.txt"
    args = ["-r", str(requirements)]
    if not _names_framework(requirements):
        args.append(FRAMEWORK)
    return args


def stamp_of(folder: Path) -> str:
    """What a venv for ``folder`` is built from: the requirements' bytes, the interpreter and
    this module's build scheme. A venv whose stamp differs is rebuilt."""
    digest = hashlib.sha256()
    for path in _requirement_files(folder / "requirements.txt"):
        digest.update(path.read_bytes())
    facts = {
        "scheme": SCHEME,
        "python": sys.version,
        "base": sys.base_prefix,
        "install": install_arguments(folder)[2:],
        "requirements": digest.hexdigest(),
    }
    return json.dumps(facts, sort_keys=True)


def venv_dir(folder: Path, venvs_dir: Path = VENVS_DIR) -> Path:
    """``.venvs/<function>`` for a folder in functions/, else one named by its requirements."""
    folder = folder.resolve()
    if folder.parent == FUNCTIONS_DIR.resolve():
        return venvs_dir / folder.name
    key = hashlib.sha256(stamp_of(folder).encode()).hexdigest()[:16]
    return venvs_dir / OTHER_VENVS / key


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def site_packages(venv: Path) -> Path:
    """The venv's site-packages directory."""
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise ShipEnvError(f"{venv}: expected one lib/python3*/site-packages, found {found}")
    return found[0]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created), held until the block ends; another process
    (or thread) asking for the same lock waits, so two never build one venv at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip_env() -> dict[str, str]:
    """The caller's environment (PIP_FIND_LINKS, PIP_INDEX_URL, proxies and certificates are
    kept), without what would make pip see or install outside the new venv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PIP_TARGET", "PIP_PREFIX", "PIP_USER", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: list[str], what: str, cwd: Path) -> None:
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=_pip_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise ShipEnvError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _build(folder: Path, venv: Path, stamp: str) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    # No pip inside: the development venv's pip installs into it (--python), which saves
    # seconds per venv and keeps pip and setuptools out of what the function can import.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], f"venv {venv}", folder)
    pip = [sys.executable, "-m", "pip", "--python", str(venv_python(venv)), "install"]
    pip += ["--no-input", "--quiet", *install_arguments(folder)]
    _run(pip, f"pip install for {folder.name} into {venv}", folder)
    # Written last: a build cut short leaves no stamp, so the next call builds again.
    (venv / STAMP).write_text(stamp)


def ensure(folder: Path, *, venvs_dir: Path = VENVS_DIR, log: Log = _stderr) -> Path:
    """The Python of ``folder``'s own venv, built first if missing or stale; returns quickly
    (a hash and a file read under a lock) when it is up to date."""
    folder = folder.resolve()
    if not (folder / "requirements.txt").is_file():
        raise ShipEnvError(
            f"{folder} has no requirements.txt: a function is served only from the packages "
            "its folder declares"
        )
    venv = venv_dir(folder, venvs_dir)
    stamp = stamp_of(folder)
    with _locked(venv.parent / f".{venv.name}.lock"):
        current = venv / STAMP
        if venv_python(venv).exists() and current.is_file() and current.read_text() == stamp:
            return venv_python(venv)
        started = time.monotonic()
        log(f"shipenv: building {venv} from {folder / 'requirements.txt'}")
        _build(folder, venv, stamp)
        log(f"shipenv: {venv.name} built in {time.monotonic() - started:.1f}s")
    return venv_python(venv)


def build(
    names: Sequence[str] | None = None,
    *,
    jobs: int = 2,
    venvs_dir: Path = VENVS_DIR,
    log: Log = _stderr,
) -> dict[str, Path]:
    """:func:`ensure` for the named function folders (all by default), ``jobs`` at a time
    (pip is CPU-bound here, and CI has two cores)."""
    chosen = list(names) if names else function_names()
    folders = {name: function_dir(name) for name in chosen}
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="shipenv") as pool:
        futures = {
            name: pool.submit(ensure, folder, venvs_dir=venvs_dir, log=log)
            for name, folder in folders.items()
        }
        return {name: future.result() for name, future in futures.items()}


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.shipenv",
        description="Build each function's own venv and stage it as its deploy archive.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="(re)build venvs whose requirements changed")
    build_cmd.add_argument("names", nargs="*", help="function folders (default: all)")
    build_cmd.add_argument("--jobs", type=int, default=2, help="parallel builds (%(default)s)")
    stage_cmd = sub.add_parser("stage", help="lay a function out as its archive holds it")
    stage_cmd.add_argument("name")
    stage_cmd.add_argument("destination", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            started = time.monotonic()
            built = build(args.names, jobs=args.jobs)
            took = time.monotonic() - started
            print(f"shipenv: {len(built)} venv(s) ready in {VENVS_DIR} ({took:.1f}s)")
        else:
            stage(function_dir(args.name), args.destination)
            print(args.destination)
    except ShipEnvError as err:
        print(f"shipenv: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
