"""The checks behind test_terraform_agrees_with_code.py, as plain functions returning the
problems they find, so the tests can run them on the real tree and on mutated copies.

The Terraform side is what Terraform itself evaluated: gate_apply.py plans and applies the tree
against the plan gate's stand-in providers (in the gate's venv, .tools/tfgate) and
tools/tf_inventory.py reads the plan and state JSON; the code side comes from
tools/function_scan.py (``ast``).
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tools.function_scan import PLATFORM_VARIABLES, FunctionFolder
from tools.tf_inventory import account_id, first, resources, short_name
from tools.tf_inventory import inventory as build_inventory

REPO_ROOT = Path(__file__).resolve().parents[2]
GATE_PYTHON = REPO_ROOT / ".tools" / "tfgate" / "bin" / "python"
GATE_APPLY = Path(__file__).resolve().with_name("gate_apply.py")
TERRAFORM = REPO_ROOT / "terraform"

ACCESSOR = "roles/secretmanager.secretAccessor"

# The real tree's inventory, made once per session (a plan and an apply take ~15 s).
_REAL_TREE: dict[str, Any] = {}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_tfgate() -> None:
    if GATE_PYTHON.exists():
        return
    message = f"{GATE_PYTHON} missing: run `make .tools/tfgate`"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def load_inventory(terraform_dir: Path) -> dict[str, Any]:
    """The inventory of ``terraform_dir`` (and ../functions, ../shared beside it), from
    Terraform's own plan and state; the real tree's is computed once and copied."""
    real = terraform_dir.resolve() == TERRAFORM
    if not (real and _REAL_TREE):
        require_tfgate()
        with tempfile.TemporaryDirectory(prefix="tf-inventory-") as tmp:
            workspace = Path(tmp) / "workspace"
            result = subprocess.run(
                [str(GATE_PYTHON), str(GATE_APPLY), str(terraform_dir), str(workspace)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=280,
                check=False,
            )
            if result.returncode != 0:
                raise AssertionError(f"gate_apply.py failed: {result.stdout}{result.stderr}")
            state = json.loads((workspace / "state.json").read_text())
            found = build_inventory(
                json.loads((workspace / "plan.json").read_text()), state, workspace / "functions"
            )
            found["pubsub"] = pubsub_inventory(state)
        if not real:
            return found
        _REAL_TREE.update(found)
    return copy.deepcopy(_REAL_TREE)


def copy_terraform(destination: Path) -> Path:
    """A copy of terraform/ in ``destination``, with functions/ and shared/ beside it (links:
    the deploy archives are packed from them), to mutate and inventory."""
    copied = destination / "terraform"
    shutil.copytree(
        TERRAFORM, copied, ignore=shutil.ignore_patterns(".terraform*", ".build", "*.tfstate*")
    )
    for sibling in ("functions", "shared"):
        (destination / sibling).symlink_to(REPO_ROOT / sibling, target_is_directory=True)
    return copied


def functions_of(inventory: dict[str, Any], folder: FunctionFolder) -> list[dict[str, Any]]:
    return [f for f in inventory["functions"] if f["source_dir"] == f"functions/{folder.name}"]


def topic_names(inventory: dict[str, Any]) -> set[str]:
    return {t["name"] for t in inventory["topics"] if t["name"]}


def secret_ids(inventory: dict[str, Any]) -> set[str]:
    return {s["secret_id"] for s in inventory["secrets"] if s["secret_id"]}


# --------------------------------------------------------------------------- checks


def push_deliveries(inventory: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    """The push subscriptions that post to ``function``'s URL."""
    pubsub = inventory.get("pubsub", {})
    uri = next(
        (f["uri"] for f in pubsub.get("functions", []) if f["name"] == function["name"]), None
    )
    return [s for s in pubsub.get("subscriptions", []) if uri and s["push_endpoint"] == uri]


def _push_problems(inventory: dict[str, Any], function: dict[str, Any], where: str) -> list[str]:
    """A CloudEvent function without an Eventarc trigger is delivered by a push subscription of
    an existing topic, whose OIDC identity may invoke it (the function is private)."""
    entry = function["entry_point"]
    deliveries = push_deliveries(inventory, function)
    if not deliveries:
        return [f"{where}: {entry} is a CloudEvent function but has no topic or push subscription"]
    problems: list[str] = []
    topics = topic_names(inventory)
    invokers = {
        m["member"]
        for m in inventory["pubsub"]["run_invokers"]
        if m["service"] == function["name"] and m["role"] == "roles/run.invoker"
    }
    for sub in deliveries:
        if sub["topic"] not in topics:
            problems.append(
                f"{where}: push subscription {sub['name']} reads {sub['topic']!r}, not a topic"
            )
        if f"serviceAccount:{sub['oidc_service_account']}" not in invokers:
            problems.append(
                f"{where}: {sub['name']} pushes as {sub['oidc_service_account']!r}, which may not invoke it"
            )
    return problems


