output "state_bucket" {
  description = "Bucket holding locks and integration state."
  value       = google_storage_bucket.state.name
}

output "source_bucket" {
  description = "Bucket holding function deploy archives."
  value       = google_storage_bucket.sources.name
}

output "b24_trigger_topic" {
  description = "Topic that triggers the Bitrix24 refresh ({} or {\"force\": true})."
  value       = local.deploy.bitrix24 ? google_pubsub_topic.b24_trigger[0].name : null
}

output "b24_scheduler_job" {
  description = "Run it now: gcloud scheduler jobs run <this> --location <region>."
  value       = local.deploy.bitrix24 ? google_cloud_scheduler_job.b24[0].name : null
}

output "b24_function" {
  description = "Name of the Bitrix24 refresh function."
  value       = local.deploy.bitrix24 ? module.b24_token_refresh[0].function_name : null
}
