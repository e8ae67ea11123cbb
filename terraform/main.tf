# What every integration shares: the buckets for deploy archives and state, the identity
# Eventarc uses to invoke functions, and a role for writing secret annotations (status).

locals {
  all_integrations = ["bitrix24", "hubspot", "graph", "cegid", "universign"]
  # Which integrations this deployment holds: every integration's resources are counted by it.
  deploy = { for name in local.all_integrations : name => contains(var.integrations, name) }

  state_bucket  = var.state_bucket_name != "" ? var.state_bucket_name : "${var.project_id}-keepalive-state"
  source_bucket = var.source_bucket_name != "" ? var.source_bucket_name : "${var.project_id}-keepalive-sources"
  functions_dir = "${path.module}/../functions"
  shared_dir    = "${path.module}/../shared"
}

# Read after the APIs are on: on a new project the first plan reads it during apply.
data "google_project" "this" {
  depends_on = [time_sleep.apis_ready]
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Deploy archives are rebuilt from git; access logs would add cost without audit value.
  name                        = local.source_bucket
  location                    = var.region
  force_destroy               = var.force_destroy_buckets
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 3
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_storage_bucket" "state" {
  #checkov:skip=CKV_GCP_62:Holds short-lived lock objects and state documents; Cloud Audit Logs cover data access when enabled.
  name                        = local.state_bucket
  location                    = var.region
  force_destroy               = var.force_destroy_buckets
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  # Lock objects churn; their old generations are worthless after a day.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_service_account" "invoker" {
  account_id   = "keepalive-invoker"
  display_name = "Invokes the keep-alive functions for Eventarc Pub/Sub triggers"
  depends_on   = [time_sleep.apis_ready]
}

# Pub/Sub signs the push requests of Eventarc triggers with an OIDC token of the invoker,
# minted by its service agent. Agents created before April 2021 lack this permission, and
# those triggers then fail without a word; granted on the invoker only, not the project.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# Status lives in secret annotations; no predefined role grants secrets.update without also
# granting access to every secret's data, so this role has just the two permissions.
resource "google_project_iam_custom_role" "secret_annotator" {
  role_id     = "keepaliveSecretAnnotator"
  title       = "Keep-alive secret annotator"
  description = "Read a secret's metadata and update its annotations (credential status)."
  permissions = ["secretmanager.secrets.get", "secretmanager.secrets.update"]
  depends_on  = [time_sleep.apis_ready]
}