def check_deployed(inventory: dict[str, Any], folder: FunctionFolder) -> list[str]:
    """A function resource for the folder, one per entry point, each with the trigger its
    decorator needs: a CloudEvent function a topic that exists (an Eventarc trigger, or a push
    subscription allowed to invoke it), an HTTP function none."""
    problems: list[str] = []
    deployed = functions_of(inventory, folder)
    if not deployed:
        return [f"{folder.name}: no module.function has source_dir functions/{folder.name}"]
    if not folder.entry_points:
        problems.append(f"{folder.name}: main.py has no @functions_framework entry point")
    topics = topic_names(inventory)
    for name, decorator in sorted(folder.entry_points.items()):
        if not any(f["entry_point"] == name for f in deployed):
            problems.append(f"{folder.name}: entry point {name} ({decorator}) is not deployed")
    for function in deployed:
        where = f"{folder.name}: module.{function['module']}"
        entry = str(function["entry_point"])
        kind = folder.entry_points.get(entry)
        if kind is None:
            problems.append(f"{where}: entry_point {entry!r} is not a decorated function")
            continue
        if kind == "cloud_event":
            if function["trigger"] != "topic":
                problems += _push_problems(inventory, function, where)
            elif function["trigger_topic"] not in topics:
                problems.append(
                    f"{where}: trigger topic {function['trigger_topic']!r} is not a topic"
                )
            if function["public"]:
                problems.append(f"{where}: a Pub/Sub-triggered function must not be public")
        elif function["trigger"] != "http":
            problems.append(f"{where}: {entry} is an HTTP function but has a trigger topic")
    return problems


def check_environment(inventory: dict[str, Any], folder: FunctionFolder) -> list[str]:
    """Every variable read without a default is set; every variable set is read (a typo in
    a variable name would otherwise silently fall back to the default)."""
    problems: list[str] = []
    read = set(folder.variables())
    for function in functions_of(inventory, folder):
        where = f"{folder.name}: module.{function['module']}"
        env = set(function["environment"] or {})
        for name in sorted(folder.required() - env):
            problems.append(f"{where}: {name} is read without a default but not set")
        for name in sorted(env - read - PLATFORM_VARIABLES):
            problems.append(f"{where}: {name} is set but the code never reads it")
    return problems


def secrets_used(function: dict[str, Any], folder: FunctionFolder) -> tuple[set[str], list[str]]:
    """Secret ids one deployed function reads: each *_SECRET setting's value in its
    environment, or the code's default; plus ids the code names literally."""
    used = set(folder.literal_secrets)
    problems: list[str] = []
    env = function["environment"] or {}
    for name, default in sorted(folder.secret_settings().items()):
        if name in env:
            if env[name] is None:
                problems.append(
                    f"{folder.name}: module.{function['module']}: {name} cannot be resolved "
                    "statically; set it from a google_secret_manager_secret"
                )
            else:
                used.add(env[name])
        elif default:
            used.add(default)
    return used, problems


# SecretStore and SecretManagerServiceClient calls that change a secret or its versions.
WRITE_CALLS = frozenset(
    {
        "add_version",
        "update_annotations",
        "update_labels",
        "prune",
        "create",
        "add_secret_version",
        "destroy_secret_version",
        "disable_secret_version",
        "enable_secret_version",
        "update_secret",
        "delete_secret",
    }
)


def secrets_written(function: dict[str, Any], folder: FunctionFolder) -> set[str]:
    """Secret ids the code changes: the first argument of a write call (WRITE_CALLS) that is a
    literal id or a settings field (``settings.access_token_secret``) filled from a *_SECRET
    variable, resolved like ``secrets_used``. Ids computed at run time (HubSpot's account
    secrets) are not Terraform resources, so nothing is lost by leaving them out; every other
    secret the function reads is read-only to it."""
    settings = folder.secret_settings()
    fields = {r.setting: r.name for r in folder.env if r.setting and r.name in settings}
    env = function["environment"] or {}
    written: set[str] = set()
    for file in sorted(folder.path.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text("utf-8"), str(file))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITE_CALLS
                and node.args
            ):
                continue
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                written.add(target.value)
            elif isinstance(target, ast.Attribute) and target.attr in fields:
                variable = fields[target.attr]
                value = env.get(variable) if variable in env else settings[variable]
                if value:
                    written.add(value)
    return written


