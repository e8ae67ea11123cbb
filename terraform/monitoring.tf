# Log-based metrics read the structured lines every function writes (one JSON object per line,
# fields in jsonPayload): `event="run_summary"` once per run with `provider`, `result` and the
# run's counters; `event="needs_reauth"` when a person must act. Alert
# policies watch those metrics; each names its runbook in docs/runbooks/.

locals {
  integrations = {
    bitrix24 = {
      title   = "Bitrix24"
      runbook = "docs/runbooks/reauthorise-bitrix24.md"
    }
    hubspot = {
      title   = "HubSpot"
      runbook = "docs/runbooks/reauthorise-hubspot.md"
    }
    graph = {
      title   = "Microsoft Graph"
      runbook = "docs/runbooks/graph-subscription-lost.md"
    }
    cegid = {
      title   = "Cegid"
      runbook = "docs/runbooks/cegid-sas-expired.md"
    }
    universign = {
      title   = "Universign"
      runbook = "docs/runbooks/universign-signature-failures.md"
    }
  }

  # Alerts exist only for the integrations deployed.
  monitored = { for name, integration in local.integrations : name => integration if local.deploy[name] }

  runbook_prefix = var.runbook_base_url == "" ? "" : "${trimsuffix(var.runbook_base_url, "/")}/"
  alert_channels = [for c in google_monitoring_notification_channel.email : c.id]

  # Functions log as Cloud Run revisions (gen2); the older type is kept for completeness.
  log_resource = "resource.type=(\"cloud_run_revision\" OR \"cloud_function\")"

  # A run that went wrong: logged at ERROR, a failing result, or failed items in its counters.
  run_failed_filter = join(" AND ", [
    local.log_resource,
    "jsonPayload.event=\"run_summary\"",
    "(severity>=ERROR OR jsonPayload.result=(\"failed\" OR \"needs-reauth\" OR \"needs_reauth\" OR \"sas_invalid\" OR \"internal_error\" OR \"unavailable\") OR jsonPayload.failed>0)",
  ])
  run_ok_filter = join(" AND ", [
    local.log_resource,
    "jsonPayload.event=\"run_summary\"",
    "severity<ERROR",
    "NOT jsonPayload.result=(\"failed\" OR \"needs-reauth\" OR \"needs_reauth\" OR \"sas_invalid\" OR \"internal_error\" OR \"unavailable\")",
    "NOT jsonPayload.failed>0",
  ])
  user_metric = "metric.type=\"logging.googleapis.com/user"
}

# --------------------------------------------------------------------------- metrics

resource "google_logging_metric" "run_ok" {
  name        = "keepalive_run_ok"
  description = "Runs that ended well (refreshed, fresh, renewed, transferred), per integration."
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
  description = "Runs that failed or had failed items, per integration and result."
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
      description = "The run's result field (empty when the integration reports counters only)."
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

resource "google_logging_metric" "universign_rejected" {
  count       = local.deploy.universign ? 1 : 0
  name        = "keepalive_universign_webhook_rejected"
  description = "Universign webhook calls refused for a bad token or signature."
  filter      = "${local.log_resource} AND jsonPayload.event=\"run_summary\" AND jsonPayload.provider=\"universign\" AND jsonPayload.result=(\"bad_signature\" OR \"unauthorized\")"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
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
      [google_logging_metric.run_ok.name, google_logging_metric.run_failed.name, google_logging_metric.needs_reauth.name],
      google_logging_metric.graph_expiring[*].name,
      google_logging_metric.cegid_failures[*].name,
      google_logging_metric.universign_rejected[*].name,
    ))))
  }
}

# --------------------------------------------------------------------------- channel

resource "google_monitoring_notification_channel" "email" {
  count        = var.alert_email == "" ? 0 : 1
  display_name = "Integration keep-alive alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [time_sleep.apis_ready]
}

# --------------------------------------------------------------------------- alerts

