"""docs/configuration.md is generated from the code; it must match what the code reads now."""

from __future__ import annotations

from tf_agreement import REPO_ROOT

from tools import config_table
from tools.function_scan import PLATFORM_VARIABLES, function_folders


def test_configuration_doc_is_up_to_date() -> None:
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert committed == config_table.render(), (
        "docs/configuration.md is stale: run `.venv/bin/python tools/config_table.py > "
        "docs/configuration.md`"
    )


def test_every_variable_is_listed_with_a_meaning() -> None:
    text = config_table.render()
    for folder in function_folders():
        assert f"## {folder.name}" in text
        for name, reads in folder.variables().items():
            if name in PLATFORM_VARIABLES:
                continue
            row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
            assert row.rstrip(" |").split("|")[-1].strip(), f"{name} has no meaning"
            assert config_table.meaning(reads[0])
