# Install and check entry points. Every target installs what it needs and is idempotent;
# a fresh clone needs only python3 >= 3.11, node/npm, java and the Google Cloud SDK
# (with its pubsub-emulator component).
#
#   make test    lint, typecheck, terraform-check, pytest; stops at the first failure
#   make demo    the end-to-end demo against the local emulators
#   make stack   the emulators in the foreground (exports in .stack/env)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
FUNCTION_REQUIREMENTS := $(wildcard functions/*/requirements.txt)
TOOLS := .tools/terraform .tools/checkov .tools/hcl2

.PHONY: .venv node_modules $(TOOLS) tools lint typecheck terraform-check pytest test demo stack
.DELETE_ON_ERROR:

define check_python
$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	|| { echo "$(PYTHON) must be Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
endef

# ---------------------------------------------------------------------------- installs

.venv: .venv/.installed
.venv/.installed: requirements-dev.txt $(FUNCTION_REQUIREMENTS)
	@$(check_python)
	test -x .venv/bin/python || $(PYTHON) -m venv .venv
	.venv/bin/pip install --quiet -r requirements-dev.txt
	touch $@

node_modules: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# One venv per tool: checkov and python-hcl2 need different python-hcl2 versions.
tools: $(TOOLS)
.tools/terraform: .tools/terraform/.installed
.tools/checkov: .tools/checkov/.installed
.tools/hcl2: .tools/hcl2/.installed
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

terraform-check: .tools/terraform .tools/checkov
	.tools/terraform/bin/terraform fmt -check -recursive terraform
	.tools/checkov/bin/checkov -d terraform --framework terraform --compact --quiet --skip-download

pytest: .venv node_modules .tools/hcl2
	.venv/bin/pytest

test:
	$(MAKE) lint
	$(MAKE) typecheck
	$(MAKE) terraform-check
	$(MAKE) pytest

# ---------------------------------------------------------------------------- running

demo: .venv node_modules
	.venv/bin/python -m devtools.demo

stack: .venv node_modules
	.venv/bin/python -m devtools.stack up --env-file .stack/env
