output "hubspot_trigger_topic" {
  description = "Publish {} to refresh due accounts now, {\"force\": true} for all, or {\"force\": true, \"accounts\": [\"<hub id>\"]} for some."
  value       = local.deploy.hubspot ? google_pubsub_topic.hubspot_trigger[0].name : null
}

output "hubspot_work_topic" {
  description = "Topic the scheduled run publishes shards to when hubspot_shard_size > 0 (idle otherwise)."
  value       = local.deploy.hubspot ? google_pubsub_topic.hubspot_work[0].name : null
}

output "hubspot_function_name" {
  description = "The hubspot_refresh function."
  value       = local.deploy.hubspot ? module.hubspot_refresh[0].function_name : null
}

output "hubspot_service_account" {
  description = "Identity of hubspot_refresh (reads and writes only hubspot-* secrets)."
  value       = local.deploy.hubspot ? google_service_account.hubspot[0].email : null
}

output "hubspot_secrets" {
  description = "Secrets to fill before the first run: the default app's client id and secret. Accounts are added with `python -m cli hubspot add-account <hub id>`."
  value       = { for k, s in google_secret_manager_secret.hubspot_client : k => s.secret_id }
}
