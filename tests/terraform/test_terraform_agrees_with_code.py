"""Terraform and code agree: every function folder is deployed with the right entry points and
triggers, every variable it needs is set, every secret it reads exists and only its own
service account reads it, scheduler jobs reach real topics; and each deploy archive, built the
way Terraform builds it, installs in a fresh virtual environment and handles an event.

The mutation tests change a copy of terraform/ or of a function folder and check that the
agreement checks notice, so a check that silently stopped checking fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tf_agreement import (
    REPO_ROOT,
    all_problems,
    check_deployed,
    check_environment,
    check_scheduler,
    check_secrets,
    check_service_accounts,
    check_topics,
    condition_matches,
    condition_matches_secret,
    copy_terraform,
    functions_of,
    load_inventory,
)

from tools.function_scan import FunctionFolder, function_folders, scan_folder

TERRAFORM = REPO_ROOT / "terraform"
FOLDERS = function_folders()
FOLDER_IDS = [f.name for f in FOLDERS]
# What the function module leaves out of an archive (terraform/modules/function/main.tf).
ARCHIVE_SKIP = re.compile(r"(^|/)(__pycache__|\.pytest_cache|\.mypy_cache)(/|$)|\.pyc$")


@pytest.fixture(scope="module")
def inventory() -> Any:
    return load_inventory(TERRAFORM)


def test_inventory_sees_the_reference_slice(inventory: dict[str, Any]) -> None:
    """Guards the inventory itself: the Bitrix24 slice resolves completely."""
    (b24,) = [f for f in inventory["functions"] if f["module"] == "b24_token_refresh"]
    assert b24["source_dir"] == "functions/b24_token_refresh"
    assert b24["trigger_topic"] == "b24-token-refresh-trigger"
    assert b24["environment"]["B24_CLIENT_SECRET_SECRET"] == "b24-client-secret"
    assert b24["service_account"] == "b24-token-refresh"
    assert {"b24-client-id", "b24-access-token"} <= {s["secret_id"] for s in inventory["secrets"]}


@pytest.mark.parametrize("folder", FOLDERS, ids=FOLDER_IDS)
def test_every_entry_point_is_deployed_with_its_trigger(inventory, folder) -> None:
    assert check_deployed(inventory, folder) == []


@pytest.mark.parametrize("folder", FOLDERS, ids=FOLDER_IDS)
def test_every_variable_read_is_set_or_has_a_default(inventory, folder) -> None:
    assert check_environment(inventory, folder) == []


@pytest.mark.parametrize("folder", FOLDERS, ids=FOLDER_IDS)
def test_secrets_exist_and_only_the_function_reads_them(inventory, folder) -> None:
    assert check_secrets(inventory, folder) == []


@pytest.mark.parametrize("folder", FOLDERS, ids=FOLDER_IDS)
def test_topics_the_code_publishes_to_exist(inventory, folder) -> None:
    assert check_topics(inventory, folder) == []


def test_each_function_runs_as_its_own_service_account(inventory) -> None:
    assert check_service_accounts(inventory, FOLDERS) == []


def test_scheduler_jobs_publish_to_topics_that_trigger_functions(inventory) -> None:
    assert inventory["scheduler_jobs"], "no scheduler job found"
    assert check_scheduler(inventory) == []


# --------------------------------------------------------------------------- mutations


def _mutated_terraform(tmp_path: Path, old: str, new: str, file: str = "b24.tf") -> Path:
    copy: Path = copy_terraform(tmp_path)
    text = (copy / file).read_text()
    assert old in text, f"mutation target {old!r} not in {file}"
    (copy / file).write_text(text.replace(old, new, 1))
    return copy


def _b24() -> FunctionFolder:
    return scan_folder(REPO_ROOT / "functions" / "b24_token_refresh")


MUTATIONS = {
    "wrong entry point": (
        'entry_point                   = "b24_token_refresh"',
        'entry_point                   = "b24_refresh"',
        "entry_point 'b24_refresh' is not a decorated function",
    ),
    "no trigger topic": (
        "trigger_topic                 = google_pubsub_topic.b24_trigger[0].name",
        "",
        "is a CloudEvent function but has no topic",
    ),
    "trigger topic missing": (
        "trigger_topic                 = google_pubsub_topic.b24_trigger[0].name",
        'trigger_topic                 = "nowhere"',
        "trigger topic 'nowhere' is not a topic",
    ),
    "required variable unset": (
        "STATE_BUCKET               = google_storage_bucket.state.name",
        "",
        "STATE_BUCKET is read without a default but not set",
    ),
    "misspelt variable": (
        "B24_OAUTH_URL              = var.b24_oauth_url",
        "B24_OAUTH_ULR              = var.b24_oauth_url",
        "B24_OAUTH_ULR is set but the code never reads it",
    ),
    "secret not created": (
        'access_token  = "b24-access-token"',
        'access_token  = "b24-access-token-2"',
        None,  # the env follows the resource, so IAM and existence still agree: no problem
    ),
    "secret setting points nowhere": (
        'B24_ACCESS_TOKEN_SECRET    = google_secret_manager_secret.b24["access_token"].secret_id',
        'B24_ACCESS_TOKEN_SECRET    = "b24-access-tokn"',
        "reads secret 'b24-access-tokn', which no google_secret_manager_secret creates",
    ),
    "accessor missing": (
        'for_each  = toset(local.deploy.bitrix24 ? ["client_id", "client_secret"] : [])',
        'for_each  = toset(local.deploy.bitrix24 ? ["client_id"] : [])',
        "cannot read ['b24-client-secret']",
    ),
    "access beyond need": (
        'client_id     = "b24-client-id"',
        'client_id     = "b24-client-id"\n    unrelated     = "someone-elses-secret"',
        None,  # a new secret alone is fine ...
    ),
    "scheduler topic missing": (
        "topic_name = google_pubsub_topic.b24_trigger[0].id",
        'topic_name = "nowhere"',
        "publishes to 'nowhere', not a topic",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_broken_agreement_is_noticed(tmp_path, name) -> None:
    old, new, expected = MUTATIONS[name]
    inventory = load_inventory(_mutated_terraform(tmp_path, old, new))
    problems = all_problems(inventory, [_b24()])
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_access_to_a_secret_the_code_does_not_read_is_noticed(tmp_path) -> None:
    copy = _mutated_terraform(
        tmp_path,
        'client_id     = "b24-client-id"',
        'client_id     = "b24-client-id"\n    unrelated     = "someone-elses-secret"',
    )
    with (copy / "b24.tf").open("a") as handle:
        handle.write(
            textwrap.dedent(
                """
                resource "google_secret_manager_secret_iam_member" "b24_too_much" {
                  secret_id = google_secret_manager_secret.b24["unrelated"].id
                  role      = "roles/secretmanager.secretAccessor"
                  member    = "serviceAccount:${google_service_account.b24[0].email}"
                }
                """
            )
        )
    problems = check_secrets(load_inventory(copy), _b24())
    assert any("does not read: ['someone-elses-secret']" in p for p in problems), problems


def test_project_wide_secret_access_is_noticed(tmp_path) -> None:
    copy = _mutated_terraform(tmp_path, "", "")
    (copy / "zz_mutation.tf").write_text(
        textwrap.dedent(
            """
            resource "google_project_iam_member" "b24_every_secret" {
              project = var.project_id
              role    = "roles/secretmanager.secretAccessor"
              member  = "serviceAccount:${google_service_account.b24[0].email}"
            }
            """
        )
    )
    problems = check_secrets(load_inventory(copy), _b24())
    assert any("on every secret of the project" in p for p in problems), problems


def test_a_name_condition_matching_other_secrets_is_noticed(tmp_path) -> None:
    copy = _mutated_terraform(tmp_path, "", "")
    (copy / "zz_mutation.tf").write_text(
        textwrap.dedent(
            """
            resource "google_project_iam_member" "b24_prefix" {
              project = var.project_id
              role    = "roles/secretmanager.secretAccessor"
              member  = "serviceAccount:${google_service_account.b24[0].email}"
              condition {
                title      = "too-wide"
                expression = "resource.name.startsWith(\\"projects/${data.google_project.this.number}/secrets/b24-\\")"
              }
            }
            resource "google_secret_manager_secret" "b24_other" {
              secret_id = "b24-unrelated"
              replication {
                auto {}
              }
            }
            """
        )
    )
    problems = check_secrets(load_inventory(copy), _b24())
    assert any("does not read: ['b24-unrelated']" in p for p in problems), problems


def _hubspot() -> FunctionFolder:
    return scan_folder(REPO_ROOT / "functions" / "hubspot_refresh")


def test_write_access_to_a_secret_the_code_only_reads_is_noticed(tmp_path) -> None:
    """HubSpot's secretVersionManager binding back on every hubspot-* secret (the condition
    before issue 18): it could add, disable or destroy versions of the app's client secret."""
    copy = _mutated_terraform(
        tmp_path,
        "expression  = local.hubspot_secret_write_condition",
        "expression  = local.hubspot_secret_condition",
        file="hubspot.tf",
    )
    problems = check_secrets(load_inventory(copy), _hubspot())
    for secret in ("hubspot-client-id", "hubspot-client-secret"):
        assert any(
            f"can change secret {secret!r}, which the code only reads, through "
            "google_project_iam_member.hubspot_secret_versions[0] "
            "(roles/secretmanager.secretVersionManager)" in p
            for p in problems
        ), problems


