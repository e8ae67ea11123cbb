output "function_name" {
  description = "Name of the deployed function."
  value       = google_cloudfunctions2_function.this.name
}

output "function_uri" {
  description = "HTTPS URL of the function (the webhook endpoint for HTTP functions)."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}

output "source_object" {
  description = "Deploy archive object, named by the MD5 of its content."
  value       = google_storage_bucket_object.source.name
}

output "timeout_seconds" {
  description = "Maximum run time of one invocation (monitoring alerts on runs close to it)."
  value       = var.timeout_seconds
}
