#!/usr/bin/env bash
# Deploy the integrations with one command, and again whenever something changed.
#
#   ./deploy.sh [--project PROJECT] [--region REGION] [--yes] [--skip-jobs]
#
# Steps: check prerequisites; terraform init / plan / apply (Terraform also enables the APIs);
# ask for the value of every secret that has no version yet (hidden input; or a file named by
# SECRET_FILE_<SECRET_ID> with the id upper-cased and dashes as underscores, e.g.
# SECRET_FILE_B24_REFRESH_TOKEN=./refresh.txt); run every Cloud Scheduler job once; print the
# status of every credential and subscription. Which integrations: `integrations` in
# terraform/terraform.tfvars (default: all five).
#
# Safe to run again: apply changes only what differs, secrets that have a version are not
# asked for, and a job run only makes the functions check (they act when something is due).
#
# Project and region come from the arguments, else PROJECT_ID (or GOOGLE_CLOUD_PROJECT) and
# REGION, else terraform/terraform.tfvars. ALERT_EMAIL, when set, is passed as alert_email.
# Secret values are never printed, logged or passed as command arguments.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TF_DIR="${TF_DIR:-$ROOT/terraform}"
TERRAFORM="${TERRAFORM:-terraform}"
GCLOUD="${GCLOUD:-gcloud}"
STATUS_WAIT_SECONDS="${STATUS_WAIT_SECONDS:-30}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

project="${PROJECT_ID:-${GOOGLE_CLOUD_PROJECT:-}}"
region="${REGION:-}"
assume_yes=false
run_jobs=true
while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) project="${2:?--project needs a value}"; shift 2 ;;
    --project=*) project="${1#*=}"; shift ;;
    --region) region="${2:?--region needs a value}"; shift 2 ;;
    --region=*) region="${1#*=}"; shift ;;
    --yes | -y) assume_yes=true; shift ;;
    --skip-jobs) run_jobs=false; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# A value from terraform.tfvars (simple `name = "value"` lines only).
tfvars_value() {
  local file="$TF_DIR/terraform.tfvars"
  [[ -f "$file" ]] || return 0
  sed -n -E "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/p" "$file" | tail -n 1
}
[[ -n "$project" ]] || project="$(tfvars_value project_id)"
[[ -n "$region" ]] || region="$(tfvars_value region)"

# ------------------------------------------------------------------ 1. prerequisites
say "Checking prerequisites"
missing=()
if ! command -v "$GCLOUD" >/dev/null 2>&1; then
  missing+=("the Google Cloud SDK (gcloud) on PATH: https://cloud.google.com/sdk/docs/install")
elif [[ -z "$("$GCLOUD" auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null)" ]]; then
  missing+=("a gcloud login: run 'gcloud auth login' and 'gcloud auth application-default login'")
elif ! "$GCLOUD" auth application-default print-access-token >/dev/null 2>&1; then
  missing+=("application default credentials for Terraform: run 'gcloud auth application-default login'")
fi
command -v "$TERRAFORM" >/dev/null 2>&1 ||
  missing+=("terraform on PATH (>= 1.5), or TERRAFORM=/path/to/terraform")
command -v "$PYTHON" >/dev/null 2>&1 || missing+=("python3 (for the status report)")
[[ -n "$project" ]] ||
  missing+=("a project: --project P, PROJECT_ID=P, or project_id in terraform/terraform.tfvars")
[[ -n "$region" ]] ||
  missing+=("a region: --region R, REGION=R, or region in terraform/terraform.tfvars")