def test_a_custom_role_that_writes_a_read_only_secret_is_noticed(tmp_path) -> None:
    """The annotator role (secrets.update) on Bitrix24's client secret, bound per secret."""
    copy = _mutated_terraform(tmp_path, "", "")
    (copy / "zz_mutation.tf").write_text(
        textwrap.dedent(
            """
            resource "google_secret_manager_secret_iam_member" "b24_annotate_client" {
              secret_id = google_secret_manager_secret.b24["client_secret"].id
              role      = google_project_iam_custom_role.secret_annotator.id
              member    = "serviceAccount:${google_service_account.b24[0].email}"
            }
            """
        )
    )
    problems = check_secrets(load_inventory(copy), _b24())
    assert any("can change secret 'b24-client-secret'" in p for p in problems), problems
    # The secrets the code writes (new token versions, annotations) are no problem.
    assert not any("'b24-access-token'" in p or "'b24-refresh-token'" in p for p in problems)


def test_the_condition_reader_evaluates_name_conditions_and_refuses_the_rest() -> None:
    base = 'resource.name.startsWith("projects/42/secrets/hubspot-")'
    but_client = (
        base + ' && !(resource.name == "projects/42/secrets/hubspot-client-secret"'
        ' || resource.name.startsWith("projects/42/secrets/hubspot-client-secret/"))'
    )
    assert condition_matches_secret(but_client, "hubspot-1-access-token")
    assert condition_matches_secret(but_client, "hubspot-client-secret-2")
    assert not condition_matches_secret(but_client, "hubspot-client-secret")
    assert condition_matches_secret(base, "hubspot-client-secret")
    assert not condition_matches_secret(base, "b24-client-secret")
    # Versions are named .../secrets/<id>/versions/<n>: a condition may match only those.
    assert condition_matches_secret('resource.name.endsWith("/versions/1")', "any")
    assert condition_matches('!resource.name.endsWith("x") || false', "abx") is False
    for unreadable in (
        'resource.type == "secretmanager.googleapis.com/Secret"',
        'resource.name.extract("/secrets/{id}/") == "x"',
        'request.time < timestamp("2030-01-01T00:00:00Z")',
        'resource.name.startsWith("a"',
    ):
        with pytest.raises(ValueError, match="condition not understood"):
            condition_matches(unreadable, "projects/42/secrets/a")


