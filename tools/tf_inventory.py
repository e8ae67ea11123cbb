"""Print, as JSON, what the root Terraform module deploys, as Terraform itself evaluated it.

    python tools/tf_inventory.py PLAN_JSON [STATE_JSON] [--functions-dir DIR]

PLAN_JSON is ``terraform show -json`` of a plan (the plan gate keeps one per scenario, see
tools/tfstandin/gate.py); STATE_JSON, if given, ``terraform show -json`` of the state after
applying that plan against the gate's stand-in providers, where every value the provider
computes (service account emails, topic and secret ids) is filled in its real shape. Resource
values come from the state when given, else from the plan's ``planned_values``, where a value
known only after apply is absent and reads as ``null``. Variables (descriptions, defaults) and
output names come from the plan's ``configuration``.

A function's ``source_dir`` is the folder under DIR (default: ``functions`` beside PLAN_JSON,
as in the gate's workspace) holding every file of its deploy archive outside ``shared/``, with
the same content: the files Terraform packed, not a path string. Nothing here evaluates HCL;
the only rewriting is from resource ids to short names where the checks compare names
(``projects/P/topics/T`` to ``T``, ``projects/P/secrets/S`` to ``S``, a service account email
or member to its account id). Standard library only, so it runs in any Python >= 3.11.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Json = dict[str, Any]

PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
MODULE_ADDRESS = re.compile(r"^module\.(?P<name>[^.\[]+)(?:\[(?P<key>[^\]]+)\])?$")
SERVICE_ACCOUNT = re.compile(r"^(?:serviceAccount:)?([^@:]+)@[^@]+\.iam\.gserviceaccount\.com$")


def resources(module: Json, module_address: str = "") -> Iterator[tuple[str, Json]]:
    """(module address, resource) for every resource of a values representation's module and
    its child modules, depth first; the root module's address is ""."""
    for resource in module.get("resources", []):
        yield module_address, resource
    for child in module.get("child_modules", []):
        yield from resources(child, child["address"])


def short_name(value: Any, collection: str) -> Any:
    """``projects/P/<collection>/NAME`` as NAME; anything else unchanged."""
    if isinstance(value, str):
        match = re.fullmatch(rf"projects/[^/]+/{collection}/([^/]+)", value)
        if match:
            return match.group(1)
    return value


def account_id(member: Any) -> str | None:
    """The account id of a service account email or ``serviceAccount:`` member, else None."""
    match = SERVICE_ACCOUNT.match(member) if isinstance(member, str) else None
    return match.group(1) if match else None


def first(blocks: Any) -> Json:
    """The single nested block of a list-nested block attribute, or {} when it is absent."""
    return blocks[0] if isinstance(blocks, list) and blocks and blocks[0] else {}


def source_folder(files: dict[str, str], functions_dir: Path | None) -> str | None:
    """``<dir name>/<folder>`` for the one folder under ``functions_dir`` that holds every
    archive file outside ``shared/`` with the same content; None unless exactly one does."""
    own = {name: text for name, text in files.items() if not name.startswith("shared/")}
    if not own or functions_dir is None or not functions_dir.is_dir():
        return None
    matches = [
        folder
        for folder in sorted(functions_dir.iterdir())
        if folder.is_dir()
        and all(_same_text(folder / name, text) for name, text in sorted(own.items()))
    ]
    return f"{functions_dir.name}/{matches[0].name}" if len(matches) == 1 else None


