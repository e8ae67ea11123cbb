# Microsoft Graph change notifications, two functions from one folder:
#   Cloud Scheduler -> graph-webhook-renew-trigger -> graph_webhook_renew -> Graph subscriptions
#   Graph -> graph_webhook_notify (public HTTPS) -> graph-notifications (downstream apps)
#                                                -> graph-webhook-renew-trigger (lifecycle events)
# The secrets are created empty; their values are added out of band (deploy.sh asks for them).

locals {
  graph_secrets = local.deploy.graph ? {
    tenant_id     = "graph-tenant-id"
    client_id     = "graph-client-id"
    client_secret = "graph-client-secret"
    client_state  = "graph-webhook-client-state"
  } : {}
  # The reconciler reads all four; the notify function only the clientState.
  graph_renew_secrets  = local.deploy.graph ? ["tenant_id", "client_id", "client_secret", "client_state"] : []
  graph_notify_secrets = local.deploy.graph ? ["client_state"] : []
}

resource "google_secret_manager_secret" "graph" {
  for_each  = local.graph_secrets
  secret_id = each.value
  labels    = { integration = "graph" }

  replication {
    auto {}
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "graph_renew_trigger" {
  count = local.deploy.graph ? 1 : 0
  #checkov:skip=CKV_GCP_83:Messages are bare run triggers ({} or subscription ids to reauthorise) with no data worth a customer-managed key.
  name                       = "graph-webhook-renew-trigger"
  message_retention_duration = "86400s"
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "graph_notifications" {
  count = local.deploy.graph ? 1 : 0
  #checkov:skip=CKV_GCP_83:Change notifications carry ids only (no resource data); a customer-managed key can be added by the integrator.
  name                       = "graph-notifications"
  message_retention_duration = var.graph_notifications_retention
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_cloud_scheduler_job" "graph_renew" {
  count       = local.deploy.graph ? 1 : 0
  name        = "graph-webhook-renew-job"
  description = "Reconcile Microsoft Graph webhook subscriptions (create, renew, recreate)"
  region      = var.region
  schedule    = var.graph_schedule
  time_zone   = var.graph_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.graph_renew_trigger[0].id
    data       = base64encode("{}")
  }
}

# --- identities ------------------------------------------------------------------------

resource "google_service_account" "graph_renew" {
  count        = local.deploy.graph ? 1 : 0
  account_id   = "graph-webhook-renew"
  display_name = "graph_webhook_renew function"
  depends_on   = [time_sleep.apis_ready]
}

resource "google_service_account" "graph_notify" {
  count        = local.deploy.graph ? 1 : 0
  account_id   = "graph-webhook-notify"
  display_name = "graph_webhook_notify function"
  depends_on   = [time_sleep.apis_ready]
}

resource "google_secret_manager_secret_iam_member" "graph_renew_read" {
  for_each  = toset(local.graph_renew_secrets)
  secret_id = google_secret_manager_secret.graph[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.graph_renew[0].email}"
}

resource "google_secret_manager_secret_iam_member" "graph_notify_read" {
  for_each  = toset(local.graph_notify_secrets)
  secret_id = google_secret_manager_secret.graph[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.graph_notify[0].email}"
}

# The notify function publishes notifications for downstream apps and, on lifecycle events,
# a run request for the reconciler. It holds no Graph credentials at all.
resource "google_pubsub_topic_iam_member" "graph_notify_publish" {
  for_each = local.deploy.graph ? {
    notifications = google_pubsub_topic.graph_notifications[0].id
    renew_trigger = google_pubsub_topic.graph_renew_trigger[0].id
  } : {}
  topic  = each.value
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.graph_notify[0].email}"
}

# --- functions -------------------------------------------------------------------------

module "graph_webhook_notify" {
  count = local.deploy.graph ? 1 : 0
  #checkov:skip=CKV_GCP_102:Microsoft Graph delivers notifications without credentials; every request is checked by its clientState instead.
  source = "./modules/function"

  project                     = var.project_id
  region                      = var.region
  name                        = "graph-webhook-notify"
  description                 = "Receives Microsoft Graph change and lifecycle notifications"
  entry_point                 = "graph_webhook_notify"
  source_dir                  = "${local.functions_dir}/graph_webhook_renew"
  shared_dir                  = local.shared_dir
  source_bucket               = google_storage_bucket.sources.name
  service_account_email       = google_service_account.graph_notify[0].email
  build_service_account_email = local.build_service_account_email
  trigger_topic               = null
  public                      = true # Graph posts from the internet and cannot authenticate
  max_instances               = var.graph_notify_max_instances
  timeout_seconds             = 30 # Graph waits 3 s for an answer; longer is never useful
  memory                      = "256M"
  labels                      = var.labels

  environment = {
    GOOGLE_CLOUD_PROJECT          = var.project_id
    GRAPH_CLIENT_STATE_SECRET     = google_secret_manager_secret.graph["client_state"].secret_id
    GRAPH_NOTIFICATIONS_TOPIC     = google_pubsub_topic.graph_notifications[0].name
    GRAPH_RENEW_TOPIC             = google_pubsub_topic.graph_renew_trigger[0].name
    GRAPH_NOTIFY_MAX_BYTES        = tostring(var.graph_notify_max_bytes)
    GRAPH_PUBLISH_TIMEOUT_SECONDS = "2"
  }

  depends_on = [
    google_secret_manager_secret_iam_member.graph_notify_read,
    google_pubsub_topic_iam_member.graph_notify_publish,
  ]
}

module "graph_webhook_renew" {
  count  = local.deploy.graph ? 1 : 0
  source = "./modules/function"

  project                       = var.project_id
  region                        = var.region
  name                          = "graph-webhook-renew"
  description                   = "Creates, renews and repairs Microsoft Graph webhook subscriptions"
  entry_point                   = "graph_webhook_renew"
  source_dir                    = "${local.functions_dir}/graph_webhook_renew"
  shared_dir                    = local.shared_dir
  source_bucket                 = google_storage_bucket.sources.name
  service_account_email         = google_service_account.graph_renew[0].email
  build_service_account_email   = local.build_service_account_email
  trigger_topic                 = google_pubsub_topic.graph_renew_trigger[0].name
  trigger_service_account_email = google_service_account.invoker.email
  retry                         = true
  # One run at a time: two concurrent runs could both create a missing subscription (the
  # next run would delete the duplicate, but downstream would see notifications twice).
  max_instances   = 1
  timeout_seconds = 300
  memory          = "256M"
  labels          = var.labels

  environment = {
    GOOGLE_CLOUD_PROJECT       = var.project_id
    GRAPH_LOGIN_URL            = var.graph_login_url
    GRAPH_API_URL              = var.graph_api_url
    GRAPH_NOTIFICATION_URL     = module.graph_webhook_notify[0].function_uri
    GRAPH_USER_ID              = var.graph_user_id
    GRAPH_SUBSCRIPTIONS        = var.graph_subscriptions
    GRAPH_RENEW_WITHIN_HOURS   = tostring(var.graph_renew_within_hours)
    GRAPH_SUBSCRIPTION_MINUTES = tostring(var.graph_subscription_minutes)
    GRAPH_TENANT_ID_SECRET     = google_secret_manager_secret.graph["tenant_id"].secret_id
    GRAPH_CLIENT_ID_SECRET     = google_secret_manager_secret.graph["client_id"].secret_id
    GRAPH_CLIENT_SECRET_SECRET = google_secret_manager_secret.graph["client_secret"].secret_id
    GRAPH_CLIENT_STATE_SECRET  = google_secret_manager_secret.graph["client_state"].secret_id
    RUN_DEADLINE_SECONDS       = "240"
    STATE_BUCKET               = google_storage_bucket.state.name
    LOCK_LEASE_SECONDS         = "600"
  }

  depends_on = [
    google_secret_manager_secret_iam_member.graph_renew_read,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# The reconciler's lock: one object under locks/ in the state bucket, nothing else.
resource "google_storage_bucket_iam_member" "graph_renew_lock" {
  count  = local.deploy.graph ? 1 : 0
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.graph_renew[0].email}"

  condition {
    title      = "graph-renew-lock-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/locks/graph-webhook-renew\")"
  }
}
