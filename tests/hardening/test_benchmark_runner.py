"""The report runner: targets read into verdicts, a failing module reported (not a crash),
and the static scan behind the cold-import baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import __main__ as runner
from benchmarks import cold_import


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"ratio": 1.1, "target": "<= 1.15x"}, "pass"),
        ({"ratio": 1.2, "target": "<= 1.15x"}, "FAIL"),
        ({"value": 2000, "unit": "ms", "target": "< 2900 ms (Graph's slow threshold)"}, "pass"),
        ({"value": 3000, "unit": "ms", "target": "< 2900 ms"}, "FAIL"),
        ({"value": 11, "unit": "x", "target": ">= 10"}, "pass"),
        ({"value": 900, "unit": "ms", "target": "< 1000"}, "-"),  # value or ratio? not guessed
        ({"value": 1, "unit": "MB", "target": ""}, "-"),
        ({"value": 1, "ratio": 9, "target": "<= 1.15x", "pass": True}, "pass"),
    ],
)
def test_verdicts(row: dict[str, object], expected: str) -> None:
    assert runner.verdict(row) == expected


def test_a_module_that_fails_is_reported_as_failed() -> None:
    result = runner.run_module("no_such_benchmark_module", quick=True, timeout=60)
    assert result["status"] == "failed"
    assert "ModuleNotFoundError" in result["stderr_tail"]
    machine = runner.machine()
    text = runner.markdown({"machine": machine, "quick": True, "modules": [result]})
    assert "**failed**" in text and machine["cpu"] in text


def test_a_partial_run_keeps_the_other_modules_marked_with_their_own_run(tmp_path: Path) -> None:
    def module(name: str, value: float) -> dict[str, object]:
        row = {"figure": "f", "value": value, "verdict": "-"}
        return {"module": name, "status": "ok", "seconds": 1.0, "rows": [row]}

    previous = tmp_path / "latest.json"
    old_machine = {"date": "2026-11-22T06:11:00Z", "commit": "b41f6cc"}
    old = {"machine": old_machine, "quick": False, "modules": [module("a", 1), module("b", 2)]}
    previous.write_text(json.dumps(old))

    merged = runner.carry_over(previous, [module("b", 3)], quick=False)

    assert [(m["module"], m["rows"][0]["value"]) for m in merged] == [("a", 1), ("b", 3)]
    assert merged[0]["carried_from"] == old_machine and "carried_from" not in merged[1]
    text = runner.markdown({"machine": runner.machine(), "quick": False, "modules": merged})
    assert "`a`: ok in 1.0 s (carried over: measured 2026-11-22T06:11:00Z, commit b41f6cc)" in text
    # A quick report never lends its rows to a full one.
    assert runner.carry_over(previous, [module("b", 3)], quick=True) == [module("b", 3)]


def test_machine_description_has_what_the_report_promises() -> None:
    machine = runner.machine()
    assert machine["cpu"] and machine["cores"] and machine["python"] and machine["date"]


def test_baseline_imports_are_third_party_and_module_level(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "demo_helper.py").write_text("import requests\n")
    main = folder / "main.py"
    main.write_text(
        "from __future__ import annotations\n"
        "import json\n"
        "from typing import TYPE_CHECKING\n"
        "import flask\n"
        "from demo_helper import x\n"
        "from shared import clock\n"
        "if TYPE_CHECKING:\n"
        "    from google.cloud import pubsub_v1\n"
        "def later():\n"
        "    import cryptography\n"
    )
    assert cold_import.third_party_imports(main) == ["import flask", "import requests"]
