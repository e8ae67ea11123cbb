"""The offline plan gate (tools/tfstandin/gate.py): terraform/ passes it, and each kind of
mistake it exists for fails it with Terraform's own error.

The gate runs in its own venv (.tools/tfgate, `make .tools/tfgate`), as `make plan-gate` runs
it. Each mutation edits one file of a copy of the tree, found by a stable anchor (a resource
header and a pattern inside its block); a missing anchor fails loudly, so the mutation gets
updated instead of silently testing nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tf_agreement import REPO_ROOT, in_ci

from tools.tfstandin.gate import SCENARIOS

GATE_PYTHON = REPO_ROOT / ".tools" / "tfgate" / "bin" / "python"
STEPS = ("init", "validate", "plan", "show", "apply", "re-plan")


def run_gate(*args: str) -> subprocess.CompletedProcess[str]:
    if not GATE_PYTHON.exists():
        message = f"{GATE_PYTHON} missing: run `make .tools/tfgate`"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        [str(GATE_PYTHON), "-m", "tools.tfstandin.gate", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


@pytest.fixture(scope="module")
def kept_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate") / "workspace"


@pytest.fixture(scope="module")
def real_tree(kept_workspace: Path) -> subprocess.CompletedProcess[str]:
    return run_gate("--keep", str(kept_workspace))


def test_gate_passes_on_the_real_tree(real_tree):
    assert real_tree.returncode == 0, real_tree.stdout + real_tree.stderr
    lines = real_tree.stdout.splitlines()
    for scenario in (s.name for s in SCENARIOS):
        steps = [line for line in lines if line.startswith(f"[{scenario}] ")]
        assert [line.split()[len(scenario.split())] for line in steps] == list(STEPS), steps
        assert re.search(r"\d+\.\ds  [1-9]\d* to add$", steps[2]), steps[2]
        assert steps[-1].endswith("no changes"), steps[-1]
    assert f"plan gate passed: {len(SCENARIOS)} scenario(s)" in lines[-1]


# --------------------------------------------------------------------------- mutations

MAIN = "main.tf"
MODULE = "modules/function/main.tf"
SOURCES_BUCKET = 'resource "google_storage_bucket" "sources"'
FUNCTION = 'resource "google_cloudfunctions2_function" "this"'
PUBLIC_INVOKER = 'resource "google_cloud_run_service_iam_member" "public_invoker"'

# (file under terraform/, block header, pattern in that block, replacement, what Terraform says)
MUTATIONS = {
    "unknown argument": (
        MAIN,
        SOURCES_BUCKET,
        r"^(\s*)uniform_bucket_level_access\b",
        r"\1uniform_bucket_level_acess",
        ["Error: Unsupported argument", '"uniform_bucket_level_acess" is not expected here'],
    ),
    "missing required argument": (
        MAIN,
        SOURCES_BUCKET,
        r"^\s*location\s*=.*\n",
        "",
        ["Error: Missing required argument", 'The argument "location" is required'],
    ),
    "type mismatch": (
        MAIN,
        SOURCES_BUCKET,
        r"^(\s*labels\s*=).*$",
        r'\1 ["not", "a", "map"]',
        ["Error: Incorrect attribute value type", 'Inappropriate value for attribute "labels"'],
    ),
    "nonexistent attribute": (
        MODULE,
        FUNCTION,
        r"google_storage_bucket_object\.source\.name\b",
        "google_storage_bucket_object.source.object_name",
        ["Error: Unsupported attribute", 'named "object_name"'],
    ),
    "block written as an attribute": (
        MAIN,
        SOURCES_BUCKET,
        r"^(\s*)versioning \{\n\s*enabled\s*=\s*true\n\s*\}",
        r"\1versioning = { enabled = true }",
        ["Error: Unsupported argument", 'Did you mean to define a block of type "versioning"?'],
    ),
    "count on a value known only after apply": (
        MODULE,
        PUBLIC_INVOKER,
        r"^(\s*)count(\s*)=.*$",
        r'\1count\2= google_cloudfunctions2_function.this.id != "" ? 1 : 0',
        ["Error: Invalid count argument", 'in resource "google_cloud_run_service_iam_member"'],
    ),
}


def copy_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".terraform", ".build", "__pycache__", "*.tfstate*")
    for name in ("terraform", "functions", "shared"):
        shutil.copytree(REPO_ROOT / name, dest / name, ignore=ignore)
    return dest / "terraform"


def mutate(terraform_dir: Path, relative: str, header: str, pattern: str, replacement: str):
    path = terraform_dir / relative
    text = path.read_text()
    start = text.find(f"{header} {{\n")
    assert start >= 0, f"anchor {header!r} not in terraform/{relative}: update this mutation"
    end = text.index("\n}\n", start) + len("\n}\n")
    block, count = re.subn(pattern, replacement, text[start:end], count=1, flags=re.M)
    assert count == 1, f"{pattern!r} not in {header} (terraform/{relative}): update this mutation"
    path.write_text(text[:start] + block + text[end:])


@pytest.mark.parametrize("name", MUTATIONS)
def test_gate_fails_on_mutation(name, tmp_path, real_tree):
    if real_tree.returncode != 0:
        pytest.fail("the unmutated tree fails the gate: see test_gate_passes_on_the_real_tree")
    relative, header, pattern, replacement, expected = MUTATIONS[name]
    terraform_dir = copy_tree(tmp_path)
    mutate(terraform_dir, relative, header, pattern, replacement)
    # One scenario that holds both the buckets and a function module is enough, up to the plan.
    result = run_gate(
        "--terraform-dir", str(terraform_dir), "--scenario", "bitrix24-only", "--plan-only"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "plan gate FAILED" in result.stderr, output
    flat = " ".join(result.stderr.split())  # Terraform wraps its messages at 78 columns
    for message in expected:
        assert message in flat, output


# --------------------------------------------------------------------------- what is deployed


def planned_resources(plan_json: Path) -> list[dict[str, Any]]:
    """Every resource instance the plan creates, with its planned values."""
    plan = json.loads(plan_json.read_text())
    return [
        change
        for change in plan["resource_changes"]
        if change["mode"] == "managed" and "create" in change["change"]["actions"]
    ]


def deployed(resources: list[dict[str, Any]], rtype: str, attribute: str) -> set[str]:
    return {
        str(r["change"]["after"][attribute])
        for r in resources
        if r["type"] == rtype and r["change"]["after"].get(attribute) is not None
    }


ALL_FUNCTIONS = {
    "b24-token-refresh",
    "hubspot-refresh",
    "graph-webhook-notify",
    "graph-webhook-renew",
    "cegid-transfer",
    "cegid-queries",
    "universign-webhook",
    "universign-poll",
    "universign-sync",
}


def test_the_default_selection_deploys_every_integration(real_tree, kept_workspace):
    assert real_tree.returncode == 0, real_tree.stdout + real_tree.stderr
    resources = planned_resources(kept_workspace / "all-integrations.plan.json")
    assert deployed(resources, "google_cloudfunctions2_function", "name") == ALL_FUNCTIONS
    assert len(deployed(resources, "google_cloud_scheduler_job", "name")) == 5
    # The rules are grouped across integrations; each integration is in a no-success window.
    titles = " ".join(deployed(resources, "google_monitoring_alert_policy", "display_name"))
    for integration in ("Bitrix24", "HubSpot", "Microsoft Graph", "Cegid", "Universign"):
        assert integration in titles, (integration, titles)


def test_a_single_integration_deploys_nothing_of_the_others(real_tree, kept_workspace):
    assert real_tree.returncode == 0, real_tree.stdout + real_tree.stderr
    resources = planned_resources(kept_workspace / "bitrix24-only.plan.json")
    assert deployed(resources, "google_cloudfunctions2_function", "name") == {"b24-token-refresh"}
    assert deployed(resources, "google_cloud_scheduler_job", "name") == {"b24-token-refresh-job"}
    assert deployed(resources, "google_pubsub_topic", "name") == {"b24-token-refresh-trigger"}
    secrets = deployed(resources, "google_secret_manager_secret", "secret_id")
    assert secrets and all(s.startswith("b24-") for s in secrets), secrets
    alerts = [
        r["change"]["after"] for r in resources if r["type"] == "google_monitoring_alert_policy"
    ]
    assert any("Bitrix24" in a["display_name"] for a in alerts), alerts
    # No alert names or documents another integration (the runbook lists are per deployment).
    for other in ("HubSpot", "Microsoft Graph", "Cegid", "Universign"):
        assert other not in json.dumps(alerts), other
    accounts = deployed(resources, "google_service_account", "account_id")
    assert accounts == {"b24-token-refresh", "keepalive-invoker", "keepalive-build"}, accounts
    # No binding of any kind names another integration's identity, secret, topic or bucket.
    others = ("hubspot", "graph", "cegid", "universign")
    for resource in resources:
        if resource["type"].endswith(("_iam_member", "_iam_binding")):
            text = json.dumps(resource["change"]["after"])
            assert not any(other in text for other in others), resource["address"]


# --------------------------------------------------------------------------- the archives

JUNK = {
    "__pycache__/main.cpython-312.pyc": b"\x00bytecode",
    "helper.pyc": b"\x00bytecode",
    ".env": b"B24_CLIENT_SECRET=do-not-ship\n",
    ".env.local": b"B24_CLIENT_SECRET=do-not-ship\n",
    "tests/test_main.py": b"def test(): pass\n",
    "tests/fixtures/response.json": b"{}\n",
    "test_main.py": b"def test(): pass\n",
    "conftest.py": b"",
    "main.py~": b"backup\n",
    ".main.py.swp": b"swap\n",
    ".DS_Store": b"finder\n",
    ".vscode/settings.json": b"{}\n",
}


def test_archives_ship_only_what_runs_and_a_binary_file_does_not_break_the_plan(tmp_path):
    terraform_dir = copy_tree(tmp_path / "tree")
    folder = terraform_dir.parent / "functions" / "b24_token_refresh"
    for name, content in JUNK.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    (folder / "logo.png").write_bytes(bytes(range(256)))  # not UTF-8
    workspace = tmp_path / "workspace"
    result = run_gate(
        "--terraform-dir", str(terraform_dir), "--scenario", "bitrix24-only",
        "--keep", str(workspace),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # On a fresh state the archive is built at apply (the module waits for its IAM bindings).
    with zipfile.ZipFile(workspace / "terraform" / ".build" / "b24-token-refresh.zip") as archive:
        names = set(archive.namelist())
    expected = {p.name for p in (REPO_ROOT / "functions" / "b24_token_refresh").iterdir()}
    expected -= {"__pycache__"}
    assert expected <= names, expected - names
    assert "shared/secrets.py" in names
    assert not names & (set(JUNK) | {"logo.png"}), names & (set(JUNK) | {"logo.png"})
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # The file left out is named by a failed check: a warning, not an error.
    plan = json.loads((workspace / "bitrix24-only.plan.json").read_text())
    problems = [
        problem["message"]
        for check in plan.get("checks", [])
        for instance in check.get("instances", [])
        for problem in instance.get("problems", [])
    ]
    assert any("logo.png" in message for message in problems), plan.get("checks")
