"""Run every benchmark and write one report.

    python -m benchmarks [--quick] [--only name,name] [--timeout SECONDS]

Every ``benchmarks/<name>.py`` that defines ``run(quick) -> list[dict]`` is run in its own
Python process (so one module's environment changes, threads or crash cannot touch the
others), one after the other. A module that fails, times out or returns no rows appears in
the report as failed, with the tail of its error output; the runner carries on.

Writes ``benchmarks/report/latest.md`` and ``benchmarks/report/latest.json``: each figure with
its baseline (measured in the same run), ratio, target and verdict, plus the machine it ran on.
Exit status 0 when every module ran (targets not met are reported, not fatal), 1 otherwise.

With ``--only``, the modules not run keep their rows from the report already there, each marked
with the date and commit of the run that measured it, so one module can be re-measured without
re-running the others; a module's baselines always come from its own run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REPORT_DIR = HERE / "report"
SKIP = {"__init__", "__main__"}

_CHILD = """
import json, sys
import importlib
name, quick, out = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
module = importlib.import_module(f"benchmarks.{name}")
run = getattr(module, "run", None)
if not callable(run):
    json.dump({"status": "skipped", "reason": "no run(quick) function"}, open(out, "w"))
    sys.exit(0)
rows = run(quick)
json.dump({"status": "ok", "rows": rows}, open(out, "w"), default=str)
"""


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in SKIP)


def run_module(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    """Run one module's ``run(quick)`` in a child process and collect its rows."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "rows.json"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        try:
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, name, "1" if quick else "0", str(out)],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            stderr = (
                expired.stderr.decode("utf-8", "replace")
                if isinstance(expired.stderr, bytes)
                else (expired.stderr or "")
            )
            return _failed(name, started, f"timed out after {timeout:g}s", stderr)
        if child.returncode != 0 or not out.is_file():
            return _failed(name, started, f"exited with code {child.returncode}", child.stderr)
        try:
            result: dict[str, Any] = json.loads(out.read_text("utf-8"))
        except ValueError as error:
            return _failed(name, started, f"unreadable result ({error})", child.stderr)
    result["module"] = name
    result["seconds"] = round(time.monotonic() - started, 1)
    rows = result.get("rows")
    if result.get("status") == "ok" and (not isinstance(rows, list) or not rows):
        return _failed(name, started, "run(quick) returned no rows", "")
    if isinstance(rows, list):
        result["rows"] = [_with_verdict(r) for r in rows if isinstance(r, dict)]
    return result


def _failed(name: str, started: float, reason: str, stderr: str) -> dict[str, Any]:
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    return {
        "module": name,
        "status": "failed",
        "reason": reason,
        "stderr_tail": tail,
        "seconds": round(time.monotonic() - started, 1),
        "rows": [],
    }


_TARGET = re.compile(r"^\s*(<=|>=|<|>|==)\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z/%]+)?")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def verdict(row: dict[str, Any]) -> str:
    """pass / FAIL where the target can be read unambiguously, else "-".

    A module's own ``pass`` key wins. Otherwise ``<= 1.15x`` compares the ratio, ``< 2900 ms``
    the value (the unit must be the row's), and a bare number the value when the row's unit
    is ``x``.
    """
    if isinstance(row.get("pass"), bool):
        return "pass" if row["pass"] else "FAIL"
    match = _TARGET.match(str(row.get("target") or ""))
    if match is None:
        return "-"
    op, limit, unit = match[1], float(match[2]), match[3]
    if unit == "x":
        subject = _number(row.get("ratio"))
    elif (unit is not None and unit == row.get("unit")) or (
        unit is None and row.get("unit") == "x"
    ):
        subject = _number(row.get("value"))
    else:
        return "-"
    if subject is None:
        return "-"
    holds = {
        "<=": subject <= limit,
        "<": subject < limit,
        ">=": subject >= limit,
        ">": subject > limit,
        "==": subject == limit,
    }[op]
    return "pass" if holds else "FAIL"


def _with_verdict(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "verdict": verdict(row)}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    memory = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "memory_gib": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _commit(),
    }


