# Alert policies over the metrics of monitoring.tf. Each rule is one condition across every
# deployed integration, split by the metric's labels, so an incident names its integration
# (Cloud Monitoring opens one per label set) and the whole project pays for a handful of
# conditions. docs/operations.md explains each one, on a running and on a new deployment.

locals {
  # "Runbooks: Bitrix24 docs/runbooks/..., ..." for the alerts that span integrations.
  runbook_lines = join("\n", [
    for name, i in local.monitored : "- ${i.title} (`${name}`): ${local.runbook_prefix}${i.runbook}"
  ])

  # No successful run for two schedule intervals (at least an hour, at most the 23.5 hours an
  # absence condition can watch); integrations with the same window share one condition.
  absence_minutes = {
    for name, i in local.monitored :
    name => min(max(2 * lookup(var.monitoring_run_interval_minutes, name, 60), 60), 1410)
  }
  absence_groups = {
    for minutes in distinct(values(local.absence_minutes)) :
    tostring(minutes) => [for name, m in local.absence_minutes : name if m == minutes]
  }

  # Alerts that fire when a counting metric goes above a threshold within a window.
  metric_alerts = {
    graph_expiring = {
      enabled      = local.deploy.graph
      display_name = "Microsoft Graph: a subscription expires within ${var.graph_expiry_alert_minutes / 60} hours"
      condition    = "Graph subscription close to expiry"
      severity     = "ERROR"
      metric       = local.deploy.graph ? google_logging_metric.graph_expiring[0].name : null
      labels       = ""
      group_by     = []
      threshold    = 0
      window       = "300s"
      summary      = <<-EOT
        A renewal run left a Microsoft Graph subscription expiring within
        ${var.graph_expiry_alert_minutes} minutes: renewals are failing. Once it expires, Graph
        stops sending notifications and the subscription must be created again.
        Runbook: ${local.runbook_prefix}docs/runbooks/graph-subscription-lost.md
      EOT
    }
    universign_rejected = {
      enabled      = local.deploy.universign
      display_name = "Universign: webhook calls failing signature checks"
      condition    = "Universign webhooks rejected"
      severity     = "WARNING"
      metric       = google_logging_metric.webhook_rejected.name
      labels       = " AND metric.label.provider=\"universign\" AND metric.label.reason=one_of(\"bad_signature\", \"unauthorized\")"
      group_by     = []
      threshold    = var.universign_signature_failure_threshold
      window       = "900s"
      summary      = <<-EOT
        More than ${var.universign_signature_failure_threshold} Universign webhook calls in 15
        minutes failed the token or signature check. Status changes still arrive through the
        poll, later.
        Runbook: ${local.runbook_prefix}docs/runbooks/universign-signature-failures.md
      EOT
    }
    over_budget = {
      enabled      = length(local.monitored) > 0
      display_name = "A run went over its time or Secret Manager budget"
      condition    = "Run over budget"
      severity     = "WARNING"
      metric       = google_logging_metric.over_budget.name
      labels       = ""
      group_by     = ["metric.label.function"]
      threshold    = 0
      window       = "300s"
      summary      = <<-EOT
        Function $${metric.label.function} logged a run or request that took more than
        ${floor(var.monitoring_slow_run_fraction * 100)}% of its time limit, or read Secret
        Manager more often than monitoring_secret_reads_max allows. Slow runs are the step
        before timed-out runs; extra reads cost money and hit quotas. The function's
        run_summary lines show duration_seconds and secret_reads.
        Runbooks:
        ${local.runbook_lines}
      EOT
    }
  }
}

