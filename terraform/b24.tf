# Bitrix24: Cloud Scheduler -> Pub/Sub -> b24_token_refresh -> Bitrix24 -> Secret Manager.
# The secrets are created empty; their values are added out of band (deploy.sh asks for them).

locals {
  b24_secrets = {
    client_id     = "b24-client-id"
    client_secret = "b24-client-secret"
    refresh_token = "b24-refresh-token"
    access_token  = "b24-access-token"
  }
}

resource "google_secret_manager_secret" "b24" {
  for_each  = local.deploy.bitrix24 ? local.b24_secrets : {}
  secret_id = each.value
  labels    = { integration = "bitrix24" }

  replication {
    auto {}
  }

  # The function writes status annotations on the access token; Terraform must not undo them.
  lifecycle {
    ignore_changes = [annotations]
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "b24_trigger" {
  #checkov:skip=CKV_GCP_83:Messages are bare run triggers ({} or {"force": true}) with no data worth a customer-managed key.
  count                      = local.deploy.bitrix24 ? 1 : 0
  name                       = "b24-token-refresh-trigger"
  message_retention_duration = "86400s"
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_cloud_scheduler_job" "b24" {
  count       = local.deploy.bitrix24 ? 1 : 0
  name        = "b24-token-refresh-job"
  description = "Refresh Bitrix24 OAuth tokens before the access token expires"
  region      = var.region
  schedule    = var.b24_schedule
  time_zone   = var.b24_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.b24_trigger[0].id
    data       = base64encode("{}")
  }
}

resource "google_service_account" "b24" {
  count        = local.deploy.bitrix24 ? 1 : 0
  account_id   = "b24-token-refresh"
  display_name = "b24_token_refresh function"
  depends_on   = [time_sleep.apis_ready]
}

# Read the app's client id and secret.
resource "google_secret_manager_secret_iam_member" "b24_read_client" {
  for_each  = toset(local.deploy.bitrix24 ? ["client_id", "client_secret"] : [])
  secret_id = google_secret_manager_secret.b24[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.b24[0].email}"
}

# Read, add and destroy versions of the two token secrets.
resource "google_secret_manager_secret_iam_member" "b24_token_access" {
  for_each  = toset(local.deploy.bitrix24 ? ["refresh_token", "access_token"] : [])
  secret_id = google_secret_manager_secret.b24[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.b24[0].email}"
}

resource "google_secret_manager_secret_iam_member" "b24_token_versions" {
  for_each  = toset(local.deploy.bitrix24 ? ["refresh_token", "access_token"] : [])
  secret_id = google_secret_manager_secret.b24[each.key].id
  role      = "roles/secretmanager.secretVersionManager"
  member    = "serviceAccount:${google_service_account.b24[0].email}"
}

# Record the status (expires-at, state, ...) on the access token secret.
resource "google_secret_manager_secret_iam_member" "b24_annotate" {
  count     = local.deploy.bitrix24 ? 1 : 0
  secret_id = google_secret_manager_secret.b24["access_token"].id
  role      = google_project_iam_custom_role.secret_annotator.id
  member    = "serviceAccount:${google_service_account.b24[0].email}"
}

# The refresh lock: objects under locks/ in the state bucket, nothing else.
resource "google_storage_bucket_iam_member" "b24_locks" {
  count  = local.deploy.bitrix24 ? 1 : 0
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.b24[0].email}"

  condition {
    title      = "b24-locks-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/locks/b24-\")"
  }
}

module "b24_token_refresh" {
  source = "./modules/function"
  count  = local.deploy.bitrix24 ? 1 : 0

  project                       = var.project_id
  region                        = var.region
  name                          = "b24-token-refresh"
  description                   = "Refreshes Bitrix24 OAuth tokens into Secret Manager"
  entry_point                   = "b24_token_refresh"
  source_dir                    = "${local.functions_dir}/b24_token_refresh"
  shared_dir                    = local.shared_dir
  source_bucket                 = google_storage_bucket.sources.name
  service_account_email         = google_service_account.b24[0].email
  build_service_account_email   = local.build_service_account_email
  trigger_topic                 = google_pubsub_topic.b24_trigger[0].name
  trigger_service_account_email = google_service_account.invoker.email
  retry                         = true
  max_instances                 = 1
  timeout_seconds               = 300
  memory                        = "256M"
  labels                        = var.labels

  environment = {
    GOOGLE_CLOUD_PROJECT       = var.project_id
    STATE_BUCKET               = google_storage_bucket.state.name
    B24_OAUTH_URL              = var.b24_oauth_url
    B24_REFRESH_MARGIN_MINUTES = tostring(var.b24_refresh_margin_minutes)
    B24_VERSIONS_TO_KEEP       = tostring(var.b24_versions_to_keep)
    B24_CLIENT_ID_SECRET       = google_secret_manager_secret.b24["client_id"].secret_id
    B24_CLIENT_SECRET_SECRET   = google_secret_manager_secret.b24["client_secret"].secret_id
    B24_REFRESH_TOKEN_SECRET   = google_secret_manager_secret.b24["refresh_token"].secret_id
    B24_ACCESS_TOKEN_SECRET    = google_secret_manager_secret.b24["access_token"].secret_id
    RUN_DEADLINE_SECONDS       = "240"
    LOCK_LEASE_SECONDS         = "600"
  }

  depends_on = [
    google_secret_manager_secret_iam_member.b24_read_client,
    google_secret_manager_secret_iam_member.b24_token_access,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}