def _commit() -> str | None:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return answer.stdout.strip() or None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmark report",
        "",
        f"Generated by `python -m benchmarks{' --quick' if report['quick'] else ''}` on "
        f"{m['date']} (commit {m['commit'] or 'unknown'}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory_gib']} GiB memory, {m['os']}, Python {m['python']}.",
        "",
        "Every baseline was measured in the same run as its figure; ratio = value / baseline.",
        "",
        "| module | figure | value | unit | baseline | ratio | target | verdict |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for module in report["modules"]:
        if module["status"] != "ok":
            reason = module.get("reason", module["status"])
            lines.append(
                f"| {module['module']} | **{module['status']}**: {_cell(reason)} | | | | | | |"
            )
            continue
        for row in module["rows"]:
            keys = ("figure", "value", "unit", "baseline", "ratio", "target", "verdict")
            cells = [module["module"], *(_cell(row.get(k)) for k in keys)]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Modules", ""]
    for module in report["modules"]:
        line = f"- `{module['module']}`: {module['status']} in {module['seconds']} s"
        if module.get("carried_from"):
            was = module["carried_from"]
            line += f" (carried over: measured {was['date']}, commit {was['commit'] or 'unknown'})"
        lines.append(line)
        if module["status"] == "failed" and module.get("stderr_tail"):
            lines += ["", "  ```", *[f"  {x}" for x in module["stderr_tail"].splitlines()], "  ```"]
    return "\n".join(lines) + "\n"


def table(report: dict[str, Any]) -> str:
    out = [
        f"{'module':20} {'figure':50} {'value':>10} {'baseline':>10} {'ratio':>7} verdict  target"
    ]
    for module in report["modules"]:
        if module["status"] != "ok":
            out.append(
                f"{module['module']:20} {module['status'].upper()}: {module.get('reason', '')}"
            )
            continue
        for r in module["rows"]:
            out.append(
                f"{module['module']:20} {str(r.get('figure'))[:50]:50} {_cell(r.get('value')):>10} "
                f"{_cell(r.get('baseline')):>10} {_cell(r.get('ratio')):>7} {r['verdict']:7}  "
                f"{_cell(r.get('target'))}"
            )
    return "\n".join(out)


def carry_over(previous: Path, fresh: list[dict[str, Any]], *, quick: bool) -> list[dict[str, Any]]:
    """The modules just run, plus every other module of the previous report (same --quick
    mode only), marked with when and at which commit they were measured; in module order."""
    try:
        old = json.loads(previous.read_text("utf-8"))
    except (OSError, ValueError):
        return fresh
    if not isinstance(old, dict) or old.get("quick") != quick:
        return fresh
    ran = {m["module"] for m in fresh}
    kept = []
    for module in old.get("modules", []):
        if not isinstance(module, dict) or module.get("module") in ran:
            continue
        if "carried_from" not in module:
            was = old.get("machine", {})
            module = {
                **module,
                "carried_from": {"date": was.get("date"), "commit": was.get("commit")},
            }
        kept.append(module)
    return sorted([*fresh, *kept], key=lambda m: str(m["module"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter loads")
    parser.add_argument("--only", help="comma-separated module names (default: all)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per module (default 1800, quick 450)"
    )
    parser.add_argument("--out", default=str(REPORT_DIR), help="report directory")
    args = parser.parse_args(argv)
    names = discover()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark module(s) {unknown}; found {names}")
        names = [n for n in names if n in wanted]
    timeout = args.timeout or (450.0 if args.quick else 1800.0)
    modules = []
    for name in names:
        print(f"benchmarks: running {name} ...", file=sys.stderr, flush=True)
        result = run_module(name, args.quick, timeout)
        print(f"benchmarks: {name} {result['status']} in {result['seconds']} s", file=sys.stderr)
        modules.append(result)
    out = Path(args.out)
    if args.only:
        modules = carry_over(out / "latest.json", modules, quick=args.quick)
    report = {"machine": machine(), "quick": args.quick, "modules": modules}
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(markdown(report))
    print(table(report))
    print(f"\nwrote {out / 'latest.md'} and {out / 'latest.json'}")
    return 0 if all(m["status"] in ("ok", "skipped") for m in modules) else 1


if __name__ == "__main__":
    sys.exit(main())