def test_a_service_account_shared_between_integrations_is_noticed(tmp_path) -> None:
    copy = _mutated_terraform(
        tmp_path,
        "service_account_email         = google_service_account.b24[0].email",
        "service_account_email         = google_service_account.graph_renew[0].email",
    )
    problems = check_service_accounts(load_inventory(copy), FOLDERS)
    assert any("shares service account graph-" in p for p in problems), problems


def test_a_job_whose_topic_triggers_nothing_is_noticed(tmp_path) -> None:
    copy = _mutated_terraform(tmp_path, "", "")
    (copy / "zz_mutation.tf").write_text(
        textwrap.dedent(
            """
            resource "google_pubsub_topic" "orphan" {
              name = "orphan-trigger"
            }
            resource "google_cloud_scheduler_job" "orphan" {
              name     = "orphan-job"
              schedule = "0 * * * *"
              pubsub_target {
                topic_name = google_pubsub_topic.orphan.id
                data       = base64encode("{}")
              }
            }
            """
        )
    )
    problems = check_scheduler(load_inventory(copy))
    assert any("no function is triggered by 'orphan-trigger'" in p for p in problems), problems


def test_a_new_required_variable_in_code_is_noticed(tmp_path, inventory) -> None:
    folder = tmp_path / "functions" / "b24_token_refresh"
    shutil.copytree(REPO_ROOT / "functions" / "b24_token_refresh", folder)
    main = folder / "main.py"
    main.write_text(
        main.read_text().replace(
            'state_bucket=env_str("STATE_BUCKET"),',
            'state_bucket=env_str("STATE_BUCKET") + env_str("B24_PORTAL"),',
        )
    )
    problems = check_environment(inventory, scan_folder(folder))
    assert any("B24_PORTAL is read without a default but not set" in p for p in problems)


