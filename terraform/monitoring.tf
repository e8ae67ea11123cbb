# Log-based metrics read the structured lines every function writes (one JSON object per line,
# fields in jsonPayload):
#   event="run_summary"      once per scheduled run: provider, result, counters, duration_seconds,
#                            secret_reads;
#   event="webhook_request"  once per webhook request: provider, http_status, result;
#   event="sync_message"     once per work message universign_sync handles: result, retry;
#   event="needs_reauth"     when a person must act.
# Alert policies watch those metrics, one condition per rule across the integrations (each
# condition is billed monthly), and name their runbooks in docs/runbooks/. docs/operations.md
# says how each alert behaves, including on a brand-new deployment.

locals {
  integrations = {
    bitrix24 = {
      title   = "Bitrix24"
      runbook = "docs/runbooks/reauthorise-bitrix24.md"
      # The results a run reports when it ended well; anything else is not a success.
      ok_results = ["refreshed", "skipped"]
      # Which run summaries are the scheduled job's (Cegid's forced queries are not).
      scope = ""
    }
    hubspot = {
      title      = "HubSpot"
      runbook    = "docs/runbooks/reauthorise-hubspot.md"
      ok_results = ["completed"]
      scope      = ""
    }
    graph = {
      title      = "Microsoft Graph"
      runbook    = "docs/runbooks/graph-subscription-lost.md"
      ok_results = ["ok"]
      scope      = ""
    }
    cegid = {
      title      = "Cegid"
      runbook    = "docs/runbooks/cegid-sas-expired.md"
      ok_results = ["done"]
      scope      = " AND jsonPayload.entry_point=\"cegid_transfer\""
    }
    universign = {
      title      = "Universign"
      runbook    = "docs/runbooks/universign-signature-failures.md"
      ok_results = ["ok"]
      scope      = " AND jsonPayload.entry_point=\"universign_poll\""
    }
  }

  # Neither a success nor a failure: another run held the lock and does the work, or a HubSpot
  # fan-out sent shards that report how it went.
  neutral_results = ["busy", "lock_busy", "dispatched"]

  # Alerts exist only for the integrations deployed.
  monitored = { for name, integration in local.integrations : name => integration if local.deploy[name] }

  runbook_prefix = var.runbook_base_url == "" ? "" : "${trimsuffix(var.runbook_base_url, "/")}/"
  runbook_index  = "${local.runbook_prefix}docs/runbooks/README.md"
  alert_channels = [for c in google_monitoring_notification_channel.email : c.id]

  # Functions log as Cloud Run revisions (gen2); the older type is kept for completeness.
  log_resource = "resource.type=(\"cloud_run_revision\" OR \"cloud_function\")"

  # Logging's query language binds OR tighter than AND: every group below is parenthesised.
  job_run = join(" AND ", [
    local.log_resource,
    "jsonPayload.event=\"run_summary\"",
    "(${join(" OR ", [for name, i in local.integrations : "(jsonPayload.provider=\"${name}\"${i.scope})"])})",
  ])
  ok_result = join(" OR ", [
    for name, i in local.integrations :
    "(jsonPayload.provider=\"${name}\" AND jsonPayload.result=(${join(" OR ", [for r in i.ok_results : "\"${r}\""])}))"
  ])
  # A success is a listed result, below ERROR, with no failed item in its counters.
  succeeded = "((${local.ok_result}) AND severity<ERROR AND NOT jsonPayload.failed>0)"
  neutral   = "jsonPayload.result=(${join(" OR ", [for r in local.neutral_results : "\"${r}\""])})"

  run_filter        = local.job_run
  run_ok_filter     = "${local.job_run} AND ${local.succeeded}"
  run_failed_filter = "${local.job_run} AND NOT ${local.succeeded} AND NOT ${local.neutral}"

  # Every deployed function with its time limit, by Cloud Run service name (a function's name).
  functions = concat(
    module.b24_token_refresh, module.hubspot_refresh, module.graph_webhook_notify,
    module.graph_webhook_renew, module.cegid_transfer, module.cegid_queries,
    module.universign_webhook, module.universign_poll, module.universign_sync,
  )
  slow_run = join(" OR ", [
    for f in local.functions :
    "(resource.labels.service_name=\"${f.function_name}\" AND jsonPayload.duration_seconds>${floor(f.timeout_seconds * var.monitoring_slow_run_fraction)})"
  ])
  many_secret_reads = join(" OR ", [
    for name, limit in var.monitoring_secret_reads_max :
    name == "hubspot"
    ? "(jsonPayload.provider=\"hubspot\" AND jsonPayload.secret_reads_per_account>${limit})"
    : "(jsonPayload.provider=\"${name}\" AND jsonPayload.secret_reads>${limit})"
  ])
  over_budget_filter = join(" AND ", [
    local.log_resource,
    "jsonPayload.event=(\"run_summary\" OR \"webhook_request\")",
    "(${join(" OR ", compact([local.slow_run, local.many_secret_reads]))})",
  ])

  # The functions Pub/Sub invokes; their request logs and request counts are Cloud Run's own.
  scheduled_functions = concat(
    module.b24_token_refresh[*].function_name, module.hubspot_refresh[*].function_name,
    module.graph_webhook_renew[*].function_name, module.cegid_transfer[*].function_name,
    module.cegid_queries[*].function_name, module.universign_poll[*].function_name,
    module.universign_sync[*].function_name,
  )

  user_metric = "metric.type=\"logging.googleapis.com/user"
}

