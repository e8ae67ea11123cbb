"""Cold import of each function vs the bare third-party imports it needs.

    python -m benchmarks.cold_import [--quick]

For every ``functions/<name>/main.py`` two kinds of fresh Python process are started, N times
each, interleaved so that drift hits both alike:

- measured: loads main.py as functions-framework does (its folder on sys.path, the module
  executed from its file), with the environment variables it needs at import;
- baseline: executes only the module-level import statements of third-party packages that
  main.py needs, found by reading main.py, its sibling modules and the ``shared`` modules it
  reaches (imports inside functions or under ``if TYPE_CHECKING`` are lazy and left out of
  both; standard-library imports are left out of the baseline).

Each process times its own import with ``time.perf_counter`` (interpreter start-up is the
same for both and excluded). Figures are medians; the ratio measured / baseline is what the
project's own code adds on a cold start. Target: <= 1.15x.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = REPO / "functions"
TARGET_RATIO = 1.15

# Values for the variables functions read at import; any other required variable is found
# from the ConfigError that names it and given a placeholder.
IMPORT_ENV = {
    "GOOGLE_CLOUD_PROJECT": "bench-project",
    "STATE_BUCKET": "bench-state",
    "ARCHIVE_BUCKET": "bench-archive",
    "CEGID_BUCKET": "bench-cegid",
}

_MEASURED = """
import importlib.util, json, sys, time
source, folder = sys.argv[1], sys.argv[2]
sys.path.append(folder)
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("main", source)
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
try:
    spec.loader.exec_module(module)
except Exception as error:
    print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
    sys.exit(3)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""

_BASELINE = """
import json, sys, time
statements = json.loads(sys.argv[1])
started = time.perf_counter()
for statement in statements:
    exec(statement, {})
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: top level, and inside top-level
    try/with/if blocks, but not under ``if TYPE_CHECKING`` nor in functions or classes."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def third_party_imports(main: Path) -> list[str]:
    """The third-party import statements main.py needs at import time, in first-seen order."""
    folder = main.parent
    statements: dict[str, None] = {}
    seen: set[Path] = set()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}

    def local(module: str) -> Path | None:
        top = module.split(".")[0]
        if top == "shared":
            path = REPO.joinpath(*module.split(".")).with_suffix(".py")
            if path.is_file():
                return path
            package = REPO.joinpath(*module.split("."), "__init__.py")
            return package if package.is_file() else REPO / "shared" / "__init__.py"
        sibling = folder / f"{top}.py"
        return sibling if sibling.is_file() else None

    def scan(path: Path) -> None:
        if path in seen:
            return
        seen.add(path)
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in _module_level_imports(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level or node.module is None:
                    continue
                modules = [node.module]
                if node.module == "shared":
                    # ``from shared import clock, logs``: each name is a module of the package.
                    modules += [f"shared.{alias.name}" for alias in node.names]
            else:
                modules = [alias.name for alias in node.names]
            for module in modules:
                own = local(module)
                if own is not None:
                    scan(own)
                    continue
                if module.split(".")[0] in stdlib:
                    continue
                statements[ast.unparse(node)] = None

    scan(main)
    return list(statements)


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_EMULATOR_HOST") and not k.startswith("PYTHON")
    }
    env.update(IMPORT_ENV)
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def _run(code: str, args: list[str], env: dict[str, str]) -> float:
    answer = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    lines = [line for line in answer.stdout.splitlines() if line.startswith('{"')]
    if not lines:
        raise RuntimeError(
            f"no timing from child (exit {answer.returncode}): {answer.stderr[-500:]}"
        )
    result = json.loads(lines[-1])
    if "error" in result:
        raise RuntimeError(result["error"])
    return float(result["seconds"])


def _env_for(main: Path) -> dict[str, str]:
    """The environment under which main.py imports, adding placeholders it asks for."""
    env = _env()
    for _ in range(20):
        try:
            _run(_MEASURED, [str(main), str(main.parent)], env)
            return env
        except RuntimeError as error:
            text = str(error)
            marker = "environment variable "
            if "ConfigError" in text and marker in text:
                name = text.split(marker, 1)[1].split()[0]
                if name in env:
                    raise
                env[name] = "placeholder"
                continue
            raise
    raise RuntimeError(f"{main}: too many required variables")


def measure(main: Path, runs: int) -> dict[str, object]:
    env = _env_for(main)
    imports = third_party_imports(main)
    # Warm the file system cache and the bytecode cache once for both, untimed.
    _run(_BASELINE, [json.dumps(imports)], env)
    measured: list[float] = []
    baseline: list[float] = []
    for _ in range(runs):
        measured.append(_run(_MEASURED, [str(main), str(main.parent)], env))
        baseline.append(_run(_BASELINE, [json.dumps(imports)], env))
    value = statistics.median(measured) * 1000
    base = statistics.median(baseline) * 1000
    ratio = value / base if base else None
    return {
        "figure": f"cold import {main.relative_to(REPO)}",
        "value": round(value, 1),
        "baseline": round(base, 1),
        "ratio": round(ratio, 3) if ratio is not None else None,
        "target": f"<= {TARGET_RATIO}x",
        "unit": "ms",
        "pass": ratio is not None and ratio <= TARGET_RATIO,
        "runs": runs,
        "spread_ms": [round(min(measured) * 1000, 1), round(max(measured) * 1000, 1)],
        "baseline_spread_ms": [round(min(baseline) * 1000, 1), round(max(baseline) * 1000, 1)],
        "baseline_imports": imports,
    }


def run(quick: bool) -> list[dict[str, object]]:
    runs = 5 if quick else 15
    rows: list[dict[str, object]] = []
    for main in sorted(FUNCTIONS.glob("*/main.py")):
        try:
            rows.append(measure(main, runs))
        except Exception as error:  # noqa: BLE001 - one function failing must not hide the rest
            rows.append(
                {
                    "figure": f"cold import {main.relative_to(REPO)}",
                    "value": None,
                    "baseline": None,
                    "ratio": None,
                    "target": f"<= {TARGET_RATIO}x",
                    "unit": "ms",
                    "pass": False,
                    "error": str(error)[:500],
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_import")
    parser.add_argument("--quick", action="store_true", help="5 runs per figure instead of 15")
    args = parser.parse_args()
    rows = run(args.quick)
    print(f"{'figure':52} {'value':>9} {'baseline':>9} {'ratio':>7}  target")
    for r in rows:
        print(
            f"{r['figure']!s:52} {r['value']!s:>9} {r['baseline']!s:>9} {r['ratio']!s:>7}  "
            f"{r['target']}{'' if r.get('pass') else '  (not met)'}"
        )
        if r.get("error"):
            print(f"    error: {r['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