# Secret Manager permissions that read (values or metadata) and change nothing.
READ_PERMISSIONS = frozenset(
    {
        "secretmanager.versions.access",
        "secretmanager.versions.get",
        "secretmanager.versions.list",
        "secretmanager.secrets.get",
        "secretmanager.secrets.list",
        "secretmanager.secrets.getIamPolicy",
        "secretmanager.locations.get",
        "secretmanager.locations.list",
    }
)
READ_ROLES = frozenset({ACCESSOR, "roles/secretmanager.viewer"})


def _can_write(role: str | None, inventory: dict[str, Any]) -> bool:
    """Whether ``role`` may change a secret: any predefined Secret Manager role but the
    accessor and the viewer, or a custom role with a Secret Manager permission that is not a
    read (READ_PERMISSIONS)."""
    if not role:
        return False
    if role.startswith("roles/"):
        return role.startswith("roles/secretmanager.") and role not in READ_ROLES
    permissions = inventory.get("custom_roles", {}).get(role) or []
    return any(p.startswith("secretmanager.") and p not in READ_PERMISSIONS for p in permissions)


def check_secrets(inventory: dict[str, Any], folder: FunctionFolder) -> list[str]:
    """Every secret the function reads exists; its service account can read exactly those
    secrets (with several service accounts for one folder: together exactly those, each
    none beyond them, since the scan cannot tell which entry point reads which), and can
    change none that the code only reads (``secrets_written``)."""
    problems: list[str] = []
    existing = secret_ids(inventory)
    deployed = functions_of(inventory, folder)
    needed: set[str] = set()
    written: set[str] = set()
    for function in deployed:
        used, unresolved = secrets_used(function, folder)
        problems += unresolved
        needed |= used
        written |= secrets_written(function, folder)
        for secret in sorted(used - existing):
            problems.append(
                f"{folder.name}: module.{function['module']} reads secret {secret!r}, "
                "which no google_secret_manager_secret creates"
            )
    accounts = {f["service_account"] for f in deployed}
    if None in accounts:
        problems.append(f"{folder.name}: a function's service account cannot be resolved")
        accounts.discard(None)
    readable_by: dict[str, set[str]] = {a: set() for a in accounts}
    any_role_by: dict[str, set[str]] = {a: set() for a in accounts}
    writable_by: dict[str, dict[str, set[str]]] = {a: {} for a in accounts}  # secret -> how
    for member in inventory["secret_iam"]:
        account = member["service_account"]
        if account in readable_by and member["secret_id"]:
            any_role_by[account].add(member["secret_id"])
            if member["role"] == ACCESSOR:
                readable_by[account].add(member["secret_id"])
            if _can_write(member["role"], inventory):
                how = writable_by[account].setdefault(member["secret_id"], set())
                how.add(f"{member['address']} ({member['role']})")
    for member in inventory.get("project_iam", []):
        account = member["service_account"]
        if account not in readable_by or not _touches_secrets(member["role"], inventory):
            continue
        if not member["condition"]:
            problems.append(
                f"{folder.name}: {member['address']} grants {member['role']} on every secret "
                "of the project (no condition on the secret name)"
            )
            continue
        try:
            matched = {s for s in existing if condition_matches_secret(member["condition"], s)}
        except ValueError as error:
            problems.append(f"{folder.name}: {member['address']}: {error}")
            continue
        any_role_by[account] |= matched
        if member["role"] == ACCESSOR:
            readable_by[account] |= matched
        if _can_write(member["role"], inventory):
            for secret in matched:
                how = writable_by[account].setdefault(secret, set())
                how.add(f"{member['address']} ({member['role']})")
    read_only = needed - written
    for account in sorted(accounts):
        for secret in sorted(read_only & set(writable_by[account])):
            problems.append(
                f"{folder.name}: service account {account} can change secret {secret!r}, which "
                f"the code only reads, through {', '.join(sorted(writable_by[account][secret]))}"
            )
        extra = any_role_by[account] - needed
        if extra:
            problems.append(
                f"{folder.name}: service account {account} has access to secrets the code "
                f"does not read: {sorted(extra)}"
            )
        if len(accounts) == 1:
            missing = needed - readable_by[account]
            if missing:
                problems.append(
                    f"{folder.name}: service account {account} cannot read {sorted(missing)} "
                    f"({ACCESSOR} missing)"
                )
    if len(accounts) > 1:
        missing = needed - set().union(*readable_by.values())
        if missing:
            problems.append(f"{folder.name}: no service account can read {sorted(missing)}")
    return problems


