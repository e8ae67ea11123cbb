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
  value       = google_pubsub_topic.b24_trigger.name
}

output "b24_scheduler_job" {
  description = "Run it now: gcloud scheduler jobs run <this> --location <region>."
  value       = google_cloud_scheduler_job.b24.name
}

output "b24_function" {
  description = "Name of the Bitrix24 refresh function."
  value       = module.b24_token_refresh.function_name
}
