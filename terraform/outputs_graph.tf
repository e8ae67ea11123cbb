output "graph_notification_url" {
  description = "Public endpoint Microsoft Graph posts to (notificationUrl and lifecycleNotificationUrl)."
  value       = module.graph_webhook_notify.function_uri
}

output "graph_renew_trigger_topic" {
  description = "Publish {} here to run the reconciler now (deploy.sh does once after a deploy)."
  value       = google_pubsub_topic.graph_renew_trigger.name
}

output "graph_notifications_topic" {
  description = "Topic downstream apps subscribe to: change notifications (attributes subscriptionId, changeType, tenantId) and resync events (attribute lifecycleEvent)."
  value       = google_pubsub_topic.graph_notifications.name
}

output "graph_secrets" {
  description = "Secrets to fill before the first run: tenant id, app (client) id, client secret, and a random clientState of at most 128 characters."
  value       = { for k, s in google_secret_manager_secret.graph : k => s.secret_id }
}
