# Universign e-signature status, two functions from one folder:
#   Universign -> universign_webhook (public HTTPS, signed JWS) -> universign-status-changes
#   Cloud Scheduler (every 5 min) -> universign-poll-trigger -> universign_poll -> same topic
# Both read GET /v1/transactions/{id} with the API key, keep one JSON document per transaction
# in their own state bucket and archive signed documents to the archive bucket.
# The API key secret is created empty; add its value out of band (deploy.sh asks for it).

locals {
  universign_state_bucket   = var.universign_state_bucket_name != "" ? var.universign_state_bucket_name : "${var.project_id}-universign-state"
  universign_archive_bucket = var.universign_archive_bucket_name != "" ? var.universign_archive_bucket_name : "${var.project_id}-universign-archive"
  universign_secrets = !local.deploy.universign ? {} : merge(
    { api_key = "universign-api-key" },
    var.universign_webhook_token_enabled ? { webhook_token = "universign-webhook-token" } : {},
  )
  # The webhook may check a URL token; the poll never needs it.
  universign_webhook_secrets = keys(local.universign_secrets)
  universign_poll_secrets    = local.deploy.universign ? ["api_key"] : []
  universign_identities = !local.deploy.universign ? {} : {
    webhook = google_service_account.universign_webhook[0].email
    poll    = google_service_account.universign_poll[0].email
  }
  universign_environment = !local.deploy.universign ? {} : {
    GOOGLE_CLOUD_PROJECT             = var.project_id
    STATE_BUCKET                     = google_storage_bucket.universign_state[0].name
    ARCHIVE_BUCKET                   = google_storage_bucket.universign_archive[0].name
    UNIVERSIGN_API_URL               = var.universign_api_url
    UNIVERSIGN_API_KEY_SECRET        = google_secret_manager_secret.universign["api_key"].secret_id
    UNIVERSIGN_STATUS_TOPIC          = google_pubsub_topic.universign_status_changes[0].name
    UNIVERSIGN_FINAL_RECHECK_MINUTES = tostring(var.universign_final_recheck_minutes)
    UNIVERSIGN_REFUSAL_STATES        = var.universign_refusal_states
    # Empty: status-change events carry no external_status.
    UNIVERSIGN_EXTERNAL_STATUS_MAP = length(var.universign_external_status_map) == 0 ? "" : jsonencode(var.universign_external_status_map)
  }
}

resource "google_secret_manager_secret" "universign" {
  for_each  = local.universign_secrets
  secret_id = each.value
  labels    = { integration = "universign" }

  replication {
    auto {}
  }

  depends_on = [time_sleep.apis_ready]
}

# --- storage ---------------------------------------------------------------------------

