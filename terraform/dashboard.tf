# One Cloud Monitoring dashboard, a row per deployed integration: runs ok and failed, the
# needs-reauth lines, how long runs take, and one figure particular to the integration (Graph's
# nearest subscription expiry, Cegid's bytes copied, Universign's refused webhooks, Secret
# Manager reads for the token refreshers). Console: Monitoring > Dashboards > Integration keep-alive.

locals {
  integration_functions = {
    bitrix24   = module.b24_token_refresh[*].function_name
    hubspot    = module.hubspot_refresh[*].function_name
    graph      = concat(module.graph_webhook_renew[*].function_name, module.graph_webhook_notify[*].function_name)
    cegid      = concat(module.cegid_transfer[*].function_name, module.cegid_queries[*].function_name)
    universign = concat(module.universign_poll[*].function_name, module.universign_webhook[*].function_name, module.universign_sync[*].function_name)
  }

  # A chart's data set is a metric summed (or a percentile of it) per hour, split by group_by.
  chart_aligners = { count = "ALIGN_SUM", p95 = "ALIGN_PERCENTILE_95", p05 = "ALIGN_PERCENTILE_05" }
  chart_reducers = { count = "REDUCE_SUM", p95 = "REDUCE_MAX", p05 = "REDUCE_MIN" }

  particular_chart = {
    bitrix24   = { title = "Secret Manager reads per run (p95)", metric = google_logging_metric.secret_reads.name, labels = "metric.label.provider=\"bitrix24\"", aligner = "p95", group_by = [] }
    hubspot    = { title = "Secret Manager reads per run (p95)", metric = google_logging_metric.secret_reads.name, labels = "metric.label.provider=\"hubspot\"", aligner = "p95", group_by = [] }
    graph      = { title = "Nearest subscription expiry, minutes (p05)", metric = "keepalive_graph_earliest_expiry_minutes", labels = "", aligner = "p05", group_by = [] }
    cegid      = { title = "Bytes copied per run (p95)", metric = "keepalive_cegid_transfer_bytes", labels = "", aligner = "p95", group_by = [] }
    universign = { title = "Webhook requests refused, by reason", metric = google_logging_metric.webhook_rejected.name, labels = "metric.label.provider=\"universign\"", aligner = "count", group_by = ["metric.label.reason"] }
  }

  dashboard_rows = [
    for name in sort(keys(local.monitored)) : {
      name  = name
      title = local.integrations[name].title
      charts = [
        {
          title = "Runs ok and failed"
          sets = [
            { metric = google_logging_metric.run_ok.name, labels = "metric.label.provider=\"${name}\"", aligner = "count", group_by = [], legend = "ok" },
            { metric = google_logging_metric.run_failed.name, labels = "metric.label.provider=\"${name}\"", aligner = "count", group_by = ["metric.label.result"], legend = "failed: $${metric.labels.result}" },
          ]
        },
        {
          title = "A person must act (needs_reauth)"
          sets  = [{ metric = google_logging_metric.needs_reauth.name, labels = "metric.label.provider=\"${name}\"", aligner = "count", group_by = ["metric.label.error_code"], legend = "$${metric.labels.error_code}" }]
        },
        {
          title = "Run and request duration, seconds (p95)"
          sets  = [{ metric = google_logging_metric.duration.name, labels = "metric.label.function=one_of(${join(", ", [for f in local.integration_functions[name] : "\"${f}\""])})", aligner = "p95", group_by = ["metric.label.function"], legend = "$${metric.labels.function}" }]
        },
        {
          title = local.particular_chart[name].title
          sets  = [merge(local.particular_chart[name], { legend = "" })]
        },
      ]
    }
  ]
}

resource "google_monitoring_dashboard" "keepalive" {
  count = length(local.monitored) > 0 ? 1 : 0
  dashboard_json = jsonencode({
    displayName = "Integration keep-alive"
    mosaicLayout = {
      columns = 48
      tiles = flatten([
        for row, integration in local.dashboard_rows : [
          for column, chart in integration.charts : {
            xPos   = column * 12
            yPos   = row * 4
            width  = 12
            height = 4
            widget = {
              title = "${integration.title}: ${chart.title}"
              xyChart = {
                dataSets = [
                  for set in chart.sets : {
                    plotType       = set.aligner == "count" ? "STACKED_BAR" : "LINE"
                    legendTemplate = set.legend
                    timeSeriesQuery = {
                      timeSeriesFilter = {
                        filter = join(" AND ", compact([
                          "${local.user_metric}/${set.metric}\"",
                          "resource.type=\"cloud_run_revision\"",
                          set.labels,
                        ]))
                        aggregation = {
                          alignmentPeriod    = "3600s"
                          perSeriesAligner   = local.chart_aligners[set.aligner]
                          crossSeriesReducer = local.chart_reducers[set.aligner]
                          groupByFields      = set.group_by
                        }
                      }
                    }
                  }
                ]
              }
            }
          }
        ]
      ])
    }
  })

  depends_on = [time_sleep.log_metrics_visible]
}
