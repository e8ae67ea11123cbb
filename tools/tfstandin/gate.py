"""The offline plan gate: Terraform itself checks terraform/ against the real providers' schemas.

    .tools/tfgate/bin/python -m tools.tfstandin.gate [--terraform-dir terraform] [--keep DIR]

For each scenario, on a fresh state in a copy of the tree: ``init``, ``validate``, ``plan``,
``show -json`` of the plan (kept in the workspace as <scenario>.plan.json), ``apply``, and a
second ``plan`` that must show no changes. The providers are local stand-ins (server.py) that
serve the schemas in tools/tfstandin/schemas/ and plan as the real ones do, so core reports
what it would against Google: unknown or missing arguments, wrong types, blocks written as
attributes, count/for_each on values known only after apply. No credentials, no registry.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = REPO_ROOT / "tools" / "tfstandin" / "schemas"
MIN_TERRAFORM = (1, 5)
# The function module packs ../functions and ../shared, relative to terraform/.
SIBLINGS = ("functions", "shared")
# Not configuration: local state, caches and builds, a lock file pinning the real providers'
# checksums (the stand-ins have others), and tfvars files Terraform would load on its own.
COPY_IGNORE = shutil.ignore_patterns(
    ".terraform",
    ".terraform.lock.hcl",
    ".build",
    "*.tfstate",
    "*.tfstate.*",
    "*.tfplan",
    "*.tfvars",
    "*.tfvars.json",
    "__pycache__",
    ".venv",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)
# Values for the root module's variables that have no default (see gate_variables).
ROOT_VARIABLES = {"project_id": "gate-project"}
COMMAND_TIMEOUT = 300


@dataclass(frozen=True)
class Scenario:
    name: str
    args: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


# Consumers of the output topics (terraform/consumers.tf), one of each kind: push with the
# identity created there, push with the consumer's own identity and audience, pull.
CONSUMERS = (
    "consumers={"
    '"graph-notifications" = [{ name = "nova-graph", '
    'push_endpoint = "https://nova.example.com/graph" }], '
    '"cegid-files" = [{ name = "odoo-cegid", push_endpoint = "https://odoo.example.com/cegid", '
    'oidc_audience = "odoo-cegid", '
    'oidc_service_account_email = "odoo@other.iam.gserviceaccount.com", '
    'max_delivery_attempts = 5, minimum_backoff = "30s" }], '
    '"universign-status-changes" = [{ name = "sage-universign" }]'
    "}"
)

SCENARIOS = (
    Scenario("all integrations"),
    Scenario("bitrix24 only", ("-var", 'integrations=["bitrix24"]')),
    Scenario(
        "consumers",
        ("-var", 'integrations=["graph", "cegid", "universign"]', "-var", CONSUMERS),
    ),
)


class GateError(Exception):
    """A step failed; ``output`` is Terraform's own (stdout and stderr)."""

    def __init__(self, step: str, message: str, output: str = "") -> None:
        super().__init__(f"{step}: {message}")
        self.output = output