# Permissions that only reveal secret names and metadata, never data or changes.
METADATA_ONLY = frozenset({"secretmanager.secrets.list", "secretmanager.locations.list"})


def _touches_secrets(role: str | None, inventory: dict[str, Any]) -> bool:
    if not role:
        return False
    if role.startswith("roles/secretmanager."):
        return True
    permissions = inventory.get("custom_roles", {}).get(role) or []
    return any(p.startswith("secretmanager.") and p not in METADATA_ONLY for p in permissions)


# --------------------------------------------------------------------------- IAM conditions

# The part of IAM's condition language (CEL) that name conditions here use: resource.name
# with startsWith / endsWith / == / !=, combined with !, && and || and parentheses. Anything
# else is refused, so a condition this cannot read is a problem, never a silent pass.
_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>&&|\|\||==|!=|[!().])|(?P<word>[A-Za-z_]\w*))'
)


def _tokens(expression: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if match is None:
            raise ValueError(f"condition not understood at {expression[position:][:30]!r}")
        tokens.append(match.group(match.lastgroup or ""))
        position = match.end()
    return tokens


class _Condition:
    """Evaluates one condition for one resource name (recursive descent over the tokens)."""

    def __init__(self, expression: str, name: str) -> None:
        self.tokens = _tokens(expression)
        self.at = 0
        self.name = name

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"condition not understood: expected {expected or 'more'}")
        self.at += 1
        return token

    def _string(self) -> str:
        token = self._take()
        if not token.startswith('"'):
            raise ValueError(f"condition not understood: {token!r} is not a string")
        value: str = json.loads(token)
        return value

    def evaluate(self) -> bool:
        value = self._or()
        if self._peek() is not None:
            raise ValueError(f"condition not understood near {self._peek()!r}")
        return value

    def _or(self) -> bool:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value or right
        return value

    def _and(self) -> bool:
        value = self._not()
        while self._peek() == "&&":
            self._take()
            right = self._not()
            value = value and right
        return value

    def _not(self) -> bool:
        if self._peek() == "!":
            self._take()
            return not self._not()
        return self._primary()

    def _primary(self) -> bool:
        token = self._take()
        if token == "(":
            value = self._or()
            self._take(")")
            return value
        if token in ("true", "false"):
            return token == "true"
        if token != "resource":
            raise ValueError(f"condition not understood: {token!r} (only resource.name is read)")
        self._take(".")
        self._take("name")
        operator = self._take()
        if operator in ("==", "!="):
            return (self.name == self._string()) == (operator == "==")
        if operator != ".":
            raise ValueError(f"condition not understood: resource.name {operator}")
        function = self._take()
        if function not in ("startsWith", "endsWith"):
            raise ValueError(f"condition not understood: resource.name.{function}()")
        self._take("(")
        argument = self._string()
        self._take(")")
        if function == "startsWith":
            return self.name.startswith(argument)
        return self.name.endswith(argument)


def condition_matches(expression: str, name: str) -> bool:
    """Whether IAM condition ``expression`` grants the role on the resource named ``name``;
    ValueError when the expression uses more than this reads (see _TOKEN)."""
    return _Condition(expression, name).evaluate()


def condition_matches_secret(expression: str, secret_id: str) -> bool:
    """Whether the condition holds for the secret or for its versions: Secret Manager checks
    ``projects/<number>/secrets/<id>`` (values are read and versions added there) and
    ``.../secrets/<id>/versions/<n>`` (versions read, disabled, destroyed)."""
    projects = re.findall(r"projects/([^/\"]+)/secrets/", expression) or ["0"]
    secret = f"projects/{projects[0]}/secrets/{secret_id}"
    return condition_matches(expression, secret) or condition_matches(
        expression, f"{secret}/versions/1"
    )


def check_topics(inventory: dict[str, Any], folder: FunctionFolder) -> list[str]:
    """Every topic the code publishes to (settings named *_TOPIC) exists."""
    problems: list[str] = []
    topics = topic_names(inventory)
    for function in functions_of(inventory, folder):
        env = function["environment"] or {}
        for name, default in sorted(folder.topic_settings().items()):
            value = env.get(name, default) if name in env else default
            if name in env and value is None:
                problems.append(f"{folder.name}: {name} cannot be resolved statically")
            elif value and value not in topics:
                problems.append(f"{folder.name}: {name}={value!r} is not a topic")
    return problems


