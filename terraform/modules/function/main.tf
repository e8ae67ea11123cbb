# One gen2 Cloud Function built from its folder plus shared/, named by content hash so any
# change to either redeploys, and nothing but `terraform apply` is needed to ship it.

locals {
  # Bytecode caches and local build output never belong in an archive.
  skip = "(^|/)(__pycache__|\\.pytest_cache|\\.mypy_cache)(/|$)|\\.pyc$"
  function_files = {
    for f in fileset(var.source_dir, "**") : f => "${var.source_dir}/${f}" if !can(regex(local.skip, f))
  }
  shared_files = {
    for f in fileset(var.shared_dir, "**") : "shared/${f}" => "${var.shared_dir}/${f}" if !can(regex(local.skip, f))
  }
  archive_files = merge(local.function_files, local.shared_files)
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.root}/.build/${var.name}.zip"

  dynamic "source" {
    for_each = local.archive_files
    content {
      filename = source.key
      content  = file(source.value)
    }
  }
}

resource "google_storage_bucket_object" "source" {
  name   = "${var.name}/${data.archive_file.source.output_md5}.zip"
  bucket = var.source_bucket
  source = data.archive_file.source.output_path
}

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:Webhook endpoints must be reachable by the provider; private functions set ALLOW_INTERNAL_ONLY through var.public.
  name        = var.name
  project     = var.project
  location    = var.region
  description = var.description
  labels      = var.labels

  build_config {
    runtime     = "python312"
    entry_point = var.entry_point
    source {
      storage_source {
        bucket = var.source_bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    min_instance_count             = 0
    max_instance_count             = var.max_instances
    available_memory               = var.memory
    timeout_seconds                = var.timeout_seconds
    environment_variables          = var.environment
    service_account_email          = var.service_account_email
    ingress_settings               = var.public ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
  }

  dynamic "event_trigger" {
    for_each = var.trigger_topic == null ? [] : [var.trigger_topic]
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = event_trigger.value
      retry_policy          = var.retry ? "RETRY_POLICY_RETRY" : "RETRY_POLICY_DO_NOT_RETRY"
      service_account_email = var.trigger_service_account_email
    }
  }
}

# Gen2 functions run on Cloud Run: invoking one is the Cloud Run invoker role on its service.
resource "google_cloud_run_service_iam_member" "trigger_invoker" {
  count    = var.trigger_topic == null ? 0 : 1
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.trigger_service_account_email}"
}

resource "google_cloud_run_service_iam_member" "public_invoker" {
  count    = var.public ? 1 : 0
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}
