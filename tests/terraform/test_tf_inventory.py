"""tools/tf_inventory.py on a small hand-written plan and state (the shapes of ``terraform show
-json``): each row names one value of the inventory and what it must be."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools.tf_inventory import account_id, inventory, main, short_name, source_folder

SA = "serviceAccount:fn-sa@p.iam.gserviceaccount.com"
SERVICE = "projects/p/locations/r/services/fn"


def _resource(address: str, rtype: str, values: dict[str, Any], mode: str = "managed") -> Any:
    name = address.split(".")[-1].split("[")[0]
    return {"address": address, "mode": mode, "type": rtype, "name": name, "values": values}


MODULE = {
    "address": "module.fn[0]",
    "resources": [
        _resource(
            "module.fn[0].data.archive_file.source",
            "archive_file",
            {
                "source": [
                    {"filename": "main.py", "content": "print('fn')\n"},
                    {"filename": "shared/__init__.py", "content": ""},
                ]
            },
            mode="data",
        ),
        _resource(
            "module.fn[0].google_cloudfunctions2_function.this",
            "google_cloudfunctions2_function",
            {
                "name": "fn",
                "build_config": [{"entry_point": "handle"}],
                "event_trigger": [
                    {
                        "pubsub_topic": "projects/p/topics/fn-trigger",
                        "retry_policy": "RETRY_POLICY_RETRY",
                    }
                ],
                "service_config": [
                    {
                        "environment_variables": {"A_SECRET": "a-secret"},
                        "service_account_email": "fn-sa@p.iam.gserviceaccount.com",
                        "ingress_settings": "ALLOW_INTERNAL_ONLY",
                        "service": SERVICE,
                    }
                ],
            },
        ),
        _resource(
            "module.fn[0].google_cloud_run_service_iam_member.public_invoker[0]",
            "google_cloud_run_service_iam_member",
            {"service": SERVICE, "role": "roles/run.invoker", "member": "allUsers"},
        ),
    ],
}

STATE = {
    "values": {
        "outputs": {"topic": {"value": "fn-trigger", "type": "string", "sensitive": False}},
        "root_module": {
            "resources": [
                _resource("google_pubsub_topic.t", "google_pubsub_topic", {"name": "fn-trigger"}),
                _resource(
                    'google_secret_manager_secret.s["a"]',
                    "google_secret_manager_secret",
                    {"secret_id": "a-secret", "labels": {"integration": "x"}},
                ),
                _resource(
                    'google_secret_manager_secret_iam_member.read["a"]',
                    "google_secret_manager_secret_iam_member",
                    {
                        "secret_id": "projects/p/secrets/a-secret",
                        "role": "roles/secretmanager.secretAccessor",
                        "member": SA,
                    },
                ),
                _resource(
                    "google_project_iam_member.wide",
                    "google_project_iam_member",
                    {
                        "role": "projects/p/roles/lister",
                        "member": SA,
                        "condition": [{"expression": 'resource.name.startsWith("x")'}],
                    },
                ),
                _resource(
                    "google_project_iam_custom_role.lister",
                    "google_project_iam_custom_role",
                    {
                        "id": "projects/p/roles/lister",
                        "permissions": ["secretmanager.secrets.list"],
                    },
                ),
                _resource(
                    "google_service_account.fn",
                    "google_service_account",
                    {"account_id": "fn-sa", "email": "fn-sa@p.iam.gserviceaccount.com"},
                ),
                _resource(
                    "google_cloud_scheduler_job.job",
                    "google_cloud_scheduler_job",
                    {
                        "name": "job",
                        "schedule": "0 * * * *",
                        "time_zone": "Etc/UTC",
                        "pubsub_target": [{"topic_name": "projects/p/topics/fn-trigger"}],
                        "http_target": [],
                    },
                ),
                _resource(
                    "google_logging_metric.m",
                    "google_logging_metric",
                    {"name": "m", "filter": "jsonPayload.event=x", "label_extractors": None},
                ),
                _resource(
                    'google_monitoring_alert_policy.a["x"]',
                    "google_monitoring_alert_policy",
                    {
                        "display_name": "A",
                        "documentation": [{"content": "Runbook: docs/runbooks/x.md"}],
                        "notification_channels": ["projects/p/notificationChannels/1"],
                    },
                ),
                _resource(
                    "google_monitoring_notification_channel.email[0]",
                    "google_monitoring_notification_channel",
                    {"type": "email"},
                ),
            ],
            "child_modules": [MODULE],
        },
    }
}

PLAN = {
    # At plan, what the provider computes is absent (unknown): here the function's account.
    "planned_values": {
        "root_module": {
            "child_modules": [
                {
                    **MODULE,
                    "resources": [
                        {**r, "values": {**r["values"], "service_config": [{}]}}
                        if r["type"] == "google_cloudfunctions2_function"
                        else {**r, "values": {**r["values"], "service": None}}
                        if r["type"] == "google_cloud_run_service_iam_member"
                        else r
                        for r in MODULE["resources"]
                    ],
                }
            ]
        },
        "outputs": {"topic": {"sensitive": False}},
    },
    "configuration": {
        "root_module": {
            "outputs": {"topic": {"expression": {}}, "unset": {"expression": {}}},
            "variables": {
                "project_id": {"description": "The project"},
                "region": {"default": "europe-west1"},
            },
        }
    },
}


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "functions" / "fn"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text("print('fn')\n")
    (folder / "requirements.txt").write_text("")  # not in the archive: still the folder
    other = tmp_path / "functions" / "other"
    other.mkdir()
    (other / "main.py").write_text("print('other')\n")
    return tmp_path / "functions"


def _function(inv: dict[str, Any]) -> dict[str, Any]:
    functions: list[dict[str, Any]] = inv["functions"]
    (function,) = functions
    return function


ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], Any]] = [
    ("function module", lambda i: _function(i)["module"], "fn"),
    ("function key", lambda i: _function(i)["key"], 0),
    ("function name", lambda i: _function(i)["name"], "fn"),
    ("entry point", lambda i: _function(i)["entry_point"], "handle"),
    ("source folder from the archive", lambda i: _function(i)["source_dir"], "functions/fn"),
    ("trigger", lambda i: _function(i)["trigger"], "topic"),
    ("trigger topic as a name", lambda i: _function(i)["trigger_topic"], "fn-trigger"),
    ("retry", lambda i: _function(i)["retry"], True),
    ("public through an allUsers invoker", lambda i: _function(i)["public"], True),
    ("environment", lambda i: _function(i)["environment"], {"A_SECRET": "a-secret"}),
    ("function service account", lambda i: _function(i)["service_account"], "fn-sa"),
    ("topics", lambda i: i["topics"], [{"address": "google_pubsub_topic.t", "name": "fn-trigger"}]),
    ("secret", lambda i: i["secrets"][0]["secret_id"], "a-secret"),
    ("secret IAM secret as an id", lambda i: i["secret_iam"][0]["secret_id"], "a-secret"),
    ("secret IAM account", lambda i: i["secret_iam"][0]["service_account"], "fn-sa"),
    (
        "project IAM condition",
        lambda i: i["project_iam"][0]["condition"],
        'resource.name.startsWith("x")',
    ),
    ("project IAM account", lambda i: i["project_iam"][0]["service_account"], "fn-sa"),
    (
        "custom roles",
        lambda i: i["custom_roles"],
        {"projects/p/roles/lister": ["secretmanager.secrets.list"]},
    ),
    ("service accounts", lambda i: [a["account_id"] for a in i["service_accounts"]], ["fn-sa"]),
    ("scheduler topic as a name", lambda i: i["scheduler_jobs"][0]["topic"], "fn-trigger"),
    ("scheduler without http", lambda i: i["scheduler_jobs"][0]["http_uri"], None),
    ("scheduler time zone", lambda i: i["scheduler_jobs"][0]["time_zone"], "Etc/UTC"),
    ("metric label extractors", lambda i: i["log_metrics"][0]["label_extractors"], {}),
    (
        "alert documentation",
        lambda i: i["alert_policies"][0]["documentation"],
        "Runbook: docs/runbooks/x.md",
    ),
    ("alert channels", lambda i: len(i["alert_policies"][0]["notification_channels"]), 1),
    ("channels", lambda i: i["notification_channels"][0]["type"], "email"),
    ("outputs", lambda i: i["outputs"], ["topic", "unset"]),
    ("output values", lambda i: i["output_values"], {"topic": "fn-trigger", "unset": None}),
    (
        "variable without default",
        lambda i: i["variables"]["project_id"],
        {"has_default": False, "description": "The project"},
    ),
    ("variable with default", lambda i: i["variables"]["region"]["has_default"], True),
]


@pytest.mark.parametrize(("what", "get", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_extracted_from_the_state(functions_dir, what, get, expected) -> None:
    assert get(inventory(PLAN, STATE, functions_dir)) == expected


PLAN_ONLY_ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], Any]] = [
    ("unknown account is None", lambda i: _function(i)["service_account"], None),
    ("unknown environment is empty", lambda i: _function(i)["environment"], {}),
    ("known entry point", lambda i: _function(i)["entry_point"], "handle"),
    ("known source folder", lambda i: _function(i)["source_dir"], "functions/fn"),
    ("unknown invoker service: not public", lambda i: _function(i)["public"], False),
    ("unknown output is None", lambda i: i["output_values"]["topic"], None),
]


@pytest.mark.parametrize(
    ("what", "get", "expected"), PLAN_ONLY_ROWS, ids=[r[0] for r in PLAN_ONLY_ROWS]
)
def test_extracted_from_the_plan_alone(functions_dir, what, get, expected) -> None:
    assert get(inventory(PLAN, None, functions_dir)) == expected


def test_an_archive_matching_no_folder_or_several_has_no_source_dir(functions_dir) -> None:
    assert source_folder({"main.py": "changed\n"}, functions_dir) is None
    assert source_folder({"shared/x.py": ""}, functions_dir) is None
    twin = functions_dir / "twin"
    twin.mkdir()
    (twin / "main.py").write_text("print('fn')\n")
    assert source_folder({"main.py": "print('fn')\n"}, functions_dir) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fn-sa@p.iam.gserviceaccount.com", "fn-sa"),
        (SA, "fn-sa"),
        ("user:someone@example.com", None),
        ("allUsers", None),
        (None, None),
    ],
)
def test_account_id(value, expected) -> None:
    assert account_id(value) == expected


def test_short_name_leaves_other_strings_alone() -> None:
    assert short_name("projects/p/topics/t", "topics") == "t"
    assert short_name("nowhere", "topics") == "nowhere"
    assert short_name("projects/p/topics/t", "secrets") == "projects/p/topics/t"


def test_command_line(tmp_path, functions_dir, capsys) -> None:
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    (tmp_path / "state.json").write_text(json.dumps(STATE))
    assert main([str(tmp_path / "plan.json"), str(tmp_path / "state.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == inventory(PLAN, STATE, functions_dir)
