# The identity Cloud Build uses to build every function. New projects may have no usable
# default Cloud Build service account (since 2024 Google no longer grants it broad roles, and
# organisation policies may disable it), so the functions name this one explicitly.

resource "google_service_account" "build" {
  account_id   = "keepalive-build"
  display_name = "Builds the keep-alive functions (Cloud Build)"
  depends_on   = [time_sleep.apis_ready]
}

# What a gen2 function build does: write build logs and push the image to the gcf-artifacts
# repository...
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.build.email}"
}

# ...and read the uploaded source. [U] Cloud Functions stages it in its gcf-v2-sources-*
# bucket; the condition lets the build read that bucket and ours, not the state buckets.
resource "google_project_iam_member" "build_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.build.email}"

  condition {
    title      = "function-sources-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\") || resource.name.startsWith(\"projects/_/buckets/${local.source_bucket}\")"
  }
}

locals {
  # The email as the bindings above name it: referring to them makes every function's build
  # wait until its identity holds all three roles.
  build_service_account_email = one(distinct(concat(
    [for binding in google_project_iam_member.build : trimprefix(binding.member, "serviceAccount:")],
    [trimprefix(google_project_iam_member.build_sources.member, "serviceAccount:")],
  )))
}
