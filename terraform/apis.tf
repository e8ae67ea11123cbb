# The Google APIs every integration needs, enabled by `terraform apply` itself so a new project
# needs nothing done by hand first. They stay enabled on destroy: other workloads of the
# project may use them, and disabling an API can delete what depends on it.

locals {
  required_apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    # Project data (number), project IAM bindings and custom roles go through this API; it is
    # off by default in projects created through the API.
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "required" {
  for_each           = local.required_apis
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# An API answers "not enabled" for a short while after enabling returns. Everything created
# first (service accounts, secrets, topics, buckets, roles, metrics) depends on this wait, and
# everything else refers to those, so the whole first apply runs after it.
resource "time_sleep" "apis_ready" {
  create_duration = "${var.api_propagation_seconds}s"
  triggers        = { apis = join(",", sort(local.required_apis)) }
  depends_on      = [google_project_service.required]
}