def test_an_entry_point_of_the_wrong_kind_is_noticed(tmp_path, inventory) -> None:
    folder = tmp_path / "functions" / "b24_token_refresh"
    shutil.copytree(REPO_ROOT / "functions" / "b24_token_refresh", folder)
    main = folder / "main.py"
    main.write_text(
        main.read_text().replace("@functions_framework.cloud_event", "@functions_framework.http")
    )
    problems = check_deployed(inventory, scan_folder(folder))
    assert any("is an HTTP function but has a trigger topic" in p for p in problems), problems


def test_a_literal_secret_read_is_noticed(tmp_path, inventory) -> None:
    folder = tmp_path / "functions" / "b24_token_refresh"
    shutil.copytree(REPO_ROOT / "functions" / "b24_token_refresh", folder)
    (folder / "b24_extra.py").write_text(
        "def webhook(store):\n    return store.read('b24-webhook-key')\n"
    )
    problems = check_secrets(inventory, scan_folder(folder))
    assert any("'b24-webhook-key'" in p for p in problems), problems


def test_a_topic_the_code_publishes_to_must_exist(tmp_path, inventory) -> None:
    folder = tmp_path / "functions" / "b24_token_refresh"
    shutil.copytree(REPO_ROOT / "functions" / "b24_token_refresh", folder)
    main = folder / "main.py"
    main.write_text(
        main.read_text().replace(
            'state_bucket=env_str("STATE_BUCKET"),',
            'state_bucket=env_str("STATE_BUCKET") + env_str("B24_DONE_TOPIC", "b24-done"),',
        )
    )
    problems = check_topics(inventory, scan_folder(folder))
    assert any("B24_DONE_TOPIC='b24-done' is not a topic" in p for p in problems), problems


# --------------------------------------------------------------------------- deploy archives