if [[ ${#missing[@]} -gt 0 ]]; then
  printf 'Missing:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
say "Project $project, region $region"

# ------------------------------------------------------------------ 2. terraform
# The configuration enables the Google APIs it needs itself (terraform/apis.tf).
tf() { "$TERRAFORM" -chdir="$TF_DIR" "$@"; }
tf_vars=(-var "project_id=$project" -var "region=$region")
[[ -z "${ALERT_EMAIL:-}" ]] || tf_vars+=(-var "alert_email=$ALERT_EMAIL")

say "terraform init"
tf init -input=false
say "terraform plan"
tf plan -input=false -out=deploy.tfplan "${tf_vars[@]}"
if [[ "$assume_yes" != true ]]; then
  [[ -t 0 ]] || die "stdin is not a terminal: review the plan and run again with --yes"
  read -r -p "Apply this plan? [y/N] " answer
  [[ "$answer" == [yY]* ]] || die "not applied"
fi
say "terraform apply"
tf apply -input=false deploy.tfplan
rm -f "$TF_DIR/deploy.tfplan"

outputs="$(tf output -json)"
# Values of a list output, one per line (nothing when the output does not exist).
output_list() {
  OUTPUTS="$outputs" "$PYTHON" -c '
import json, os, sys
value = json.loads(os.environ["OUTPUTS"]).get(sys.argv[1], {}).get("value") or []
print("\n".join(str(v) for v in value))
' "$1"
}

# ------------------------------------------------------------------ 3. secret values
has_version() {
  [[ -n "$("$GCLOUD" secrets versions list "$1" --project "$project" \
    --filter='state=ENABLED' --limit=1 --format='value(name)' </dev/null 2>/dev/null)" ]]
}

add_version_from_stdin() {
  "$GCLOUD" secrets versions add "$1" --project "$project" --data-file=- >/dev/null
}

say "Secrets"
skipped=()
# The list comes in on fd 3 so the prompts read the terminal (or whatever stdin is).
while IFS= read -r secret <&3; do
  [[ -n "$secret" ]] || continue
  if has_version "$secret"; then
    printf '    %-40s has a version\n' "$secret"
    continue
  fi
  file_var="SECRET_FILE_$(printf '%s' "$secret" | tr '[:lower:]-' '[:upper:]_')"
  file="${!file_var:-}"
  if [[ -n "$file" ]]; then
    [[ -r "$file" ]] || die "$file_var points at $file, which cannot be read"
    add_version_from_stdin "$secret" <"$file"
    printf '    %-40s added from $%s\n' "$secret" "$file_var"
    continue
  fi
  printf 'Value for secret %s (input hidden; empty to skip): ' "$secret" >&2
  value=""
  IFS= read -rs value || true
  printf '\n' >&2
  if [[ -z "$value" ]]; then
    skipped+=("$secret")
    unset value
    continue
  fi
  printf '%s' "$value" | add_version_from_stdin "$secret"
  unset value
  printf '    %-40s added\n' "$secret"
done 3< <(output_list secrets_to_provide)
if [[ ${#skipped[@]} -gt 0 ]]; then
  warn "no value yet for: ${skipped[*]}"
  warn "add later: gcloud secrets versions add <id> --project $project --data-file=<file>"
fi

# ------------------------------------------------------------------ 4. run the jobs once
if [[ "$run_jobs" == true ]]; then
  say "Running every scheduled job once"
  while IFS= read -r job <&3; do
    [[ -n "$job" ]] || continue
    if "$GCLOUD" scheduler jobs run "$job" --location "$region" --project "$project" </dev/null; then
      printf '    %s triggered\n' "$job"
    else
      warn "could not trigger $job"
    fi
  done 3< <(output_list scheduler_jobs)
  if [[ "$STATUS_WAIT_SECONDS" -gt 0 ]]; then
    say "Waiting ${STATUS_WAIT_SECONDS}s for the runs to finish"
    sleep "$STATUS_WAIT_SECONDS"
  fi
fi

# ------------------------------------------------------------------ 5. status
say "Status"
status=0
(cd "$ROOT" && "$PYTHON" -m cli status --project "$project") || status=$?
if [[ $status -ne 0 ]]; then
  warn "some items need attention (see above and docs/runbooks/); the deploy itself succeeded"
fi
say "Done"
