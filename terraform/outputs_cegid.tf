output "cegid_bucket" {
  description = "Bucket where Cegid exports land, under cegid/."
  value       = google_storage_bucket.cegid.name
}

output "cegid_files_topic" {
  description = "Topic announcing each landed export (JSON_API_V1 object notifications); subscribe importers here."
  value       = google_pubsub_topic.cegid_files.name
}

output "cegid_trigger_topic" {
  description = "Topic that triggers a transfer run ({})."
  value       = google_pubsub_topic.cegid_trigger.name
}

output "cegid_queries_topic" {
  description = "Publish {\"action\": \"force\", \"name\": \"ECRITURE\", \"time\": \"14:30\"} here to force scheduled queries."
  value       = google_pubsub_topic.cegid_queries.name
}

output "cegid_scheduler_job" {
  description = "Run a transfer now: gcloud scheduler jobs run <this> --location <region>."
  value       = google_cloud_scheduler_job.cegid.name
}

output "cegid_functions" {
  description = "Names of the transfer and force-request functions."
  value       = [module.cegid_transfer.function_name, module.cegid_queries.function_name]
}