@dataclass(frozen=True)
class Workspace:
    """A copy of the tree with the stand-in providers installed, where Terraform runs."""

    root: Path
    terraform: str
    env: dict[str, str]

    @property
    def terraform_dir(self) -> Path:
        return self.root / "terraform"

    def run(self, step: str, *args: str, ok_codes: Sequence[int] = (0,)) -> tuple[int, str, float]:
        """``terraform args`` in the copy: (exit code, output, seconds), or GateError."""
        start = time.monotonic()
        # In its own session, so that on a timeout or ^C its provider processes go with it.
        with subprocess.Popen(
            [self.terraform, *args],
            cwd=self.terraform_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                output, _ = process.communicate(timeout=COMMAND_TIMEOUT)
            except BaseException:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        if process.returncode not in ok_codes:
            raise GateError(step, f"terraform {args[0]} exited {process.returncode}", output)
        return process.returncode, output, time.monotonic() - start


# --------------------------------------------------------------------------- setup


def find_terraform() -> tuple[str, str, str]:
    """(path, version, platform) of the terraform on PATH; GateError unless >= 1.5."""
    path = shutil.which("terraform")
    if path is None:
        raise GateError("terraform", "terraform not found on PATH: install Terraform >= 1.5")
    result = subprocess.run(
        [path, "version", "-json"], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise GateError("terraform", f"`{path} version -json` failed", result.stderr)
    info = json.loads(result.stdout)
    version = str(info["terraform_version"])
    if tuple(int(p) for p in version.split("-")[0].split(".")[:2]) < MIN_TERRAFORM:
        raise GateError("terraform", f"terraform {version} at {path} is older than 1.5")
    return path, version, str(info["platform"])


def gate_variables(terraform_dir: Path) -> list[str]:
    """``-var`` arguments for the root module's variables without a default. The files are
    `terraform fmt`-ed (make test checks it), so a block ends at the first "}" in column 0."""
    args: list[str] = []
    for tf in sorted(terraform_dir.glob("*.tf")):
        for match in re.finditer(r'^variable "([^"]+)" \{\n(.*?)^\}', tf.read_text(), re.S | re.M):
            name, body = match.groups()
            if re.search(r"^\s*default\s*=", body, re.M):
                continue
            if name not in ROOT_VARIABLES:
                raise GateError(
                    "variables",
                    f"variable {name!r} ({tf.name}) has no default and the gate no value for it:"
                    " add one to ROOT_VARIABLES in tools/tfstandin/gate.py",
                )
            args += ["-var", f"{name}={ROOT_VARIABLES[name]}"]
    return args


def install_standins(mirror: Path, schemas_dir: Path, platform: str) -> list[str]:
    """A filesystem mirror (unpacked layout) whose provider "binaries" are launchers of
    server.py, one per schema file; returns "name version" of each."""
    python = Path(sys.executable).absolute()  # not resolved: the venv is in this path
    installed: list[str] = []
    for schema in sorted(schemas_dir.glob("*.json")):
        spec = json.loads(schema.read_text())
        namespace, name = str(spec["source"]).split("/")
        version = str(spec["version"])
        target = mirror / "registry.terraform.io" / namespace / name / version / platform
        target.mkdir(parents=True)
        launcher = target / f"terraform-provider-{name}_v{version}"
        # -P: the repository on sys.path, not the working directory (Terraform's).
        launcher.write_text(
            "#!/bin/sh\n"
            f"# Stand-in for {spec['source']} {version}, written by tools/tfstandin/gate.py.\n"
            f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}\n"
            f"exec {shlex.quote(str(python))} -P -m tools.tfstandin.server"
            f" --schema {shlex.quote(str(schema.resolve()))}\n"
        )
        launcher.chmod(0o755)
        installed.append(f"{name} {version}")
    if not installed:
        raise GateError("providers", f"no schema files in {schemas_dir}")
    return installed


def prepare(
    root: Path, terraform_dir: Path = REPO_ROOT / "terraform", schemas_dir: Path = SCHEMAS_DIR
) -> Workspace:
    """Copy the tree into ``root`` (empty or missing) and install the stand-ins there."""
    if importlib.util.find_spec("tf") is None:
        raise GateError("providers", f"{sys.executable} lacks `tf`: run `make .tools/tfgate`")
    terraform, version, platform = find_terraform()
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise GateError("workspace", f"{root} is not empty")
    shutil.copytree(terraform_dir, root / "terraform", ignore=COPY_IGNORE)
    for sibling in SIBLINGS:
        if (terraform_dir.parent / sibling).is_dir():
            shutil.copytree(terraform_dir.parent / sibling, root / sibling, ignore=COPY_IGNORE)
    providers = install_standins(root / "mirror", schemas_dir, platform)
    cli_config = root / "terraformrc"
    # Only the mirror: a provider without a stand-in fails `init` instead of being downloaded.
    cli_config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(root / 'mirror'))}\n"
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n"
    )
    # Nothing of the caller's Terraform setup (variables, CLI args, data dir, plugin cache)
    # may change what is checked; the logging settings stay, for debugging.
    logging = ("TF_LOG", "TF_LOG_PATH", "TF_LOG_CORE", "TF_LOG_PROVIDER")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_") or k in logging}
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        # The stand-ins' TLS certificate, made by the first one started (see server.py).
        TFSTANDIN_TLS_FILE=str(root / "standin-tls.pem"),
    )
    print(f"terraform {version} ({platform}); stand-ins: {', '.join(providers)}", flush=True)
    return Workspace(root, terraform, env)