def check_service_accounts(inventory: dict[str, Any], folders: list[FunctionFolder]) -> list[str]:
    """Each function folder runs as its own service account, created in the module."""
    problems: list[str] = []
    known = {a["account_id"] for a in inventory["service_accounts"]}
    owner: dict[str, str] = {}
    for folder in folders:
        for function in functions_of(inventory, folder):
            account = function["service_account"]
            if account not in known:
                problems.append(f"{folder.name}: service account {account!r} is not created here")
            if account in owner and owner[account] != folder.name:
                problems.append(
                    f"{folder.name}: shares service account {account} with {owner[account]}"
                )
            owner.setdefault(account, folder.name)
    return problems


def check_scheduler(inventory: dict[str, Any]) -> list[str]:
    """Scheduler jobs publish to topics that exist, and some function listens there."""
    problems: list[str] = []
    topics = topic_names(inventory)
    triggers = {f["trigger_topic"] for f in inventory["functions"]}
    for job in inventory["scheduler_jobs"]:
        if job["http_uri"] is not None:
            continue
        if job["topic"] not in topics:
            problems.append(f"{job['address']}: publishes to {job['topic']!r}, not a topic")
        elif job["topic"] not in triggers:
            problems.append(f"{job['address']}: no function is triggered by {job['topic']!r}")
    return problems


def all_problems(inventory: dict[str, Any], folders: list[FunctionFolder]) -> list[str]:
    problems = check_scheduler(inventory) + check_service_accounts(inventory, folders)
    for folder in folders:
        for check in (check_deployed, check_environment, check_secrets, check_topics):
            problems += check(inventory, folder)
    return problems


# --------------------------------------------------------------------------- consumers

# The topics the functions publish for other apps (terraform/consumers.tf, var.consumers).
OUTPUT_TOPICS = frozenset({"graph-notifications", "universign-status-changes", "cegid-files"})
PUBSUB_AGENT = re.compile(r"^serviceAccount:service-\d+@gcp-sa-pubsub\.iam\.gserviceaccount\.com$")
DEAD_LETTER_METRIC = "pubsub.googleapis.com/subscription/dead_letter_message_count"


