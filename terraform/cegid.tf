# Cegid Data Access, two functions from one folder (functions/cegid_transfer):
#   Cloud Scheduler (hourly) -> cegid-transfer-trigger -> cegid_transfer
#     -> Cegid API (token, SAS) -> Azure Blob container -> export bucket (cegid/<blob name>)
#     -> bucket notification -> cegid-files (importers such as Odoo subscribe here)
#   cegid-queries ({"action": "force", ...}) -> cegid_queries -> Cegid API (schedulers)
# The secrets are created empty; their values are added out of band.

locals {
  cegid_bucket         = var.cegid_bucket_name != "" ? var.cegid_bucket_name : "${var.project_id}-cegid-exports"
  cegid_staging_prefix = "_cegid-staging/"
  cegid_prefix         = "cegid/"
  cegid_api_secrets = local.deploy.cegid ? {
    key_id           = "cegid-api-key-id"
    key_secret       = "cegid-api-key-secret"
    subscription_key = "cegid-subscription-key"
  } : {}
  cegid_secrets = merge(local.cegid_api_secrets, local.deploy.cegid ? { sas_url = "cegid-sas-url" } : {})
  # Only read where cegid is deployed (the two module calls); empty otherwise.
  cegid_api_environment = !local.deploy.cegid ? {} : {
    GOOGLE_CLOUD_PROJECT          = var.project_id
    CEGID_API_URL                 = var.cegid_api_url
    CEGID_TENANT_ID               = var.cegid_tenant_id
    CEGID_PROVIDER_ID             = var.cegid_provider_id
    CEGID_SAS_PATH                = var.cegid_sas_path
    CEGID_API_KEY_ID_SECRET       = google_secret_manager_secret.cegid["key_id"].secret_id
    CEGID_API_KEY_SECRET_SECRET   = google_secret_manager_secret.cegid["key_secret"].secret_id
    CEGID_SUBSCRIPTION_KEY_SECRET = google_secret_manager_secret.cegid["subscription_key"].secret_id
    CEGID_SAS_URL_SECRET          = google_secret_manager_secret.cegid["sas_url"].secret_id
    CEGID_BUCKET                  = google_storage_bucket.cegid[0].name
    STATE_BUCKET                  = google_storage_bucket.state.name
  }
}

resource "google_secret_manager_secret" "cegid" {
  for_each  = local.cegid_secrets
  secret_id = each.value
  labels    = { integration = "cegid" }

  replication {
    auto {}
  }

  depends_on = [time_sleep.apis_ready]
}

# --- where the exports land ----------------------------------------------------------------

resource "google_storage_bucket" "cegid" {
  count = local.deploy.cegid ? 1 : 0
  #checkov:skip=CKV_GCP_62:Usage logs of a single-writer export drop add cost without audit value; Cloud Audit Logs cover data access when enabled.
  name                        = local.cegid_bucket
  location                    = var.region
  force_destroy               = var.force_destroy_buckets
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = merge(var.labels, { integration = "cegid" })

  versioning {
    enabled = true
  }

  # Staging objects of crashed runs (the next run deletes them too).
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = [local.cegid_staging_prefix]
    }
    action {
      type = "Delete"
    }
  }

  # Deleted or replaced generations (staging objects, files importers removed) are kept
  # for recovery this many days, then go.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.cegid_noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "cegid_trigger" {
  count = local.deploy.cegid ? 1 : 0
  #checkov:skip=CKV_GCP_83:Messages are bare run triggers ({}) with no data worth a customer-managed key.
  name                       = "cegid-transfer-trigger"
  message_retention_duration = "86400s"
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "cegid_files" {
  count = local.deploy.cegid ? 1 : 0
  #checkov:skip=CKV_GCP_83:Notifications carry object names and metadata, not file contents; a customer-managed key can be added by the integrator.
  name                       = "cegid-files"
  message_retention_duration = "604800s"
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "cegid_queries" {
  count = local.deploy.cegid ? 1 : 0
  #checkov:skip=CKV_GCP_83:Force requests carry a query name and a time only.
  name                       = "cegid-queries"
  message_retention_duration = "86400s"
  depends_on                 = [time_sleep.apis_ready]
}

# Cloud Storage publishes notifications as its project service agent.
data "google_storage_project_service_account" "gcs" {
  depends_on = [time_sleep.apis_ready]
}

resource "google_pubsub_topic_iam_member" "cegid_files_gcs_publisher" {
  count  = local.deploy.cegid ? 1 : 0
  topic  = google_pubsub_topic.cegid_files[0].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# One message per landed file (finalize under cegid/ only: staging objects stay silent).
resource "google_storage_notification" "cegid_files" {
  count              = local.deploy.cegid ? 1 : 0
  bucket             = google_storage_bucket.cegid[0].name
  topic              = google_pubsub_topic.cegid_files[0].id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = local.cegid_prefix
  depends_on         = [google_pubsub_topic_iam_member.cegid_files_gcs_publisher]
}

resource "google_cloud_scheduler_job" "cegid" {
  count       = local.deploy.cegid ? 1 : 0
  name        = "cegid-transfer-job"
  description = "Move Cegid Data Access exports from Azure Blob Storage to ${local.cegid_bucket}"
  region      = var.region
  schedule    = var.cegid_schedule
  time_zone   = var.cegid_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.cegid_trigger[0].id
    data       = base64encode("{}")
  }
}

# --- the transfer function -------------------------------------------------------------------

resource "google_service_account" "cegid_transfer" {
  count        = local.deploy.cegid ? 1 : 0
  account_id   = "cegid-transfer"
  display_name = "cegid_transfer function"
  depends_on   = [time_sleep.apis_ready]
}

resource "google_secret_manager_secret_iam_member" "cegid_transfer_read" {
  for_each  = local.cegid_secrets
  secret_id = google_secret_manager_secret.cegid[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.cegid_transfer[0].email}"
}

# Create, read, copy, list and delete objects in the export bucket, no other bucket.
resource "google_storage_bucket_iam_member" "cegid_transfer_objects" {
  count  = local.deploy.cegid ? 1 : 0
  bucket = google_storage_bucket.cegid[0].name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.cegid_transfer[0].email}"
}