resource "google_monitoring_alert_policy" "needs_reauth" {
  for_each              = local.monitored
  display_name          = "${each.value.title}: a person must act"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.alert_channels

  conditions {
    display_name = "${each.value.title} logged needs_reauth"
    condition_threshold {
      filter          = "${local.user_metric}/${google_logging_metric.needs_reauth.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.provider=\"${each.key}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.provider", "metric.label.error_code"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      ${each.value.title} refused a credential and will not retry on its own: a person must act.
      The log line with `jsonPayload.event="needs_reauth"` names the error code and the secret to update.

      Runbook: ${local.runbook_prefix}${each.value.runbook}
      Status: `python -m cli status`
    EOT
  }

  depends_on = [time_sleep.log_metrics_visible]
}

resource "google_monitoring_alert_policy" "no_success" {
  for_each              = local.monitored
  display_name          = "${each.value.title}: no successful run in two schedule intervals"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "No successful ${each.value.title} run"
    condition_absent {
      filter   = "${local.user_metric}/${google_logging_metric.run_ok.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.provider=\"${each.key}\""
      duration = "${min(2 * lookup(var.monitoring_run_interval_minutes, each.key, 60), 1410) * 60}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.provider"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      No ${each.value.title} run ended well for two schedule intervals: the job is paused, the
      function fails before it logs, or every run fails. Check `python -m cli status`, then the
      function's logs (filter: `jsonPayload.provider="${each.key}"`).

      Runbook: ${local.runbook_prefix}${each.value.runbook}
    EOT
  }
}

# Alerts that fire when a counting metric goes above a threshold within a window.
locals {
  metric_alerts = {
    graph_expiring = {
      integration  = "graph"
      display_name = "Microsoft Graph: a subscription expires within ${var.graph_expiry_alert_minutes / 60} hours"
      condition    = "Graph subscription close to expiry"
      severity     = "ERROR"
      metric       = local.deploy.graph ? google_logging_metric.graph_expiring[0].name : null
      threshold    = 0
      window       = "300s"
      runbook      = "docs/runbooks/graph-subscription-lost.md"
      summary      = <<-EOT
        A renewal run left a Microsoft Graph subscription expiring within
        ${var.graph_expiry_alert_minutes} minutes: renewals are failing. Once it expires, Graph
        stops sending notifications and the subscription must be created again.
      EOT
    }
    cegid_failures = {
      integration  = "cegid"
      display_name = "Cegid: transfer failures"
      condition    = "Cegid files or runs failed"
      severity     = "ERROR"
      metric       = local.deploy.cegid ? google_logging_metric.cegid_failures[0].name : null
      threshold    = 0
      window       = "300s"
      runbook      = "docs/runbooks/cegid-sas-expired.md"
      summary      = <<-EOT
        Cegid files failed to copy, or a transfer run failed (an expired SAS URL shows as
        result `sas_invalid`). Files that failed are retried by the next run.
      EOT
    }
    universign_rejected = {
      integration  = "universign"
      display_name = "Universign: webhook calls failing signature checks"
      condition    = "Universign webhooks rejected"
      severity     = "WARNING"
      metric       = local.deploy.universign ? google_logging_metric.universign_rejected[0].name : null
      threshold    = var.universign_signature_failure_threshold
      window       = "900s"
      runbook      = "docs/runbooks/universign-signature-failures.md"
      summary      = <<-EOT
        More than ${var.universign_signature_failure_threshold} Universign webhook calls in 15
        minutes failed the token or signature check. Status changes still arrive through the
        poll, later.
      EOT
    }
  }

  depends_on = [time_sleep.log_metrics_visible]
}

resource "google_monitoring_alert_policy" "metric_above" {
  for_each              = { for key, alert in local.metric_alerts : key => alert if local.deploy[alert.integration] }
  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = local.alert_channels

  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter          = "${local.user_metric}/${each.value.metric}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = each.value.window
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "${each.value.summary}\nRunbook: ${local.runbook_prefix}${each.value.runbook}\n"
  }

  depends_on = [time_sleep.log_metrics_visible]
}

# These alerts were separate resources before; existing deployments keep them, not recreate.
moved {
  from = google_monitoring_alert_policy.graph_expiring
  to   = google_monitoring_alert_policy.metric_above["graph_expiring"]
}

moved {
  from = google_monitoring_alert_policy.cegid_failures
  to   = google_monitoring_alert_policy.metric_above["cegid_failures"]
}

moved {
  from = google_monitoring_alert_policy.universign_rejected
  to   = google_monitoring_alert_policy.metric_above["universign_rejected"]
}