def build_archive(folder: Path, destination: Path) -> Path:
    """The zip the function module builds: the folder's files plus shared/ as ``shared/``,
    without bytecode or tool caches."""
    archive = destination / f"{folder.name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for base, prefix in ((folder, ""), (REPO_ROOT / "shared", "shared/")):
            for path in sorted(base.rglob("*")):
                relative = path.relative_to(base).as_posix()
                if path.is_file() and not ARCHIVE_SKIP.search(relative):
                    zf.write(path, prefix + relative)
    return archive


DRIVER = textwrap.dedent(
    """
    import base64, json, os, sys
    sys.path.insert(0, os.getcwd())  # as the runtime does: main.py's folder comes first
    import functions_framework
    import main  # the import alone proves the settings are complete

    entry_points = json.loads(sys.argv[1])
    results = {}
    for name, kind in entry_points.items():
        assert callable(getattr(main, name)), name
        client = functions_framework.create_app(name, "main.py").test_client()
        if kind == "cloud_event":
            # A Pub/Sub message whose data is not JSON: logged and acknowledged (2xx).
            event = {
                "specversion": "1.0",
                "type": "google.cloud.pubsub.topic.v1.messagePublished",
                "source": "//pubsub.googleapis.com/projects/local-project/topics/t",
                "id": "archive-check",
                "datacontenttype": "application/json",
                "data": {"message": {"data": base64.b64encode(b"not json").decode(),
                                     "messageId": "archive-check"}},
            }
            response = client.post("/", data=json.dumps(event),
                                   headers={"Content-Type": "application/cloudevents+json"})
        else:
            # A request no webhook sender would make: refused with a 4xx, not a 5xx.
            response = client.post("/", data=b"\\x00not json",
                                   headers={"Content-Type": "application/json"})
        results[name] = response.status_code
    print("RESULTS " + json.dumps(results))
    """
)


def _run_env(function: dict[str, Any], archive_dir: Path) -> dict[str, str]:
    env = {
        k: os.environ[k]
        for k in ("PATH", "HOME", "LANG", "SSL_CERT_FILE", "PIP_INDEX_URL")
        if k in os.environ
    }
    # Point every client at the local emulators; never at Google Cloud.
    for key in (
        "PUBSUB_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "SECRET_MANAGER_EMULATOR_HOST",
        "GOOGLE_CLOUD_PROJECT",
    ):
        if key in os.environ:
            env[key] = os.environ[key]
    for key, value in (function["environment"] or {}).items():
        if key == "GOOGLE_CLOUD_PROJECT":
            continue
        # Values known only after apply (bucket names, URLs) get a local stand-in.
        env[key] = value if value is not None else f"local-{key.lower().replace('_', '-')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _folder_params() -> list[Any]:
    return [pytest.param(f, id=f.name, marks=pytest.mark.slow) for f in FOLDERS]


@pytest.mark.parametrize("folder", _folder_params())
def test_deploy_archive_installs_alone_and_acknowledges_a_bad_event(
    inventory, folder, stack, tmp_path
) -> None:
    deployed = functions_of(inventory, folder)
    assert deployed, f"{folder.name} is not deployed by Terraform"
    archive = build_archive(folder.path, tmp_path)
    app = tmp_path / "app"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(app)
    assert "main.py" in names and "requirements.txt" in names and "shared/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(app / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    (tmp_path / "driver.py").write_text(DRIVER)
    for function in deployed:
        entry_points = {function["entry_point"]: folder.entry_points[function["entry_point"]]}
        result = subprocess.run(
            [str(python), str(tmp_path / "driver.py"), json.dumps(entry_points)],
            cwd=app,
            env=_run_env(function, app),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        line = next(x for x in result.stdout.splitlines() if x.startswith("RESULTS "))
        statuses = json.loads(line.removeprefix("RESULTS "))
        for name, status in statuses.items():
            if entry_points[name] == "cloud_event":
                assert 200 <= status < 300, f"{name}: bad event answered {status}"
            else:
                assert 400 <= status < 500, f"{name}: bad request answered {status}"