def _same_text(path: Path, text: str) -> bool:
    try:
        return path.read_bytes().decode("utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def function_entry(module_address: str, resource: Json, archive: dict[str, str]) -> Json:
    """One function, from its resource and its module instance's deploy archive."""
    values = resource["values"]
    match = MODULE_ADDRESS.match(module_address)
    if match is None:
        raise ValueError(f"a function outside a module call: {module_address!r}")
    key = match.group("key")
    service = first(values.get("service_config"))
    trigger = first(values.get("event_trigger"))
    return {
        "address": resource["address"],
        "module": match.group("name"),
        "key": json.loads(key) if key is not None else None,
        "name": values.get("name"),
        "entry_point": first(values.get("build_config")).get("entry_point"),
        "trigger": "topic" if trigger else "http",
        "trigger_topic": short_name(trigger.get("pubsub_topic"), "topics") if trigger else None,
        "retry": trigger.get("retry_policy") == "RETRY_POLICY_RETRY" if trigger else None,
        "public": service.get("ingress_settings") == "ALLOW_ALL",
        "environment": service.get("environment_variables") or {},
        "service_account": account_id(service.get("service_account_email")),
    }


def condition(block: Json) -> Json:
    """An alert condition: its kind (threshold, absent, ...), filters and aggregations."""
    for kind in ("condition_threshold", "condition_absent"):
        body = first(block.get(kind))
        if body:
            aggregation = first(body.get("aggregations"))
            return {
                "display_name": block.get("display_name"),
                "kind": kind.removeprefix("condition_"),
                "filter": body.get("filter"),
                "denominator_filter": body.get("denominator_filter") or None,
                "duration": body.get("duration"),
                "threshold": body.get("threshold_value"),
                "alignment_period": aggregation.get("alignment_period"),
                "group_by": aggregation.get("group_by_fields") or [],
            }
    return {"display_name": block.get("display_name"), "kind": "other"}


def inventory(plan: Json, state: Json | None = None, functions_dir: Path | None = None) -> Json:
    values = state["values"] if state is not None else plan["planned_values"]
    config = plan["configuration"]["root_module"]
    output_values = values.get("outputs", {})
    result: Json = {
        "functions": [],
        "topics": [],
        "scheduler_jobs": [],
        "secrets": [],
        "secret_iam": [],
        "service_accounts": [],
        "project_iam": [],
        "custom_roles": {},
        "log_metrics": [],
        "alert_policies": [],
        "notification_channels": [],
        "log_exclusions": [],
        "dashboards": [],
        "outputs": sorted(config.get("outputs", {})),
        "output_values": {
            name: output_values.get(name, {}).get("value")
            for name in sorted(config.get("outputs", {}))
        },
        "variables": {
            name: {"has_default": "default" in spec, "description": spec.get("description", "")}
            for name, spec in sorted(config.get("variables", {}).items())
        },
    }
    everything = list(resources(values["root_module"]))
    archives: dict[str, dict[str, str]] = {}
    public_services: set[str] = set()
    for module_address, resource in everything:
        v = resource["values"]
        if resource["mode"] == "data" and resource["type"] == "archive_file":
            archives[module_address] = {s["filename"]: s["content"] for s in v.get("source", [])}
        public = v.get("member") in PUBLIC_MEMBERS and v.get("service") is not None
        if resource["type"] == "google_cloud_run_service_iam_member" and public:
            public_services.add(v["service"])
    for module_address, resource in everything:
        if resource["mode"] != "managed":
            continue
        rtype, address, v = resource["type"], resource["address"], resource["values"]
        if rtype == "google_cloudfunctions2_function":
            archive = archives.get(module_address, {})
            entry = function_entry(module_address, resource, archive)
            entry["public"] |= first(v.get("service_config")).get("service") in public_services
            entry["source_dir"] = source_folder(archive, functions_dir)
            result["functions"].append(entry)
        elif rtype == "google_pubsub_topic":
            result["topics"].append({"address": address, "name": v.get("name")})
        elif rtype == "google_cloud_scheduler_job":
            pubsub, http = first(v.get("pubsub_target")), first(v.get("http_target"))
            result["scheduler_jobs"].append(
                {
                    "address": address,
                    "name": v.get("name"),
                    "schedule": v.get("schedule"),
                    "time_zone": v.get("time_zone"),
                    "topic": short_name(pubsub.get("topic_name"), "topics") if pubsub else None,
                    "http_uri": http.get("uri") if http else None,
                }
            )
        elif rtype == "google_secret_manager_secret":
            result["secrets"].append(
                {"address": address, "secret_id": v.get("secret_id"), "labels": v.get("labels")}
            )
        elif rtype in (
            "google_secret_manager_secret_iam_member",
            "google_secret_manager_secret_iam_binding",
        ):
            members = v.get("members") if "members" in v else [v.get("member")]
            for member in members or [None]:
                result["secret_iam"].append(
                    {
                        "address": address,
                        "secret_id": short_name(v.get("secret_id"), "secrets"),
                        "role": v.get("role"),
                        "member": member,
                        "service_account": account_id(member),
                    }
                )
        elif rtype == "google_project_iam_member":
            result["project_iam"].append(
                {
                    "address": address,
                    "role": v.get("role"),
                    "member": v.get("member"),
                    "service_account": account_id(v.get("member")),
                    "condition": first(v.get("condition")).get("expression"),
                }
            )
        elif rtype == "google_project_iam_custom_role" and v.get("id") is not None:
            result["custom_roles"][v["id"]] = v.get("permissions") or []
        elif rtype == "google_service_account":
            result["service_accounts"].append(
                {"address": address, "account_id": v.get("account_id"), "email": v.get("email")}
            )
        elif rtype == "google_logging_metric":
            result["log_metrics"].append(
                {
                    "address": address,
                    "name": v.get("name"),
                    "filter": v.get("filter"),
                    "value_extractor": v.get("value_extractor"),
                    "label_extractors": v.get("label_extractors") or {},
                }
            )
        elif rtype == "google_monitoring_alert_policy":
            result["alert_policies"].append(
                {
                    "address": address,
                    "display_name": v.get("display_name"),
                    "documentation": first(v.get("documentation")).get("content"),
                    "notification_channels": v.get("notification_channels"),
                    "conditions": [condition(c) for c in v.get("conditions") or []],
                }
            )
        elif rtype == "google_logging_project_exclusion":
            result["log_exclusions"].append(
                {"address": address, "name": v.get("name"), "filter": v.get("filter")}
            )
        elif rtype == "google_monitoring_dashboard":
            result["dashboards"].append(
                {"address": address, "dashboard": json.loads(v.get("dashboard_json") or "{}")}
            )
        elif rtype == "google_monitoring_notification_channel":
            result["notification_channels"].append({"address": address, "type": v.get("type")})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="terraform show -json of a plan")
    parser.add_argument("state", type=Path, nargs="?", help="terraform show -json of the state")
    parser.add_argument("--functions-dir", type=Path, help="default: functions beside the plan")
    args = parser.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    state = json.loads(args.state.read_text()) if args.state else None
    functions_dir = args.functions_dir or args.plan.parent / "functions"
    print(json.dumps(inventory(plan, state, functions_dir), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