# The run lock and the last successful transfer (read by python -m cli status): objects under
# locks/cegid- and status/cegid- in the state bucket, nothing else.
resource "google_storage_bucket_iam_member" "cegid_transfer_lock" {
  count  = local.deploy.cegid ? 1 : 0
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.cegid_transfer[0].email}"

  condition {
    title      = "cegid-locks-and-status-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/locks/cegid-\") || resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/status/cegid-\")"
  }
}

module "cegid_transfer" {
  source = "./modules/function"
  count  = local.deploy.cegid ? 1 : 0

  project                       = var.project_id
  region                        = var.region
  name                          = "cegid-transfer"
  description                   = "Moves Cegid Data Access exports from Azure Blob Storage to Cloud Storage"
  entry_point                   = "cegid_transfer"
  source_dir                    = "${local.functions_dir}/cegid_transfer"
  shared_dir                    = local.shared_dir
  source_bucket                 = google_storage_bucket.sources.name
  service_account_email         = google_service_account.cegid_transfer[0].email
  build_service_account_email   = local.build_service_account_email
  trigger_topic                 = google_pubsub_topic.cegid_trigger[0].name
  trigger_service_account_email = google_service_account.invoker.email
  retry                         = true
  max_instances                 = 1
  timeout_seconds               = var.cegid_timeout_seconds
  memory                        = var.cegid_memory
  labels                        = var.labels

  environment = merge(local.cegid_api_environment, {
    CEGID_MODE           = var.cegid_mode
    CEGID_PREFIX         = local.cegid_prefix
    CEGID_STAGING_PREFIX = local.cegid_staging_prefix
    # Stop starting new files a minute before the platform stops the run.
    RUN_DEADLINE_SECONDS = tostring(var.cegid_timeout_seconds - 60)
    # The lock outlives any run, so a live run never loses it.
    LOCK_LEASE_SECONDS = tostring(var.cegid_timeout_seconds + 60)
  })

  depends_on = [
    google_secret_manager_secret_iam_member.cegid_transfer_read,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# --- the force-request function ---------------------------------------------------------------

resource "google_service_account" "cegid_queries" {
  count        = local.deploy.cegid ? 1 : 0
  account_id   = "cegid-queries"
  display_name = "cegid_queries function"
  depends_on   = [time_sleep.apis_ready]
}

resource "google_secret_manager_secret_iam_member" "cegid_queries_read" {
  for_each  = local.cegid_api_secrets
  secret_id = google_secret_manager_secret.cegid[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.cegid_queries[0].email}"
}

module "cegid_queries" {
  source = "./modules/function"
  count  = local.deploy.cegid ? 1 : 0

  project                       = var.project_id
  region                        = var.region
  name                          = "cegid-queries"
  description                   = "Forces the next run of Cegid Data Access scheduled queries"
  entry_point                   = "cegid_queries"
  source_dir                    = "${local.functions_dir}/cegid_transfer"
  shared_dir                    = local.shared_dir
  source_bucket                 = google_storage_bucket.sources.name
  service_account_email         = google_service_account.cegid_queries[0].email
  build_service_account_email   = local.build_service_account_email
  trigger_topic                 = google_pubsub_topic.cegid_queries[0].name
  trigger_service_account_email = google_service_account.invoker.email
  retry                         = true
  max_instances                 = 1
  timeout_seconds               = 60
  memory                        = "256M"
  labels                        = var.labels

  # The module reads CEGID_BUCKET and STATE_BUCKET at import like the transfer; this
  # function has no access to either and never touches them.
  environment = merge(local.cegid_api_environment, {
    CEGID_FORCE_TIME = var.cegid_force_time
  })

  depends_on = [
    google_secret_manager_secret_iam_member.cegid_queries_read,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}
