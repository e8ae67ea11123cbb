# Install and check entry points. Every target installs what it needs and is idempotent;
# a fresh clone needs only python3 >= 3.11, node/npm, java, terraform >= 1.5 and the Google
# Cloud SDK (with its pubsub-emulator component).
#
#   make test    lint, typecheck, terraform-check, pytest; stops at the first failure
#   make plan-gate  terraform init/validate/plan/apply/re-plan against local stand-in providers
#   make demo    the main job end to end on the local emulators (INTEGRATION=hubspot: one only)
#   make stack   the emulators in the foreground (exports in .stack/env)
#   make mutation  mutation testing of the safety-critical modules (slow: not part of make test)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
FUNCTION_REQUIREMENTS := $(wildcard functions/*/requirements.txt)
TOOLS := .tools/checkov .tools/tfgate

.PHONY: .venv .venvs node_modules $(TOOLS) tools lint typecheck terraform-check plan-gate pytest test demo stack mutation
.DELETE_ON_ERROR:

define check_python
$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	|| { echo "$(PYTHON) must be Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
endef

# Terraform is not installed by this Makefile (no registry for it here): the one on PATH must be
# >= 1.5, and every check that needs it fails, never skips, without it.
define check_terraform
terraform version -json >/dev/null 2>&1 || { echo "terraform not found on PATH: install Terraform >= 1.5" >&2; exit 1; }; \
terraform version -json | $(PYTHON) -c 'import json, sys; v = json.load(sys.stdin)["terraform_version"]; sys.exit(tuple(map(int, v.split("-")[0].split(".")[:2])) < (1, 5) and f"terraform {v} on PATH is older than 1.5")'
endef

# ---------------------------------------------------------------------------- installs

.venv: .venv/.installed
.venv/.installed: requirements-dev.txt $(FUNCTION_REQUIREMENTS)
	@$(check_python)
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install --quiet -r requirements-dev.txt
	touch $@

# Each function's own venv from its requirements.txt alone, as Cloud Build installs it
# (devtools/shipenv.py); only a venv whose requirements changed is rebuilt (stamp file).
# Built before pytest so the builds run outside test time-outs.
.venvs: .venv
	.venv/bin/python -m devtools.shipenv build

node_modules: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# One venv per tool: checkov pins its own dependencies; the plan gate needs protobuf < 6.
tools: $(TOOLS)
.tools/tfgate: .tools/tfgate/.installed
.tools/checkov: .tools/checkov/.installed
.tools/%/.installed: tools/requirements-%.txt
	@$(check_python)
	test -x .tools/$*/bin/python || $(PYTHON) -m venv .tools/$*
	.tools/$*/bin/pip install --quiet -r $<
	touch $@

# ---------------------------------------------------------------------------- checks

lint: .venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Each function folder has its own main.py (and siblings it imports by bare name), so they are
# checked one folder at a time, with that folder on MYPYPATH. The files are named explicitly:
# pyproject's `exclude = ["^functions/"]` would make `mypy functions/x/` find none.
typecheck: .venv
	.venv/bin/mypy
	for d in functions/*/; do \
		if ! compgen -G "$${d}*.py" >/dev/null; then echo "typecheck: $$d has no .py files, skipped"; continue; fi; \
		echo "mypy $$d"; \
		MYPYPATH="$$d" .venv/bin/mypy "$$d"*.py; \
	done

terraform-check: .tools/checkov
	@$(check_terraform)
	terraform fmt -check -recursive terraform
	.tools/checkov/bin/checkov -d terraform --framework terraform --compact --quiet --skip-download

# The offline plan gate on its own (pytest runs it too, with its mutations).
plan-gate: .tools/tfgate
	@$(check_terraform)
	.tools/tfgate/bin/python -m tools.tfstandin.gate

pytest: .venv .venvs node_modules .tools/tfgate
	@$(check_terraform)
	.venv/bin/pytest

test:
	$(MAKE) lint
	$(MAKE) typecheck
	$(MAKE) terraform-check
	$(MAKE) pytest

# ---------------------------------------------------------------------------- running

# Every integration's story (devtools/demo_<integration>.py); INTEGRATION=bitrix24, hubspot,
# graph, cegid or universign runs that one only.
INTEGRATION ?=
demo: .venv .venvs node_modules
	.venv/bin/python -m devtools.demo $(if $(INTEGRATION),--integration $(INTEGRATION))

stack: .venv node_modules
	.venv/bin/python -m devtools.stack up --env-file .stack/env

# ---------------------------------------------------------------------------- mutation testing

# mutmut over the modules and tests pyproject's [tool.mutmut] names, each mutant against the
# tests that reach it; then the per-module table in benchmarks/report/mutation-latest.md/.json.
# mutants/ is mutmut's work copy: removed first, so every run starts from the current code.
MUTATION_CHILDREN ?= 2
mutation: .venv
	rm -rf mutants
	.venv/bin/mutmut run --max-children $(MUTATION_CHILDREN) >mutants.log 2>&1 || { tail -40 mutants.log; exit 1; }
	.venv/bin/python -m tools.mutation_report
