# One gen2 Cloud Function built from its folder plus shared/, named by content hash so any
# change to either redeploys, and nothing but `terraform apply` is needed to ship it.

locals {
  # Only what runs ships: no bytecode or tool caches, no tests, no local environment files
  # (they may hold secrets), no editor or OS litter.
  skip = join("|", [
    "(^|/)(__pycache__|\\.pytest_cache|\\.mypy_cache|\\.ruff_cache|\\.venv|venv|tests?|\\.idea|\\.vscode|\\.git)(/|$)",
    "\\.py[cod]$",
    "(^|/)\\.env[^/]*$",
    "(^|/)(test_[^/]*|[^/]*_test|conftest)\\.py$",
    "(^|/)(\\.DS_Store|Thumbs\\.db|\\.#[^/]*|#[^/]*#)$",
    "(~|\\.sw[a-p]|\\.bak|\\.orig|\\.tmp)$",
  ])
  function_files = {
    for f in fileset(var.source_dir, "**") : f => "${var.source_dir}/${f}" if !can(regex(local.skip, f))
  }
  shared_files = {
    for f in fileset(var.shared_dir, "**") : "shared/${f}" => "${var.shared_dir}/${f}" if !can(regex(local.skip, f))
  }
  candidate_files = merge(local.function_files, local.shared_files)
  # archive_file packs file contents as text: a file that is not UTF-8 (an image, a compiled
  # library) is left out and named by the check below, instead of failing the whole plan.
  archive_files = { for name, path in local.candidate_files : name => path if can(file(path)) }
  binary_files  = sort([for name, path in local.candidate_files : name if !can(file(path))])
  # Known at plan (a name, not a resource id), so the trigger's count never waits for apply.
  pubsub_triggered = var.trigger_topic != null
}

check "archive_holds_every_file" {
  assert {
    condition     = length(local.binary_files) == 0
    error_message = "${var.name}: not packed, because they are not UTF-8 text: ${join(", ", local.binary_files)}. Load such data from Cloud Storage at run time."
  }
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
    runtime         = "python312"
    entry_point     = var.entry_point
    service_account = "projects/${var.project}/serviceAccounts/${var.build_service_account_email}"
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
    for_each = local.pubsub_triggered ? [var.trigger_topic] : []
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = "projects/${var.project}/topics/${event_trigger.value}"
      retry_policy          = var.retry ? "RETRY_POLICY_RETRY" : "RETRY_POLICY_DO_NOT_RETRY"
      service_account_email = var.trigger_service_account_email
    }
  }
}

# Gen2 functions run on Cloud Run: invoking one is the Cloud Run invoker role on its service.
resource "google_cloud_run_service_iam_member" "trigger_invoker" {
  count    = local.pubsub_triggered ? 1 : 0
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

# Keyed by names known at plan: the emails are often of accounts created in the same apply.
resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = var.invokers
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${each.value}"
}
