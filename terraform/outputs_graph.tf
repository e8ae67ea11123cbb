output "graph_notification_url" {
  description = "Public endpoint Microsoft Graph posts to (notificationUrl and lifecycleNotificationUrl)."
  value       = local.deploy.graph ? module.graph_webhook_notify[0].function_uri : null
}

output "graph_renew_trigger_topic" {
  description = "Publish {} here to run the reconciler now (deploy.sh does once after a deploy)."
  value       = local.deploy.graph ? google_pubsub_topic.graph_renew_trigger[0].name : null
}

output "graph_notifications_topic" {
  description = "Topic downstream apps subscribe to: change notifications (attributes subscriptionId, changeType, tenantId) and resync events (attribute lifecycleEvent)."
  value       = local.deploy.graph ? google_pubsub_topic.graph_notifications[0].name : null
}

output "graph_secrets" {
  description = "Secrets to fill before the first run: tenant id, app (client) id, client secret, and a random clientState of at most 128 characters."
  value       = { for k, s in google_secret_manager_secret.graph : k => s.secret_id }
}
