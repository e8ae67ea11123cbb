output "log_metrics" {
  description = "Log-based metrics (logging.googleapis.com/user/<name>) built from the functions' summary lines."
  value = sort([
    google_logging_metric.run_ok.name,
    google_logging_metric.run_failed.name,
    google_logging_metric.needs_reauth.name,
    google_logging_metric.graph_earliest_expiry.name,
    google_logging_metric.graph_expiring.name,
    google_logging_metric.cegid_bytes.name,
    google_logging_metric.cegid_failures.name,
    google_logging_metric.universign_status_changes.name,
    google_logging_metric.universign_rejected.name,
  ])
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
    [for key in ["client_id", "client_secret", "refresh_token"] : google_secret_manager_secret.b24[key].secret_id],
    [for secret in google_secret_manager_secret.graph : secret.secret_id],
    [for secret in google_secret_manager_secret.hubspot_client : secret.secret_id],
    var.cegid_mode == "api"
    ? [for key in ["key_id", "key_secret", "subscription_key"] : google_secret_manager_secret.cegid[key].secret_id]
    : [google_secret_manager_secret.cegid["sas_url"].secret_id],
    [for secret in google_secret_manager_secret.universign : secret.secret_id],
  ))
}

output "scheduler_jobs" {
  description = "Every Cloud Scheduler job: gcloud scheduler jobs run <name> --location <region>."
  value = sort([
    google_cloud_scheduler_job.b24.name,
    google_cloud_scheduler_job.hubspot.name,
    google_cloud_scheduler_job.graph_renew.name,
    google_cloud_scheduler_job.cegid.name,
    google_cloud_scheduler_job.universign_poll.name,
  ])
}