# Its own bucket (not the shared state bucket) so its lifecycle can drop old webhook event
# markers, and so both identities can be given the whole bucket rather than a prefix.
resource "google_storage_bucket" "universign_state" {
  count = local.deploy.universign ? 1 : 0
  #checkov:skip=CKV_GCP_62:Transaction documents carry their own sync history; Cloud Audit Logs cover data access when enabled.
  #checkov:skip=CKV_GCP_78:Documents are rewritten on every sync under generation preconditions; old versions would only add cost (the history lives in each document).
  name                        = local.universign_state_bucket
  location                    = var.region
  force_destroy               = var.force_destroy_buckets
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  # Event markers only deduplicate redeliveries (Universign retries for about 3 days); a
  # replay after this just triggers one harmless re-sync.
  lifecycle_rule {
    condition {
      age            = var.universign_event_marker_days
      matches_prefix = ["universign/events/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_storage_bucket" "universign_archive" {
  count = local.deploy.universign ? 1 : 0
  #checkov:skip=CKV_GCP_62:Access to signed documents is audited with Cloud Audit Logs (data access) when the integrator enables them.
  name                        = local.universign_archive_bucket
  location                    = var.region
  force_destroy               = var.force_destroy_buckets
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  dynamic "retention_policy" {
    for_each = var.universign_archive_retention_days > 0 ? [1] : []
    content {
      retention_period = var.universign_archive_retention_days * 86400
    }
  }

  depends_on = [time_sleep.apis_ready]
}

# Both functions sync transactions: read and write documents, markers and the poll cursor.
resource "google_storage_bucket_iam_member" "universign_state" {
  for_each = local.universign_identities
  bucket   = google_storage_bucket.universign_state[0].name
  role     = "roles/storage.objectUser"
  member   = "serviceAccount:${each.value}"
}

# Create and read, never overwrite or delete: a signed document is archived once, and the
# functions could not replace it even by mistake.
resource "google_storage_bucket_iam_member" "universign_archive_create" {
  for_each = local.universign_identities
  bucket   = google_storage_bucket.universign_archive[0].name
  role     = "roles/storage.objectCreator"
  member   = "serviceAccount:${each.value}"
}

resource "google_storage_bucket_iam_member" "universign_archive_read" {
  for_each = local.universign_identities
  bucket   = google_storage_bucket.universign_archive[0].name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${each.value}"
}

# --- topics and schedule -----------------------------------------------------------------

resource "google_pubsub_topic" "universign_poll_trigger" {
  count = local.deploy.universign ? 1 : 0
  #checkov:skip=CKV_GCP_83:Messages are bare run triggers ({}) with no data worth a customer-managed key.
  name                       = "universign-poll-trigger"
  message_retention_duration = "86400s"
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "universign_status_changes" {
  count = local.deploy.universign ? 1 : 0
  #checkov:skip=CKV_GCP_83:Messages carry a transaction id and statuses, no document content; a customer-managed key can be added by the integrator.
  name                       = "universign-status-changes"
  message_retention_duration = var.universign_status_retention
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_cloud_scheduler_job" "universign_poll" {
  count       = local.deploy.universign ? 1 : 0
  name        = "universign-poll-job"
  description = "Sync pending Universign transactions (at most universign_poll_batch per run)"
  region      = var.region
  schedule    = var.universign_poll_schedule
  time_zone   = var.universign_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.universign_poll_trigger[0].id
    data       = base64encode("{}")
  }
}

# --- identities ----------------------------------------------------------------------------

resource "google_service_account" "universign_webhook" {
  count        = local.deploy.universign ? 1 : 0
  account_id   = "universign-webhook"
  display_name = "universign_webhook function"
  depends_on   = [time_sleep.apis_ready]
}

resource "google_service_account" "universign_poll" {
  count        = local.deploy.universign ? 1 : 0
  account_id   = "universign-poll"
  display_name = "universign_poll function"
  depends_on   = [time_sleep.apis_ready]
}

resource "google_secret_manager_secret_iam_member" "universign_webhook_read" {
  for_each  = toset(local.universign_webhook_secrets)
  secret_id = google_secret_manager_secret.universign[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.universign_webhook[0].email}"
}

resource "google_secret_manager_secret_iam_member" "universign_poll_read" {
  for_each  = toset(local.universign_poll_secrets)
  secret_id = google_secret_manager_secret.universign[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.universign_poll[0].email}"
}

resource "google_pubsub_topic_iam_member" "universign_publish_status" {
  for_each = local.universign_identities
  topic    = google_pubsub_topic.universign_status_changes[0].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${each.value}"
}

# --- functions -------------------------------------------------------------------------------

module "universign_webhook" {
  count = local.deploy.universign ? 1 : 0
  #checkov:skip=CKV_GCP_102:Universign delivers webhooks without Google credentials; every request must carry a valid JWS signature (and optionally a URL token).
  source = "./modules/function"

  project                     = var.project_id
  region                      = var.region
  name                        = "universign-webhook"
  description                 = "Receives signed Universign webhooks and syncs the transaction"
  entry_point                 = "universign_webhook"
  source_dir                  = "${local.functions_dir}/universign_webhook"
  shared_dir                  = local.shared_dir
  source_bucket               = google_storage_bucket.sources.name
  service_account_email       = google_service_account.universign_webhook[0].email
  build_service_account_email = local.build_service_account_email
  trigger_topic               = null
  public                      = true # Universign posts from the internet
  max_instances               = var.universign_webhook_max_instances
  timeout_seconds             = 60
  memory                      = "256M"
  labels                      = var.labels

  environment = merge(
    local.universign_environment,
    {
      UNIVERSIGN_SIGNATURE_HEADER = var.universign_signature_header
      WEBHOOK_DEADLINE_SECONDS    = "20"
    },
    # Only with the option on does the function demand ?token= (and read the secret).
    var.universign_webhook_token_enabled ? {
      UNIVERSIGN_WEBHOOK_TOKEN_SECRET = google_secret_manager_secret.universign["webhook_token"].secret_id
    } : {},
  )

  depends_on = [
    google_secret_manager_secret_iam_member.universign_webhook_read,
    google_pubsub_topic_iam_member.universign_publish_status,
    google_storage_bucket_iam_member.universign_state,
  ]
}

# With the URL token on, Universign calls .../universign-webhook?token=SECRET and Cloud Run
# would write that URL into every request log (httpRequest.requestUrl), readable by anyone who
# can read logs. The service's request logs are dropped instead; the function's own
# webhook_request line keeps each request's status, reason and duration, without the URL.
resource "google_logging_project_exclusion" "universign_request_urls" {
  count       = local.deploy.universign && var.universign_webhook_token_enabled ? 1 : 0
  name        = "keepalive-universign-webhook-request-urls"
  description = "Cloud Run request logs of universign-webhook carry its ?token= URL secret."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${module.universign_webhook[0].function_name}\" AND logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Frequests\""
}

module "universign_poll" {
  count  = local.deploy.universign ? 1 : 0
  source = "./modules/function"

  project                       = var.project_id
  region                        = var.region
  name                          = "universign-poll"
  description                   = "Polls pending Universign transactions every 5 minutes"
  entry_point                   = "universign_poll"
  source_dir                    = "${local.functions_dir}/universign_webhook"
  shared_dir                    = local.shared_dir
  source_bucket                 = google_storage_bucket.sources.name
  service_account_email         = google_service_account.universign_poll[0].email
  build_service_account_email   = local.build_service_account_email
  trigger_topic                 = google_pubsub_topic.universign_poll_trigger[0].name
  trigger_service_account_email = google_service_account.invoker.email
  # A failed run is not redelivered: the next one starts 5 minutes later from the same index.
  retry           = false
  max_instances   = 1
  timeout_seconds = 300
  memory          = "256M"
  labels          = var.labels

  environment = merge(local.universign_environment, {
    UNIVERSIGN_POLL_BATCH = tostring(var.universign_poll_batch)
    RUN_DEADLINE_SECONDS  = "240"
  })

  depends_on = [
    google_secret_manager_secret_iam_member.universign_poll_read,
    google_pubsub_topic_iam_member.universign_publish_status,
    google_storage_bucket_iam_member.universign_state,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}
