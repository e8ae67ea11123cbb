"""Plan and apply a Terraform tree against the gate's stand-in providers; keep both as JSON.

    .tools/tfgate/bin/python tests/terraform/gate_apply.py TERRAFORM_DIR WORKSPACE

Uses the plan gate's own workspace (tools/tfstandin/gate.py: a copy of the tree, the stand-ins,
no caller settings) and runs ``init``, ``plan -out``, ``show -json`` of the plan, ``apply`` and
``show -json`` of the state, writing WORKSPACE/plan.json and WORKSPACE/state.json. After the
apply every computed value is filled by the stand-ins in its real shape (service account
emails, topic and secret ids), so tools/tf_inventory.py reads only values Terraform evaluated.
The gate's ``validate`` (implied by ``plan``) and re-plan are left to the gate's own tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.tfstandin.gate import GateError, gate_variables, prepare  # noqa: E402

PLAN = "inventory.tfplan"


def plan_and_apply(terraform_dir: Path, root: Path) -> None:
    workspace = prepare(root, terraform_dir.resolve())
    variables = gate_variables(workspace.terraform_dir)
    workspace.run("init", "init", "-input=false", "-no-color")
    workspace.run("plan", "plan", "-input=false", "-no-color", f"-out={PLAN}", *variables)
    _, plan, _ = workspace.run("show", "show", "-json", PLAN)
    (root / "plan.json").write_text(plan)
    workspace.run("apply", "apply", "-input=false", "-no-color", PLAN)
    _, state, _ = workspace.run("show", "show", "-json")
    (root / "state.json").write_text(state)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write(f"usage: {argv[0]} TERRAFORM_DIR WORKSPACE\n")
        return 2
    try:
        plan_and_apply(Path(argv[1]), Path(argv[2]))
    except GateError as err:
        sys.stderr.write(f"{err}\n\n{err.output}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
