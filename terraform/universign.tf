# Universign e-signature status, three functions from one folder:
#   Universign -> universign_webhook (public HTTPS, signed JWS; answers 202 once queued)
#     -> universign-sync (work topic) -> universign-sync-push (push subscription, OIDC)
#        -> universign_sync -> universign-status-changes
#        (retried with backoff; after universign_sync_max_delivery_attempts: universign-sync-dead-letter)
#   Cloud Scheduler (every 5 min) -> universign-poll-trigger -> universign_poll -> same topic
# The worker and the poll read GET /v1/transactions/{id} with the API key, keep one JSON
# document per transaction in their own state bucket and archive signed documents to the
# archive bucket.
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
  universign_sync_secrets    = local.deploy.universign ? ["api_key"] : []
  universign_identities = !local.deploy.universign ? {} : {
    webhook = google_service_account.universign_webhook[0].email
    poll    = google_service_account.universign_poll[0].email
    sync    = google_service_account.universign_sync[0].email
  }
  universign_environment = !local.deploy.universign ? {} : {
    GOOGLE_CLOUD_PROJECT             = var.project_id
    STATE_BUCKET                     = google_storage_bucket.universign_state[0].name
    ARCHIVE_BUCKET                   = google_storage_bucket.universign_archive[0].name
    UNIVERSIGN_API_URL               = var.universign_api_url
    UNIVERSIGN_API_KEY_SECRET        = google_secret_manager_secret.universign["api_key"].secret_id
    UNIVERSIGN_STATUS_TOPIC          = google_pubsub_topic.universign_status_changes[0].name
    UNIVERSIGN_SYNC_TOPIC            = google_pubsub_topic.universign_sync[0].name
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

# The webhook's verified events, waiting for universign_sync. Kept as long as Pub/Sub allows
# a subscription to keep them, so a worker that fails for days (a refused API key) loses
# nothing: redelivered with backoff, then moved to the dead-letter topic below.
resource "google_pubsub_topic" "universign_sync" {
  count = local.deploy.universign ? 1 : 0
  #checkov:skip=CKV_GCP_83:Messages carry event and transaction ids, no document content; a customer-managed key can be added by the integrator.
  name                       = "universign-sync"
  message_retention_duration = var.universign_sync_retention
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "universign_sync_dead_letter" {
  count = local.deploy.universign ? 1 : 0
  #checkov:skip=CKV_GCP_83:Holds copies of universign-sync messages (event and transaction ids only).
  name                       = "universign-sync-dead-letter"
  message_retention_duration = var.consumer_dead_letter_retention
  labels                     = var.labels
  depends_on                 = [time_sleep.apis_ready]
}

# A topic keeps nothing without a subscription: this one holds the dead letters to read or
# replay (docs/runbooks/universign-sync-dead-letters.md).
resource "google_pubsub_subscription" "universign_sync_dead_letter" {
  count                      = local.deploy.universign ? 1 : 0
  name                       = "universign-sync-dead-letter"
  topic                      = google_pubsub_topic.universign_sync_dead_letter[0].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.consumer_dead_letter_retention
  labels                     = var.labels

  expiration_policy {
    ttl = "" # never deleted for inactivity: it is read only when something went wrong
  }
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish here and acknowledge on
# universign-sync-push, or failing messages are retried until retention drops them instead.
resource "google_pubsub_topic_iam_member" "universign_sync_dead_letter_publish" {
  count  = local.deploy.universign ? 1 : 0
  topic  = google_pubsub_topic.universign_sync_dead_letter[0].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

# Only the webhook publishes work.
resource "google_pubsub_topic_iam_member" "universign_publish_sync" {
  count  = local.deploy.universign ? 1 : 0
  topic  = google_pubsub_topic.universign_sync[0].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.universign_webhook[0].email}"
}

# The worker's delivery, owned here rather than by an Eventarc trigger so that its backoff,
# dead-letter policy and retention are set by `terraform apply` alone (the provider cannot
# configure the subscription Eventarc creates). functions-framework turns the pushed body into
# the same CloudEvent an Eventarc trigger delivers.
resource "google_pubsub_subscription" "universign_sync_push" {
  count = local.deploy.universign ? 1 : 0
  name  = "universign-sync-push"
  topic = google_pubsub_topic.universign_sync[0].id
  # Not acknowledged until the worker answers: never redelivered while it still runs.
  ack_deadline_seconds       = module.universign_sync[0].timeout_seconds
  message_retention_duration = var.universign_sync_retention
  labels                     = var.labels

  push_config {
    push_endpoint = module.universign_sync[0].function_uri
    oidc_token {
      service_account_email = google_service_account.universign_sync_push[0].email
      audience              = module.universign_sync[0].function_uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.universign_sync_dead_letter[0].id
    max_delivery_attempts = var.universign_sync_max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # a quiet month without webhooks must not delete the worker's delivery
  }

  depends_on = [
    google_service_account_iam_member.universign_sync_push_token_creator,
    google_pubsub_topic_iam_member.universign_sync_dead_letter_publish,
  ]
}

resource "google_pubsub_subscription_iam_member" "universign_sync_dead_letter_ack" {
  count        = local.deploy.universign ? 1 : 0
  subscription = google_pubsub_subscription.universign_sync_push[0].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
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

resource "google_service_account" "universign_sync" {
  count        = local.deploy.universign ? 1 : 0
  account_id   = "universign-sync"
  display_name = "universign_sync function"
  depends_on   = [time_sleep.apis_ready]
}

# The identity of universign-sync-push's OIDC token: it may invoke universign_sync and nothing
# else (the function is private, reachable from inside Google only).
resource "google_service_account" "universign_sync_push" {
  count        = local.deploy.universign ? 1 : 0
  account_id   = "universign-sync-push"
  display_name = "Signs Pub/Sub push requests from universign-sync to universign_sync"
  depends_on   = [time_sleep.apis_ready]
}

# Pub/Sub mints the push token; agents created before April 2021 lack this (see main.tf).
resource "google_service_account_iam_member" "universign_sync_push_token_creator" {
  count              = local.deploy.universign ? 1 : 0
  service_account_id = google_service_account.universign_sync_push[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_secret_manager_secret_iam_member" "universign_sync_read" {
  for_each  = toset(local.universign_sync_secrets)
  secret_id = google_secret_manager_secret.universign[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.universign_sync[0].email}"
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
  description                 = "Receives signed Universign webhooks and queues them on universign-sync"
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
    google_pubsub_topic_iam_member.universign_publish_sync,
    google_storage_bucket_iam_member.universign_state,
  ]
}

module "universign_sync" {
  count  = local.deploy.universign ? 1 : 0
  source = "./modules/function"

  project                     = var.project_id
  region                      = var.region
  name                        = "universign-sync"
  description                 = "Syncs the transaction of each queued Universign webhook event"
  entry_point                 = "universign_sync"
  source_dir                  = "${local.functions_dir}/universign_webhook"
  shared_dir                  = local.shared_dir
  source_bucket               = google_storage_bucket.sources.name
  service_account_email       = google_service_account.universign_sync[0].email
  build_service_account_email = local.build_service_account_email
  # No Eventarc trigger: universign-sync-push (above) delivers to its URL. A failure the worker
  # can recover from raises (an HTTP 500): Pub/Sub redelivers with backoff, and after
  # universign_sync_max_delivery_attempts the message goes to universign-sync-dead-letter.
  trigger_topic   = null
  invokers        = { push = google_service_account.universign_sync_push[0].email }
  max_instances   = var.universign_sync_max_instances
  timeout_seconds = 120
  memory          = "256M"
  labels          = var.labels

  environment = merge(local.universign_environment, {
    RUN_DEADLINE_SECONDS = "60"
  })

  depends_on = [
    google_secret_manager_secret_iam_member.universign_sync_read,
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
