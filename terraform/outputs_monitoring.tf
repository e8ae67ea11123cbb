output "log_metrics" {
  description = "Log-based metrics (logging.googleapis.com/user/<name>) built from the functions' summary lines."
  value = sort(concat(
    [
      google_logging_metric.runs.name,
      google_logging_metric.run_ok.name,
      google_logging_metric.run_failed.name,
      google_logging_metric.needs_reauth.name,
      google_logging_metric.duration.name,
      google_logging_metric.secret_reads.name,
      google_logging_metric.over_budget.name,
      google_logging_metric.webhook_rejected.name,
    ],
    google_logging_metric.graph_earliest_expiry[*].name,
    google_logging_metric.graph_expiring[*].name,
    google_logging_metric.cegid_bytes[*].name,
    google_logging_metric.cegid_failures[*].name,
    google_logging_metric.universign_status_changes[*].name,
  ))
}

output "dashboard" {
  description = "The Cloud Monitoring dashboard (Monitoring > Dashboards > Integration keep-alive)."
  value       = try(google_monitoring_dashboard.keepalive[0].id, null)
}

output "alert_notification_channel" {
  description = "Email notification channel of the alert policies (null when alert_email is empty)."
  value       = try(google_monitoring_notification_channel.email[0].id, null)
}

# deploy.sh reads these two: it asks for a value of each secret a person provides (those
# without a version yet) and runs each job once after apply. HubSpot accounts' refresh tokens
# are added per account with `python -m cli hubspot add-account`.
output "secrets_to_provide" {
  description = "Secrets whose first value a person adds (client credentials, initial refresh tokens, API keys); the functions write the others."
  value = sort(concat(
    [for key, secret in google_secret_manager_secret.b24 : secret.secret_id if key != "access_token"],
    [for secret in google_secret_manager_secret.graph : secret.secret_id],
    [for secret in google_secret_manager_secret.hubspot_client : secret.secret_id],
    [
      for key, secret in google_secret_manager_secret.cegid : secret.secret_id
      if contains(var.cegid_mode == "api" ? ["key_id", "key_secret", "subscription_key"] : ["sas_url"], key)
    ],
    [for secret in google_secret_manager_secret.universign : secret.secret_id],
  ))
}

output "scheduler_jobs" {
  description = "Every Cloud Scheduler job: gcloud scheduler jobs run <name> --location <region>."
  value = sort(concat(
    [for job in google_cloud_scheduler_job.b24 : job.name],
    [for job in google_cloud_scheduler_job.hubspot : job.name],
    [for job in google_cloud_scheduler_job.graph_renew : job.name],
    [for job in google_cloud_scheduler_job.cegid : job.name],
    [for job in google_cloud_scheduler_job.universign_poll : job.name],
  ))
}