def pubsub_inventory(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Subscriptions and the Pub/Sub and service-account IAM members of an applied state, in
    the shape of tools/tf_inventory.py (short names for topics and subscriptions)."""
    found: dict[str, list[dict[str, Any]]] = {
        "subscriptions": [],
        "topic_iam": [],
        "subscription_iam": [],
        "service_account_iam": [],
        "functions": [],
        "run_invokers": [],
    }
    for _, resource in resources(state["values"]["root_module"]):
        if resource["mode"] != "managed":
            continue
        rtype, v = resource["type"], resource["values"]
        if rtype == "google_pubsub_subscription":
            push, dead, retry = (
                first(v.get("push_config")),
                first(v.get("dead_letter_policy")),
                first(v.get("retry_policy")),
            )
            oidc = first(push.get("oidc_token"))
            expiration = v.get("expiration_policy")
            found["subscriptions"].append(
                {
                    "address": resource["address"],
                    "name": v.get("name"),
                    "topic": short_name(v.get("topic"), "topics"),
                    "push_endpoint": push.get("push_endpoint"),
                    "oidc_service_account": oidc.get("service_account_email"),
                    "oidc_audience": oidc.get("audience"),
                    "dead_letter_topic": short_name(dead.get("dead_letter_topic"), "topics"),
                    "max_delivery_attempts": dead.get("max_delivery_attempts"),
                    "retry": (retry.get("minimum_backoff"), retry.get("maximum_backoff")),
                    "ack_deadline_seconds": v.get("ack_deadline_seconds"),
                    "retention": v.get("message_retention_duration"),
                    # None: no block, so Pub/Sub deletes the subscription after 31 idle days.
                    "ttl": first(expiration).get("ttl") if expiration else None,
                }
            )
        elif rtype == "google_pubsub_topic_iam_member":
            found["topic_iam"].append(
                {"topic": short_name(v.get("topic"), "topics"), "role": v.get("role"),
                 "member": v.get("member")}
            )  # fmt: skip
        elif rtype == "google_pubsub_subscription_iam_member":
            found["subscription_iam"].append(
                {"subscription": short_name(v.get("subscription"), "subscriptions"),
                 "role": v.get("role"), "member": v.get("member")}
            )  # fmt: skip
        elif rtype == "google_cloudfunctions2_function":
            found["functions"].append(
                {"name": v.get("name"), "uri": first(v.get("service_config")).get("uri")}
            )  # fmt: skip
        elif rtype == "google_cloud_run_service_iam_member":
            found["run_invokers"].append(
                {"service": str(v.get("service")).split("/")[-1], "role": v.get("role"),
                 "member": v.get("member")}
            )  # fmt: skip
        elif rtype == "google_service_account_iam_member":
            found["service_account_iam"].append(
                {"service_account": account_id(str(v.get("service_account_id")).split("/")[-1]),
                 "role": v.get("role"), "member": v.get("member")}
            )  # fmt: skip
    return found


def _agent_has(bindings: list[dict[str, Any]], key: str, name: str, role: str) -> bool:
    return any(
        b[key] == name and b["role"] == role and PUBSUB_AGENT.match(str(b["member"]))
        for b in bindings
    )


def check_consumers(inventory: dict[str, Any]) -> list[str]:
    """Every subscription reads a topic that exists. Every consumer of an output topic, and
    every subscription that pushes work to one of the functions, has a
    retry policy, never expires, and dead-letters to a topic that exists and that a
    subscription keeps; the Pub/Sub service agent may publish there and acknowledge on the
    consumer's subscription (else dead-lettering silently does not happen); a push consumer
    posts to HTTPS with an OIDC token, whose identity, when created here, the agent may sign
    for; an alert watches its dead-lettered messages."""
    problems: list[str] = []
    pubsub = inventory["pubsub"]
    topics = topic_names(inventory)
    accounts = {a["account_id"] for a in inventory["service_accounts"]}
    read_topics = {s["topic"] for s in pubsub["subscriptions"]}
    function_uris = {f["uri"] for f in pubsub["functions"] if f["uri"]}
    watched = " ".join(
        str(c.get("filter"))
        for policy in inventory["alert_policies"]
        for c in policy["conditions"]
        if DEAD_LETTER_METRIC in str(c.get("filter"))
    )
    for sub in pubsub["subscriptions"]:
        where = f"{sub['address']} ({sub['name']})"
        if sub["topic"] not in topics:
            problems.append(f"{where}: topic {sub['topic']!r} is not a topic")
        if sub["topic"] not in OUTPUT_TOPICS and sub["push_endpoint"] not in function_uris:
            continue
        if None in sub["retry"]:
            problems.append(f"{where}: no retry policy")
        if sub["ttl"] != "":
            problems.append(f"{where}: expires after 31 idle days (expiration_policy ttl unset)")
        dead = sub["dead_letter_topic"]
        if not dead or not sub["max_delivery_attempts"]:
            problems.append(f"{where}: no dead-letter policy")
        else:
            if dead not in topics:
                problems.append(f"{where}: dead-letter topic {dead!r} is not a topic")
            if dead not in read_topics:
                problems.append(f"{where}: no subscription keeps the dead letters of {dead!r}")
            if not _agent_has(pubsub["topic_iam"], "topic", dead, "roles/pubsub.publisher"):
                problems.append(f"{where}: the Pub/Sub service agent cannot publish to {dead!r}")
        if not _agent_has(
            pubsub["subscription_iam"], "subscription", sub["name"], "roles/pubsub.subscriber"
        ):
            problems.append(f"{where}: the Pub/Sub service agent cannot acknowledge on it")
        if sub["push_endpoint"] is not None:
            if not str(sub["push_endpoint"]).startswith("https://"):
                problems.append(f"{where}: pushes to {sub['push_endpoint']!r}, not HTTPS")
            identity = account_id(sub["oidc_service_account"])
            if not sub["oidc_service_account"] or not sub["oidc_audience"]:
                problems.append(f"{where}: pushes without an OIDC token and audience")
            elif (
                identity is not None
                and identity in accounts
                and not _agent_has(
                    pubsub["service_account_iam"],
                    "service_account",
                    identity,
                    "roles/iam.serviceAccountTokenCreator",
                )
            ):
                problems.append(f"{where}: the Pub/Sub service agent cannot sign as {identity}")
        if f'"{sub["name"]}"' not in watched:
            problems.append(f"{where}: no alert watches its dead-lettered messages")
    return problems
