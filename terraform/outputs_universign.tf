output "universign_webhook_url" {
  description = "Endpoint to register in the Universign web app (Developer menu, Webhook endpoints); append ?token=<secret universign-webhook-token> when universign_webhook_token_enabled."
  value       = local.deploy.universign ? module.universign_webhook[0].function_uri : null
}

output "universign_status_topic" {
  description = "Topic the Sage updater and notifiers subscribe to: {transaction_id, previous, status, universign_state, at}, attributes transaction_id and status; at-least-once."
  value       = local.deploy.universign ? google_pubsub_topic.universign_status_changes[0].name : null
}

output "universign_poll_trigger_topic" {
  description = "Publish {} here to run a poll now."
  value       = local.deploy.universign ? google_pubsub_topic.universign_poll_trigger[0].name : null
}

output "universign_archive_bucket" {
  description = "Where signed documents are archived (universign/<transaction id>/<document name>)."
  value       = local.deploy.universign ? google_storage_bucket.universign_archive[0].name : null
}

output "universign_state_bucket" {
  description = "Transaction documents (universign/transactions/<id>.json), the poll index and event markers."
  value       = local.deploy.universign ? google_storage_bucket.universign_state[0].name : null
}

output "universign_secrets" {
  description = "Secrets to fill before the first run: the Universign API key (and the webhook URL token when enabled)."
  value       = { for k, s in google_secret_manager_secret.universign : k => s.secret_id }
}

output "universign_sync_topic" {
  description = "Work topic: the webhook's verified events, consumed by universign_sync. Dead letters land in the subscription universign-sync-dead-letter."
  value       = local.deploy.universign ? google_pubsub_topic.universign_sync[0].name : null
}

output "universign_sync_delivery" {
  description = "How universign_sync gets the queued events: the push subscription, its endpoint and OIDC identity, delivery attempts before dead-lettering, retention, and the subscription keeping the dead letters."
  value = local.deploy.universign ? {
    subscription             = google_pubsub_subscription.universign_sync_push[0].name
    push_endpoint            = module.universign_sync[0].function_uri
    oidc_service_account     = google_service_account.universign_sync_push[0].email
    max_delivery_attempts    = var.universign_sync_max_delivery_attempts
    retention                = var.universign_sync_retention
    dead_letter_subscription = google_pubsub_subscription.universign_sync_dead_letter[0].name
  } : null
}