# --------------------------------------------------------------------------- steps


def _say(scenario: Scenario, step: str, seconds: float, note: str = "") -> None:
    print(
        f"[{scenario.name}] {step:<8} {seconds:5.1f}s" + (f"  {note}" if note else ""), flush=True
    )


def run_scenario(workspace: Workspace, scenario: Scenario, plan_only: bool = False) -> None:
    """The gate for one scenario, on a fresh state (``plan_only``: up to the plan's JSON);
    GateError at the first failing step."""
    for path in workspace.terraform_dir.glob("terraform.tfstate*"):
        path.unlink()
    shutil.rmtree(workspace.terraform_dir / ".build", ignore_errors=True)
    variables = [*gate_variables(workspace.terraform_dir), *scenario.args]
    plan = workspace.terraform_dir / f"{scenario.slug}.tfplan"

    *_, seconds = workspace.run("init", "init", "-input=false", "-no-color")
    _say(scenario, "init", seconds)
    *_, seconds = workspace.run("validate", "validate", "-no-color")
    _say(scenario, "validate", seconds)
    *_, seconds = workspace.run(
        "plan", "plan", "-input=false", "-no-color", f"-out={plan}", *variables
    )
    _, shown, show_seconds = workspace.run("show", "show", "-json", str(plan))
    changes = json.loads(shown).get("resource_changes", [])
    _say(
        scenario,
        "plan",
        seconds,
        f"{sum('create' in c['change']['actions'] for c in changes)} to add",
    )
    saved = workspace.root / f"{scenario.slug}.plan.json"
    saved.write_text(shown)
    _say(scenario, "show", show_seconds, str(saved))
    if plan_only:
        return

    *_, seconds = workspace.run("apply", "apply", "-input=false", "-no-color", str(plan))
    _say(scenario, "apply", seconds)
    code, output, seconds = workspace.run(
        "re-plan",
        "plan",
        "-input=false",
        "-no-color",
        "-detailed-exitcode",
        *variables,
        ok_codes=(0, 2),
    )
    if code == 2:
        raise GateError("re-plan", "the plan after apply is not empty", output)
    _say(scenario, "re-plan", seconds, "no changes")


def main(argv: list[str] | None = None) -> int:
    slugs = {s.slug: s for s in SCENARIOS}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terraform-dir", type=Path, default=REPO_ROOT / "terraform")
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it")
    parser.add_argument("--scenario", choices=slugs, action="append", help="default: all")
    parser.add_argument("--plan-only", action="store_true", help="stop after the first plan")
    parser.add_argument("--schemas", type=Path, default=SCHEMAS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    scenarios = [slugs[s] for s in args.scenario] if args.scenario else list(SCENARIOS)
    start = time.monotonic()
    root = args.keep or Path(tempfile.mkdtemp(prefix="tfgate-"))
    where = "setup"
    try:
        workspace = prepare(root, args.terraform_dir.resolve(), args.schemas.resolve())
        for scenario in scenarios:
            where = f"[{scenario.name}]"
            run_scenario(workspace, scenario, args.plan_only)
    except GateError as err:
        sys.stderr.write(f"plan gate FAILED {where} at {err}\n\n{err.output}")
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"plan gate passed: {len(scenarios)} scenario(s) in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