# --------------------------------------------------------------------------- metrics

resource "google_logging_metric" "runs" {
  name        = "keepalive_runs"
  description = "Scheduled runs that reported how they ended, per integration and result."
  filter      = local.run_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "provider"
      value_type  = "STRING"
      description = "Integration: bitrix24, hubspot, graph, cegid, universign."
    }
    labels {
      key         = "result"
      value_type  = "STRING"
      description = "The run's result field."
    }
  }
  label_extractors = {
    provider = "EXTRACT(jsonPayload.provider)"
    result   = "EXTRACT(jsonPayload.result)"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "run_ok" {
  name        = "keepalive_run_ok"
  description = "Scheduled runs whose result is one its integration lists as a success, per integration."
  filter      = local.run_ok_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "provider"
      value_type  = "STRING"
      description = "Integration: bitrix24, hubspot, graph, cegid, universign."
    }
  }
  label_extractors = {
    provider = "EXTRACT(jsonPayload.provider)"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "run_failed" {
  name        = "keepalive_run_failed"
  description = "Scheduled runs that did not succeed (configuration errors included), per integration and result; runs that found another run at work are neither."
  filter      = local.run_failed_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "provider"
      value_type  = "STRING"
      description = "Integration."
    }
    labels {
      key         = "result"
      value_type  = "STRING"
      description = "The run's result field."
    }
  }
  label_extractors = {
    provider = "EXTRACT(jsonPayload.provider)"
    result   = "EXTRACT(jsonPayload.result)"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "needs_reauth" {
  name        = "keepalive_needs_reauth"
  description = "A provider refused a credential: a person must re-authorise or replace it."
  filter      = "${local.log_resource} AND jsonPayload.event=\"needs_reauth\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "provider"
      value_type  = "STRING"
      description = "Integration."
    }
    labels {
      key         = "error_code"
      value_type  = "STRING"
      description = "The provider's error code (invalid_grant, ...)."
    }
  }
  label_extractors = {
    provider   = "EXTRACT(jsonPayload.provider)"
    error_code = "EXTRACT(jsonPayload.error_code)"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "duration" {
  name            = "keepalive_run_duration_seconds"
  description     = "How long each scheduled run and each webhook request took, per function."
  filter          = "${local.log_resource} AND jsonPayload.event=(\"run_summary\" OR \"webhook_request\") AND jsonPayload.duration_seconds>=0"
  value_extractor = "EXTRACT(jsonPayload.duration_seconds)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function (Cloud Run service) that wrote the line."
    }
  }
  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 0.05
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "secret_reads" {
  name            = "keepalive_secret_reads"
  description     = "Secret Manager reads (secret value accesses) per scheduled run, per integration."
  filter          = "${local.job_run} AND jsonPayload.secret_reads>=0"
  value_extractor = "EXTRACT(jsonPayload.secret_reads)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    labels {
      key         = "provider"
      value_type  = "STRING"
      description = "Integration."
    }
  }
  label_extractors = {
    provider = "EXTRACT(jsonPayload.provider)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "over_budget" {
  name        = "keepalive_over_budget"
  description = "Runs or requests that used more than monitoring_slow_run_fraction of their time limit, or read Secret Manager more than monitoring_secret_reads_max allows."
  filter      = local.over_budget_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function (Cloud Run service) that wrote the line."
    }
  }
  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "webhook_rejected" {
  name        = "keepalive_webhook_rejected"
  description = "Webhook requests answered with an error status, per integration and reason (bad_signature, unauthorized, too_large, retry_later, ...)."
  filter      = "${local.log_resource} AND jsonPayload.event=\"webhook_request\" AND jsonPayload.http_status>=400"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "provider"
      value_type  = "STRING"
      description = "Integration."
    }
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "The request's result field."
    }
  }
  label_extractors = {
    provider = "EXTRACT(jsonPayload.provider)"
    reason   = "EXTRACT(jsonPayload.result)"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "graph_earliest_expiry" {
  count           = local.deploy.graph ? 1 : 0
  name            = "keepalive_graph_earliest_expiry_minutes"
  description     = "Minutes until the earliest Microsoft Graph subscription expires, as each renewal run reports it."
  filter          = "${local.log_resource} AND jsonPayload.event=\"run_summary\" AND jsonPayload.provider=\"graph\" AND jsonPayload.earliest_expiry_in_minutes>=0"
  value_extractor = "EXTRACT(jsonPayload.earliest_expiry_in_minutes)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "min"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 1.6
      scale              = 10
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "graph_expiring" {
  count       = local.deploy.graph ? 1 : 0
  name        = "keepalive_graph_expiring"
  description = "Renewal runs that left a Microsoft Graph subscription expiring within graph_expiry_alert_minutes."
  filter      = "${local.log_resource} AND jsonPayload.event=\"run_summary\" AND jsonPayload.provider=\"graph\" AND jsonPayload.earliest_expiry_in_minutes<${var.graph_expiry_alert_minutes}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "cegid_bytes" {
  count           = local.deploy.cegid ? 1 : 0
  name            = "keepalive_cegid_transfer_bytes"
  description     = "Bytes copied from Cegid to Cloud Storage per transfer run."
  filter          = "${local.log_resource} AND jsonPayload.event=\"run_summary\" AND jsonPayload.provider=\"cegid\" AND jsonPayload.bytes>=0"
  value_extractor = "EXTRACT(jsonPayload.bytes)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "By"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 2
      scale              = 1024
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "cegid_failures" {
  count       = local.deploy.cegid ? 1 : 0
  name        = "keepalive_cegid_transfer_failures"
  description = "Cegid files that failed to copy, and transfer runs that failed."
  filter      = "${local.log_resource} AND jsonPayload.provider=\"cegid\" AND (jsonPayload.event=\"file_failed\" OR (jsonPayload.event=\"run_summary\" AND (jsonPayload.result=(\"failed\" OR \"sas_invalid\") OR jsonPayload.failed>0)))"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "universign_status_changes" {
  count       = local.deploy.universign ? 1 : 0
  name        = "keepalive_universign_status_changes"
  description = "Universign signature transactions that changed status, by new status."
  filter      = "${local.log_resource} AND jsonPayload.event=\"status_change\" AND jsonPayload.provider=\"universign\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "status"
      value_type  = "STRING"
      description = "The transaction's new status."
    }
  }
  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
  }

  depends_on = [time_sleep.apis_ready]
}

# Webhook events acknowledged without a sync (a type we do not handle, or no transaction id
# found): each one is a WARNING line naming its type, so none vanishes unnoticed.
# One per work message the worker handled, redeliveries included: a growing retry=true count
# is a worker failing (the dead-letter alert in alerts.tf says when it gave up).
resource "google_logging_metric" "universign_sync_messages" {
  count       = local.deploy.universign ? 1 : 0
  name        = "keepalive_universign_sync_messages"
  description = "Universign work messages handled by universign_sync, per result and whether Pub/Sub redelivers them."
  filter      = "${local.log_resource} AND jsonPayload.event=\"sync_message\" AND jsonPayload.provider=\"universign\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "result"
      value_type  = "STRING"
      description = "synced, duplicate, retry_later, in_progress, api_key_refused, bad_message, ..."
    }
    labels {
      key         = "retry"
      value_type  = "STRING"
      description = "true when the message was handed back for redelivery."
    }
  }
  label_extractors = {
    result = "EXTRACT(jsonPayload.result)"
    retry  = "EXTRACT(jsonPayload.retry)"
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_logging_metric" "universign_events_ignored" {
  count       = local.deploy.universign ? 1 : 0
  name        = "keepalive_universign_events_ignored"
  description = "Signed Universign webhook events acknowledged without a sync, by event type and reason."
  filter      = "${local.log_resource} AND jsonPayload.event=\"event_ignored\" AND jsonPayload.provider=\"universign\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "event_type"
      value_type  = "STRING"
      description = "The event's type (or, in the flat shape, its event name)."
    }
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "type_not_handled or no_transaction_id."
    }
  }
  label_extractors = {
    event_type = "EXTRACT(jsonPayload.event_type)"
    reason     = "EXTRACT(jsonPayload.reason)"
  }

  depends_on = [time_sleep.apis_ready]
}

# A new log-based metric is not usable in an alert condition for a while after it is created
# ("metric ... not found"); the policies wait for it. The wait starts again when the set of
# metrics changes, so a metric added later is waited for too.
resource "time_sleep" "log_metrics_visible" {
  create_duration = "${var.log_metric_propagation_seconds}s"
  triggers = {
    metrics = join(",", sort(compact(concat(
      [
        google_logging_metric.runs.name, google_logging_metric.run_ok.name,
        google_logging_metric.run_failed.name, google_logging_metric.needs_reauth.name,
        google_logging_metric.over_budget.name, google_logging_metric.webhook_rejected.name,
      ],
      google_logging_metric.graph_expiring[*].name,
    ))))
  }
}
