"""The mutation report (``make mutation``): per module, what mutmut's last run found.

Reads mutmut's own records (``mutants/<path>.meta``: every mutant of a file with the exit code of
its run) and writes ``benchmarks/report/mutation-latest.md`` and ``.json``: per module the
mutants, killed, survived, no tests, timed out, the ones set aside, and the score

    score = (killed + timed out) / (mutants - no tests - set aside)

that is, the share of mutants in code the selected tests reach that a test detects, once the
survivors classified in tools/mutation_classified.py (cosmetic or equivalent, one reason each)
are set aside. Every other survivor is listed with its diff. ``--candidates`` prints survivors
whose every changed line is a log or exception message, for review into that list; nothing is
classified automatically.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import sys
import textwrap
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from tools.mutation_classified import CLASSIFIED, REMAINING

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "benchmarks" / "report" / "mutation-latest"
TARGET = 0.90

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
TIMEOUTS = {36, 24, -24, 152, 255}


def modules(repo: Path = REPO) -> list[str]:
    """The files mutmut mutates, from pyproject's [tool.mutmut] only_mutate."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    if code in TIMEOUTS:
        return "timeout"
    return STATUS.get(code, "suspicious")


def results(path: str, repo: Path = REPO) -> dict[str, str]:
    """Mutant name -> status for one mutated file."""
    meta = repo / "mutants" / f"{path}.meta"
    if not meta.exists():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status(code) for name, code in sorted(codes.items())}


def diff(name: str, path: str, repo: Path = REPO, *, context: int = 3) -> str:
    """The mutant's diff against the original function, as ``mutmut show`` prints it (with
    ``context`` lines around each change)."""
    import libcst
    from mutmut.mutation import diff_apply

    here = Path.cwd()
    os.chdir(repo)  # mutmut reads mutants/ relative to the working directory
    try:
        functions = diff_apply.read_functions_from_index(name, Path(path))
        if functions is None:
            module = diff_apply.read_mutants_module(Path(path))
            functions = (
                diff_apply.read_original_function(module, name),
                diff_apply.read_mutant_function(module, name),
            )
        before, after = (libcst.Module([f]).code.strip() for f in functions)
    except Exception as err:  # noqa: BLE001 - a diff mutmut cannot rebuild is reported as such
        return f"(diff unavailable: {type(err).__name__})"
    finally:
        os.chdir(here)
    lines = difflib.unified_diff(
        before.split("\n"), after.split("\n"), path, path, n=context, lineterm=""
    )
    return "\n".join(lines)


def summarise(path: str, found: dict[str, str]) -> dict[str, Any]:
    counts = Counter(found.values())
    set_aside = [n for n, s in found.items() if s == "survived" and n in CLASSIFIED]
    relevant = [n for n, s in found.items() if s == "survived" and n not in CLASSIFIED]
    reached = len(found) - counts["no tests"] - len(set_aside)
    detected = counts["killed"] + counts["timeout"]
    return {
        "module": path,
        "mutants": len(found),
        "killed": counts["killed"],
        "survived": counts["survived"],
        "no_tests": counts["no tests"],
        "timeout": counts["timeout"],
        "not_checked": counts["not checked"],
        "suspicious": counts["suspicious"],
        "set_aside": len(set_aside),
        "score": round(detected / reached, 4) if reached else None,
        "relevant_survivors": relevant,
        "no_test_mutants": [n for n, s in found.items() if s == "no tests"],
    }


def render(rows: list[dict[str, Any]], diffs: dict[str, str]) -> str:
    lines = [
        "# Mutation testing: latest run",
        "",
        "`make mutation` (mutmut, default operators; each mutant runs against the selected tests",
        "that reach it: pyproject [tool.mutmut]). Score = (killed + timed out) / (mutants - no",
        "tests - set aside); set aside = survivors classified cosmetic or equivalent in",
        f"tools/mutation_classified.py, each with its reason. Target: {TARGET:.0%} per module.",
        "",
        "| module | mutants | killed | survived | no tests | timed out | set aside | score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        score = "n/a" if r["score"] is None else f"{r['score']:.1%}"
        lines.append(
            f"| {r['module']} | {r['mutants']} | {r['killed']} | {r['survived']} | "
            f"{r['no_tests']} | {r['timeout']} | {r['set_aside']} | {score} |"
        )
    lines += ["", "## Set aside (cosmetic or equivalent)", ""]
    aside = sorted(n for r in rows for n in CLASSIFIED if n.startswith(_dotted(r["module"])))
    lines += [f"- `{n}`: {CLASSIFIED[n][0]}: {CLASSIFIED[n][1]}" for n in aside] or ["(none)"]
    lines += ["", "## Remaining relevant survivors", ""]
    for r in rows:
        for name in r["relevant_survivors"]:
            why = REMAINING.get(name, "(not reviewed yet)")
            lines += [f"### `{name}`", "", f"Why it stays: {why}", "", "```diff"]
            lines += [diffs.get(name, ""), "```", ""]
    return "\n".join(lines) + "\n"


def _dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".") + "."


LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical"})


def cosmetic_candidate(text: str) -> bool:
    """Whether every line the mutant changes lies inside a ``log.<level>(...)`` call of the
    original function: a candidate for review, never classified by this alone."""
    original: list[str] = []
    changed: set[int] = set()
    for line in text.splitlines():
        if line.startswith(("+++", "---", "@@")) or not line:
            continue
        if line[0] == "-":
            changed.add(len(original) + 1)
            original.append(line[1:])
        elif line[0] == " ":
            original.append(line[1:])
    if not changed:
        return False
    try:
        tree = ast.parse(textwrap.dedent("\n".join(original)))
    except SyntaxError:
        return False
    logged: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"log", "logger"}
        ):
            logged.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return changed <= logged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", action="store_true", help="print cosmetic candidates")
    parser.add_argument("--check", action="store_true", help="exit 1 below the target score")
    args = parser.parse_args(argv)
    rows = [summarise(path, results(path)) for path in modules()]
    paths = {n: r["module"] for r in rows for n in r["relevant_survivors"]}
    diffs = {name: diff(name, path) for name, path in paths.items()}
    if args.candidates:
        # Printed as entries for tools/mutation_classified.py, to be read before pasting.
        for name, path in paths.items():
            if cosmetic_candidate(diff(name, path, context=10_000)):
                text = diffs[name]
                changed = [ln[1:].strip() for ln in text.splitlines() if ln[:1] == "+"]
                print(f"    # {' / '.join(c for c in changed if not c.startswith('++'))[:90]}")
                print(f'    "{name}": ("cosmetic", "log call only"),')
        return 0
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.with_suffix(".md").write_text(render(rows, diffs))
    payload = {
        "target": TARGET,
        "modules": rows,
        "set_aside": {n: list(v) for n, v in CLASSIFIED.items()},
    }
    REPORT.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    for r in rows:
        score = "n/a" if r["score"] is None else f"{r['score']:.1%}"
        print(f"{r['module']:55} {r['mutants']:5} mutants, score {score}")
    print(f"wrote {REPORT.with_suffix('.md').relative_to(REPO)} and .json")
    below = [r["module"] for r in rows if r["score"] is not None and r["score"] < TARGET]
    return 1 if args.check and below else 0


if __name__ == "__main__":
    sys.exit(main())
