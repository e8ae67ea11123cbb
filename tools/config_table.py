"""Print docs/configuration.md: every environment variable every function reads, its default
and its meaning, from the same ``ast`` scan the Terraform agreement test uses.

    .venv/bin/python tools/config_table.py > docs/configuration.md

tests/terraform/test_configuration_doc.py fails when the committed file is out of date.
Meanings come from MEANINGS below, else from a comment next to the read in the code, else
from the settings field the value lands in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.function_scan import PLATFORM_VARIABLES, EnvRead, function_folders

COMMON = {
    "GOOGLE_CLOUD_PROJECT": "Project of the secrets, topics and buckets (Terraform sets it).",
    "STATE_BUCKET": "Bucket for locks and state documents (Terraform creates and sets it).",
    "EVENT_MAX_AGE_MINUTES": "Pub/Sub events older than this are dropped with a warning "
    "(retry-storm guard); the next scheduled run takes over.",
    "LOCK_LEASE_SECONDS": "Lease of the per-credential lock; must outlast one run.",
    "LOCK_WAIT_SECONDS": "How long a run waits for another run's lock before retrying later.",
    "RUN_DEADLINE_SECONDS": "Run time budget; no new provider call starts after it.",
    "HTTP_TIMEOUT_SECONDS": "Timeout of each HTTP call to the provider.",
    "HTTP_ATTEMPTS": "Tries per provider call (timeouts, 5xx, 429) within one run.",
}

MEANINGS: dict[str, str] = {
    # Bitrix24
    "B24_OAUTH_URL": "Bitrix24 token endpoint (the client secret travels in its query string).",
    "B24_CLIENT_ID_SECRET": "Secret holding the Bitrix24 app's client id.",
    "B24_CLIENT_SECRET_SECRET": "Secret holding the Bitrix24 app's client secret.",
    "B24_REFRESH_TOKEN_SECRET": "Secret holding the single-use refresh token (rotated each run).",
    "B24_ACCESS_TOKEN_SECRET": "Secret consumers read; its annotations carry the status.",
    "B24_REFRESH_MARGIN_MINUTES": "Refresh when the access token expires within this many "
    "minutes; keep it above the schedule interval.",
    "B24_VERSIONS_TO_KEEP": "Versions kept per token secret; older ones are destroyed.",
    # HubSpot
    "HUBSPOT_TOKEN_URL": "HubSpot token endpoint (same form fields on v1, v3 and the "
    "date-versioned ones); a retiring one (v1, 2027-02-16) is a WARNING each run and a "
    "`cli status` row.",
    "HUBSPOT_CLIENT_ID_SECRET": "Secret holding the default HubSpot app's client id.",
    "HUBSPOT_CLIENT_SECRET_SECRET": "Secret holding the default HubSpot app's client secret.",
    "HUBSPOT_REFRESH_MARGIN_MINUTES": "Refresh an account's token when it expires within this "
    "many minutes.",
    "HUBSPOT_CONCURRENCY": "Accounts refreshed in parallel within one run.",
    "HUBSPOT_BACKOFF_MINUTES": "First wait after a transient failure of an account.",
    "HUBSPOT_BACKOFF_CAP_MINUTES": "Longest wait between attempts for a failing account.",
    "HUBSPOT_VERSIONS_TO_KEEP": "Versions kept per token secret; older ones are destroyed.",
    "HUBSPOT_SHARD_SIZE": "Accounts per work message when fanning out; 0 refreshes all in one run.",
    "HUBSPOT_WORK_TOPIC": "Topic the fan-out publishes shard messages to (needed with "
    "HUBSPOT_SHARD_SIZE > 0).",
    "HUBSPOT_HTTP_ATTEMPTS": "Tries per refresh within one run; later runs try again.",
    # Microsoft Graph
    "GRAPH_LOGIN_URL": "Entra ID login host for the client-credentials token.",
    "GRAPH_API_URL": "Microsoft Graph API host.",
    "GRAPH_NOTIFICATION_URL": "Public URL of graph_webhook_notify that subscriptions deliver "
    "to (reconciler only).",
    "GRAPH_SUBSCRIPTIONS": "JSON list of the subscriptions to keep (resource, changeType, ...).",
    "GRAPH_USER_ID": "Shorthand: keep one subscription to this user's messages.",
    "GRAPH_RENEW_WITHIN_HOURS": "Renew a subscription expiring within this many hours; at least "
    "the schedule interval.",
    "GRAPH_SUBSCRIPTION_MINUTES": "Lifetime requested on create and renew (Graph may shorten it).",
    "GRAPH_TENANT_ID_SECRET": "Secret holding the Entra ID tenant id.",
    "GRAPH_CLIENT_ID_SECRET": "Secret holding the app registration's client id.",
    "GRAPH_CLIENT_SECRET_SECRET": "Secret holding the app registration's client secret.",
    "GRAPH_CLIENT_STATE_SECRET": "Secret holding the clientState that authenticates notifications.",
    "GRAPH_NOTIFICATIONS_TOPIC": "Topic change notifications are published to for downstream apps.",
    "GRAPH_RENEW_TOPIC": "Topic lifecycle events are forwarded to (triggers the reconciler).",
    "GRAPH_NOTIFY_MAX_BYTES": "Largest notification body accepted.",
    "GRAPH_PUBLISH_TIMEOUT_SECONDS": "How long the webhook waits for Pub/Sub before answering.",
    # Cegid
    "CEGID_MODE": "`api` (get a SAS from the Cegid API) or `sas_url` (a SAS URL in a secret).",
    "CEGID_API_URL": "Cegid API host [unconfirmed].",
    "CEGID_TENANT_ID": "Cegid tenant id (api mode).",
    "CEGID_TOKEN_PATH": "Token path of the Cegid API.",
    "CEGID_SAS_PATH": "Path that hands out the storage SAS.",
    "CEGID_DISCOVERY_PATH": "Path used to discover the data-source provider [unconfirmed].",
    "CEGID_SCHEDULERS_PATH": "Path listing the scheduled queries.",
    "CEGID_SCHEDULER_UPDATE_PATH": "Path used to force a scheduled query.",
    "CEGID_PROVIDER_ID": "Data-source provider id; empty: list and force refuse and point to "
    "`python -m cli cegid discover`.",
    "CEGID_API_KEY_ID_SECRET": "Secret holding the Cegid API key id.",
    "CEGID_API_KEY_SECRET_SECRET": "Secret holding the Cegid API key secret.",
    "CEGID_SUBSCRIPTION_KEY_SECRET": "Secret holding the API Management subscription key.",
    "CEGID_SAS_URL_SECRET": "Secret holding the container SAS URL (sas_url mode).",
    "CEGID_BUCKET": "Cloud Storage bucket the exports are copied to.",
    "CEGID_PREFIX": "Object name prefix of copied exports.",
    "CEGID_STAGING_PREFIX": "Prefix of partial uploads before they are published.",
    "CEGID_UPLOAD_CHUNK_MIB": "Upload chunk size in MiB.",
    "CEGID_DOWNLOAD_CHUNK_MIB": "Download chunk size in MiB.",
    "CEGID_QUEUE_DEPTH": "Chunks buffered between download and upload.",
    "CEGID_STORAGE_TIMEOUT_SECONDS": "Timeout of each storage call.",
    "CEGID_PLAN_MIB_PER_SECOND": "Throughput assumed when deciding whether a file still fits in "
    "this run.",
    "CEGID_FORCE_TIME": "Time of day (HH:MM UTC) forced query runs are scheduled at "
    "(unset: now + 15 minutes).",
    # Universign
    "UNIVERSIGN_API_URL": "Universign API host.",
    "UNIVERSIGN_SIGNATURE_HEADER": "Comma-separated header names that may carry the webhook "
    "signature [unconfirmed].",
    "UNIVERSIGN_REFUSAL_STATES": "Universign states treated as a refusal.",
    "UNIVERSIGN_EXTERNAL_STATUS_MAP": "JSON object from our statuses (EN_ATTENTE ... ANNULE) to "
    "the app's codes, sent as external_status in every status-change event; empty for none.",
    "ARCHIVE_BUCKET": "Bucket signed documents are archived to.",
    "UNIVERSIGN_JWKS_URL": "Key set used to verify webhook signatures.",
    "UNIVERSIGN_API_KEY_SECRET": "Secret holding the Universign API key.",
    "UNIVERSIGN_WEBHOOK_TOKEN_SECRET": "Secret holding a shared token the webhook URL must carry "
    "(unset: signature only).",
    "UNIVERSIGN_STATUS_TOPIC": "Topic status changes are published to.",
    "UNIVERSIGN_POLL_BATCH": "Transactions synced per poll run.",
    "UNIVERSIGN_FINAL_RECHECK_MINUTES": "One more check this long after a transaction became "
    "final.",
    "UNIVERSIGN_WEBHOOK_MAX_BYTES": "Largest webhook body accepted.",
    "UNIVERSIGN_JWKS_TTL_SECONDS": "How long the key set is cached.",
    "UNIVERSIGN_JWKS_MIN_REFETCH_SECONDS": "Least time between two key set fetches for the "
    "same unknown key id, and between retries of an expired key set.",
    "UNIVERSIGN_HISTORY_SIZE": "Status observations kept per transaction document.",
    "UNIVERSIGN_EVENT_LEASE_SECONDS": "How long a webhook event claim is held.",
    "UNIVERSIGN_OUTBOX_RETRY_SECONDS": "Wait before re-sending an undelivered status message.",
    "WEBHOOK_DEADLINE_SECONDS": "Time budget of one webhook request.",
    "FUNCTION_TARGET": "Set by the platform: the entry point being served.",
}


def meaning(read: EnvRead) -> str:
    if read.name in MEANINGS:
        return MEANINGS[read.name]
    if read.name in COMMON:
        return COMMON[read.name]
    if read.comment:
        return read.comment
    return f"Settings field `{read.setting}`." if read.setting else ""


def default_text(reads: list[EnvRead]) -> str:
    if any(r.required for r in reads):
        return "**required**"
    values = {_show(r.default) for r in reads}
    return " / ".join(sorted(values))


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, str) and value == "":
        return '`""`'
    text = str(value).replace("|", "\\|")
    return f"`{text}`"


def render() -> str:
    folders = function_folders()
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `python tools/config_table.py > docs/configuration.md`; do not edit."
        " -->",
        "",
        "Every environment variable each function reads, found in the code itself (the same",
        "scan the Terraform agreement test uses). Terraform sets the required ones and the ones",
        "it exposes as variables (see `terraform/variables*.tf`); the rest keep their defaults.",
        "A missing or malformed value stops the function at start-up with an error naming it.",
        "",
        "Variables every function shares:",
        "",
        "| Variable | Meaning |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {text} |" for name, text in COMMON.items()]
    for folder in folders:
        entry_points = ", ".join(
            f"`{name}` ({kind.replace('_', ' ')})"
            for name, kind in sorted(folder.entry_points.items())
        )
        lines += [
            "",
            f"## {folder.name}",
            "",
            f"Entry points: {entry_points}.",
            "",
            "| Variable | Kind | Default | Meaning |",
            "|---|---|---|---|",
        ]
        for name, reads in sorted(folder.variables().items()):
            if name in PLATFORM_VARIABLES:
                continue
            text = meaning(reads[0]).replace("|", "\\|")
            lines.append(f"| `{name}` | {reads[0].kind} | {default_text(reads)} | {text} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
