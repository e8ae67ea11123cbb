output "cegid_bucket" {
  description = "Bucket where Cegid exports land, under cegid/."
  value       = local.deploy.cegid ? google_storage_bucket.cegid[0].name : null
}

output "cegid_files_topic" {
  description = "Topic announcing each landed export (JSON_API_V1 object notifications); subscribe importers here."
  value       = local.deploy.cegid ? google_pubsub_topic.cegid_files[0].name : null
}

output "cegid_trigger_topic" {
  description = "Topic that triggers a transfer run ({})."
  value       = local.deploy.cegid ? google_pubsub_topic.cegid_trigger[0].name : null
}

output "cegid_queries_topic" {
  description = "Publish {\"action\": \"force\", \"name\": \"ECRITURE\", \"time\": \"14:30\"} here to force scheduled queries."
  value       = local.deploy.cegid ? google_pubsub_topic.cegid_queries[0].name : null
}

output "cegid_scheduler_job" {
  description = "Run a transfer now: gcloud scheduler jobs run <this> --location <region>."
  value       = local.deploy.cegid ? google_cloud_scheduler_job.cegid[0].name : null
}

output "cegid_functions" {
  description = "Names of the transfer and force-request functions."
  value       = local.deploy.cegid ? [module.cegid_transfer[0].function_name, module.cegid_queries[0].function_name] : []
}