resource "google_monitoring_notification_channel" "email" {
  count        = var.alert_email == "" ? 0 : 1
  display_name = "Integration keep-alive alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_monitoring_alert_policy" "needs_reauth" {
  count                 = length(local.monitored) > 0 ? 1 : 0
  display_name          = "Keep-alive: a person must act"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.alert_channels

  conditions {
    display_name = "A provider refused a credential (needs_reauth)"
    condition_threshold {
      filter          = "${local.user_metric}/${google_logging_metric.needs_reauth.name}\" AND resource.type=\"cloud_run_revision\""
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
      $${metric.label.provider} refused a credential ($${metric.label.error_code}) and will not
      retry on its own: a person must act. The log line with `jsonPayload.event="needs_reauth"`
      names the secret to update. Status: `python -m cli status`.
      Runbooks:
      ${local.runbook_lines}
    EOT
  }

  depends_on = [time_sleep.log_metrics_visible]
}

# Every run in the window failed: fires at the first failed run of an integration that has
# never succeeded (a new deployment with wrong or missing credentials, or left unconfigured),
# and when a working one has failed for a whole window. One failed run among good ones is not
# an alert: the next run retries.
resource "google_monitoring_alert_policy" "failing" {
  count                 = length(local.monitored) > 0 ? 1 : 0
  display_name          = "Keep-alive: every run failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "Every run of an integration failed within ${var.monitoring_failure_window_minutes} minutes"
    condition_threshold {
      filter             = "${local.user_metric}/${google_logging_metric.run_failed.name}\" AND resource.type=\"cloud_run_revision\""
      denominator_filter = "${local.user_metric}/${google_logging_metric.runs.name}\" AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = 0.99
      duration           = "0s"
      aggregations {
        alignment_period     = "${var.monitoring_failure_window_minutes * 60}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.provider"]
      }
      denominator_aggregations {
        alignment_period     = "${var.monitoring_failure_window_minutes * 60}s"
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
      Every $${metric.label.provider} run of the last ${var.monitoring_failure_window_minutes}
      minutes failed (a configuration error counts as a failure). Read the run_summary lines:
      `jsonPayload.event="run_summary" AND jsonPayload.provider="$${metric.label.provider}"`;
      `python -m cli status` shows the last error.
      Runbooks:
      ${local.runbook_lines}
    EOT
  }

  depends_on = [time_sleep.log_metrics_visible]
}

# Cloud Run's own request count, so it sees what the function cannot log: an import error
# (a missing package or variable), a crash, a time-out. Every invocation in the window ending in
# a 5xx is an alert; a transient failure among good runs is not (Pub/Sub delivers it again).
resource "google_monitoring_alert_policy" "invocations_failing" {
  count                 = length(local.scheduled_functions) > 0 ? 1 : 0
  display_name          = "Keep-alive: every invocation of a function failed"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.alert_channels

  conditions {
    display_name = "Every invocation answered 5xx within ${var.monitoring_failure_window_minutes} minutes"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.label.service_name=one_of(${join(", ", [for f in local.scheduled_functions : "\"${f}\""])}) AND metric.label.response_code_class=\"5xx\""
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.label.service_name=one_of(${join(", ", [for f in local.scheduled_functions : "\"${f}\""])})"
      comparison         = "COMPARISON_GT"
      threshold_value    = 0.99
      duration           = "0s"
      aggregations {
        alignment_period     = "${var.monitoring_failure_window_minutes * 60}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "${var.monitoring_failure_window_minutes * 60}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
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
      Every invocation of $${resource.label.service_name} in the last
      ${var.monitoring_failure_window_minutes} minutes failed. When the function logged no
      run_summary at all, it did not start: read its logs
      (`resource.labels.service_name="$${resource.label.service_name}"`) for an import error
      (a missing package or environment variable) or a time-out.
      Runbooks:
      ${local.runbook_lines}
    EOT
  }

  depends_on = [time_sleep.log_metrics_visible]
}

# Absence needs one data point after the policy is created: deploy.sh (and the README's first
# steps) run every job once, which gives it that point; the `failing` policy covers an
# integration whose first runs fail.
resource "google_monitoring_alert_policy" "no_success" {
  for_each              = local.absence_groups
  display_name          = "Keep-alive: no successful run in ${each.key} minutes (${join(", ", [for name in each.value : local.integrations[name].title])})"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "No successful run for ${each.key} minutes"
    condition_absent {
      filter   = "${local.user_metric}/${google_logging_metric.run_ok.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.provider=one_of(${join(", ", [for name in each.value : "\"${name}\""])})"
      duration = "${tonumber(each.key) * 60}s"
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
      No $${metric.label.provider} run ended well for ${each.key} minutes (two schedule
      intervals): the job is paused, the function fails before it logs, or every run fails.
      Check `python -m cli status`, then the function's logs
      (filter: `jsonPayload.provider="$${metric.label.provider}"`).
      Runbooks:
      ${join("\n", [for name in each.value : "- ${local.integrations[name].title}: ${local.runbook_prefix}${local.integrations[name].runbook}"])}
    EOT
  }

  depends_on = [time_sleep.log_metrics_visible]
}

resource "google_monitoring_alert_policy" "metric_above" {
  for_each              = { for key, alert in local.metric_alerts : key => alert if alert.enabled }
  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = local.alert_channels

  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter          = "${local.user_metric}/${each.value.metric}\" AND resource.type=\"cloud_run_revision\"${each.value.labels}"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = each.value.window
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = each.value.group_by
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
    content   = each.value.summary
  }

  depends_on = [time_sleep.log_metrics_visible]
}

# universign_sync gave up on a queued webhook event: Pub/Sub moved it to the dead-letter
# topic, whose subscription keeps it to replay. Read from Pub/Sub's own count of the messages
# universign-sync-push dead-lettered (as consumers.tf does): it fires whatever the worker logged,
# at the moment a message is given up on, and even if the dead-letter subscription were gone.
resource "google_monitoring_alert_policy" "universign_sync_dead_letters" {
  count                 = local.deploy.universign ? 1 : 0
  display_name          = "Universign: queued webhook events dead-lettered"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "universign-sync-push dead-lettered messages"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/dead_letter_message_count\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.universign_sync_push[0].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
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
      universign_sync could not process some webhook events after
      ${var.universign_sync_max_delivery_attempts} deliveries (a refused API key, Universign or
      Cloud Storage down for hours): they are kept in the subscription
      `universign-sync-dead-letter`, not lost. Fix the cause (the worker's `sync_message` and
      `needs_reauth` lines), then replay them.
      Runbook: ${local.runbook_prefix}docs/runbooks/universign-sync-dead-letters.md
    EOT
  }

  depends_on = [time_sleep.apis_ready]
}

# Alerts that were separate resources before keep their policy rather than being recreated.
moved {
  from = google_monitoring_alert_policy.graph_expiring
  to   = google_monitoring_alert_policy.metric_above["graph_expiring"]
}

moved {
  from = google_monitoring_alert_policy.universign_rejected
  to   = google_monitoring_alert_policy.metric_above["universign_rejected"]
}
