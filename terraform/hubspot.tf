# HubSpot: Cloud Scheduler -> hubspot-token-refresh-trigger -> hubspot_refresh -> HubSpot
#          -> Secret Manager (hubspot-<account>-access-token, status in its annotations).
# With sharding on (hubspot_shard_size > 0) the scheduled run publishes one message per shard
# to hubspot-token-refresh-work, which an Eventarc trigger delivers to the same function.
#
# Accounts are not Terraform resources: `python -m cli hubspot add-account <id>` creates their
# secrets at any time. So the function cannot be granted per secret; it gets project-level
# bindings whose IAM condition limits them to secrets named hubspot-*, and the bindings that
# change secrets also leave out the app's client id and secret, which it only reads.

locals {
  hubspot_client_secrets = local.deploy.hubspot ? {
    client_id     = "hubspot-client-id"
    client_secret = "hubspot-client-secret"
  } : {}
  hubspot_sharded = var.hubspot_shard_size > 0
  # IAM conditions see Secret Manager resources under the project *number*; versions are
  # .../secrets/<id>/versions/<n>, so the prefix covers them too.
  hubspot_secrets_path     = "projects/${data.google_project.this.number}/secrets/"
  hubspot_secret_condition = "resource.name.startsWith(\"${local.hubspot_secrets_path}hubspot-\")"
  # Adding, disabling or destroying versions, annotating, creating: hubspot-* except each
  # client secret and its versions. A function that could write hubspot-client-secret could
  # replace or destroy the app's secret for every account and every other service using it.
  hubspot_secret_write_condition = join(" && ", concat(
    [local.hubspot_secret_condition],
    [for id in sort(values(local.hubspot_client_secrets)) :
      "!(resource.name == \"${local.hubspot_secrets_path}${id}\" || resource.name.startsWith(\"${local.hubspot_secrets_path}${id}/\"))"
    ],
  ))
}

resource "google_secret_manager_secret" "hubspot_client" {
  for_each  = local.hubspot_client_secrets
  secret_id = each.value
  labels    = { integration = "hubspot" }

  replication {
    auto {}
  }

  depends_on = [time_sleep.apis_ready]
}

resource "google_pubsub_topic" "hubspot_trigger" {
  count = local.deploy.hubspot ? 1 : 0
  #checkov:skip=CKV_GCP_83:Messages are bare run triggers ({} or {"force": true, "accounts": [...]}) with no data worth a customer-managed key.
  name                       = "hubspot-token-refresh-trigger"
  message_retention_duration = "86400s"
  depends_on                 = [time_sleep.apis_ready]
}

# Always there (an idle topic costs nothing), so turning sharding on is one variable.
resource "google_pubsub_topic" "hubspot_work" {
  count = local.deploy.hubspot ? 1 : 0
  #checkov:skip=CKV_GCP_83:Shard messages carry HubSpot account ids only, no credentials.
  name                       = "hubspot-token-refresh-work"
  message_retention_duration = "3600s"
  depends_on                 = [time_sleep.apis_ready]
}

resource "google_cloud_scheduler_job" "hubspot" {
  count       = local.deploy.hubspot ? 1 : 0
  name        = "hubspot-token-refresh-job"
  description = "Refresh every HubSpot account's access token (30 minutes) before it expires"
  region      = var.region
  schedule    = var.hubspot_schedule
  time_zone   = var.hubspot_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.hubspot_trigger[0].id
    data       = base64encode("{}")
  }
}

# --- identity and permissions ------------------------------------------------------------

resource "google_service_account" "hubspot" {
  count        = local.deploy.hubspot ? 1 : 0
  account_id   = "hubspot-refresh"
  display_name = "hubspot_refresh function"
  depends_on   = [time_sleep.apis_ready]
}

# The default app's client id and secret: granted per secret, they exist at apply time.
resource "google_secret_manager_secret_iam_member" "hubspot_read_client" {
  for_each  = local.hubspot_client_secrets
  secret_id = google_secret_manager_secret.hubspot_client[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.hubspot[0].email}"
}

# Account secrets (and other apps' hubspot-client-* pairs) come and go with the CLI, so these
# bindings sit on the project with a condition on the secret name: read values and version
# numbers of hubspot-*; add, disable and destroy versions, read metadata and write the status
# annotations of hubspot-* but the client id and secret (hubspot_secret_write_condition).
resource "google_project_iam_member" "hubspot_secret_read" {
  count   = local.deploy.hubspot ? 1 : 0
  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = "serviceAccount:${google_service_account.hubspot[0].email}"

  condition {
    title       = "hubspot-secrets-only"
    description = "Secrets whose id starts with hubspot-"
    expression  = local.hubspot_secret_condition
  }
}

# The version numbers of the client id and secret (new versions lift a refusal made with the
# old ones): secretmanager.versions.get, which secretVersionManager gives only where the
# function may write, so granted alone on every hubspot-* secret.
resource "google_project_iam_custom_role" "hubspot_version_viewer" {
  count       = local.deploy.hubspot ? 1 : 0
  role_id     = "keepaliveHubspotVersionViewer"
  title       = "Keep-alive HubSpot secret version viewer"
  description = "Read secret version metadata (number, state), never a value."
  permissions = ["secretmanager.versions.get"]
  depends_on  = [time_sleep.apis_ready]
}

resource "google_project_iam_member" "hubspot_secret_version_view" {
  count   = local.deploy.hubspot ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.hubspot_version_viewer[0].id
  member  = "serviceAccount:${google_service_account.hubspot[0].email}"

  condition {
    title       = "hubspot-secrets-only"
    description = "Secrets whose id starts with hubspot-"
    expression  = local.hubspot_secret_condition
  }
}

resource "google_project_iam_member" "hubspot_secret_versions" {
  count   = local.deploy.hubspot ? 1 : 0
  project = var.project_id
  role    = "roles/secretmanager.secretVersionManager"
  member  = "serviceAccount:${google_service_account.hubspot[0].email}"

  condition {
    title       = "hubspot-secrets-but-client-credentials"
    description = "Secrets whose id starts with hubspot-, except the app's client id and secret"
    expression  = local.hubspot_secret_write_condition
  }
}

resource "google_project_iam_member" "hubspot_secret_annotate" {
  count   = local.deploy.hubspot ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.secret_annotator.id
  member  = "serviceAccount:${google_service_account.hubspot[0].email}"

  condition {
    title       = "hubspot-secrets-but-client-credentials"
    description = "Secrets whose id starts with hubspot-, except the app's client id and secret"
    expression  = local.hubspot_secret_write_condition
  }
}

# Creating hubspot-<account>-access-token for an account made by hand (the CLI creates it up
# front, so the normal path never needs this). [U] Whether Secret Manager evaluates
# resource.name on secrets.create against the new secret's name is unconfirmed; if it does
# not, the condition simply never matches and such accounts must be added with the CLI.
resource "google_project_iam_custom_role" "hubspot_secret_creator" {
  count       = local.deploy.hubspot ? 1 : 0
  role_id     = "keepaliveHubspotSecretCreator"
  title       = "Keep-alive HubSpot secret creator"
  description = "Create secrets (limited by an IAM condition on the name where bound)."
  permissions = ["secretmanager.secrets.create"]
  depends_on  = [time_sleep.apis_ready]
}

resource "google_project_iam_member" "hubspot_secret_create" {
  count   = local.deploy.hubspot ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.hubspot_secret_creator[0].id
  member  = "serviceAccount:${google_service_account.hubspot[0].email}"

  condition {
    title       = "hubspot-secrets-but-client-credentials"
    description = "Secrets whose id starts with hubspot-, except the app's client id and secret"
    expression  = local.hubspot_secret_write_condition
  }
}

# Discovery lists secrets filtered by label. secrets.list is checked on the project (a name
# condition cannot narrow it), and roles/secretmanager.viewer would add secrets.get on every
# secret; this role holds secrets.list alone. It reveals secret ids, labels and annotations
# (never values) of the project, which is why no other integration writes secrets there.
resource "google_project_iam_custom_role" "hubspot_secret_lister" {
  count       = local.deploy.hubspot ? 1 : 0
  role_id     = "keepaliveSecretLister"
  title       = "Keep-alive secret lister"
  description = "List secrets (metadata only) to discover accounts by label."
  permissions = ["secretmanager.secrets.list"]
  depends_on  = [time_sleep.apis_ready]
}

resource "google_project_iam_member" "hubspot_secret_list" {
  count   = local.deploy.hubspot ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.hubspot_secret_lister[0].id
  member  = "serviceAccount:${google_service_account.hubspot[0].email}"
}

# The per-account refresh locks: objects under locks/hubspot- in the state bucket only.
resource "google_storage_bucket_iam_member" "hubspot_locks" {
  count  = local.deploy.hubspot ? 1 : 0
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.hubspot[0].email}"

  condition {
    title      = "hubspot-locks-only"
    expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/locks/hubspot-\")"
  }
}

resource "google_pubsub_topic_iam_member" "hubspot_publish_work" {
  count  = local.deploy.hubspot ? 1 : 0
  topic  = google_pubsub_topic.hubspot_work[0].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.hubspot[0].email}"
}

# --- the function --------------------------------------------------------------------------

module "hubspot_refresh" {
  source = "./modules/function"
  count  = local.deploy.hubspot ? 1 : 0

  project                       = var.project_id
  region                        = var.region
  name                          = "hubspot-refresh"
  description                   = "Refreshes the OAuth access token of every HubSpot account into Secret Manager"
  entry_point                   = "hubspot_refresh"
  source_dir                    = "${local.functions_dir}/hubspot_refresh"
  shared_dir                    = local.shared_dir
  source_bucket                 = google_storage_bucket.sources.name
  service_account_email         = google_service_account.hubspot[0].email
  build_service_account_email   = local.build_service_account_email
  trigger_topic                 = google_pubsub_topic.hubspot_trigger[0].name
  trigger_service_account_email = google_service_account.invoker.email
  retry                         = true
  max_instances                 = var.hubspot_max_instances
  timeout_seconds               = var.hubspot_timeout_seconds
  memory                        = "512M"
  labels                        = var.labels

  environment = {
    GOOGLE_CLOUD_PROJECT           = var.project_id
    STATE_BUCKET                   = google_storage_bucket.state.name
    HUBSPOT_TOKEN_URL              = var.hubspot_token_url
    HUBSPOT_CLIENT_ID_SECRET       = google_secret_manager_secret.hubspot_client["client_id"].secret_id
    HUBSPOT_CLIENT_SECRET_SECRET   = google_secret_manager_secret.hubspot_client["client_secret"].secret_id
    HUBSPOT_REFRESH_MARGIN_MINUTES = tostring(var.hubspot_refresh_margin_minutes)
    HUBSPOT_CONCURRENCY            = tostring(var.hubspot_concurrency)
    HUBSPOT_VERSIONS_TO_KEEP       = tostring(var.hubspot_versions_to_keep)
    HUBSPOT_SHARD_SIZE             = tostring(var.hubspot_shard_size)
    HUBSPOT_WORK_TOPIC             = google_pubsub_topic.hubspot_work[0].name
    # A minute under the function timeout, so the summary line is always written.
    RUN_DEADLINE_SECONDS = tostring(var.hubspot_timeout_seconds - 60)
    # Longer than the function timeout: a live holder never loses its lock.
    LOCK_LEASE_SECONDS = tostring(var.hubspot_timeout_seconds + 60)
  }

  depends_on = [
    google_secret_manager_secret_iam_member.hubspot_read_client,
    google_project_iam_member.hubspot_secret_read,
    google_project_iam_member.hubspot_secret_version_view,
    google_project_iam_member.hubspot_secret_list,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# Shards go to the same function: a second Eventarc trigger on the work topic. The invoker
# identity already holds roles/run.invoker on the function's service (granted by the module).
resource "google_eventarc_trigger" "hubspot_work" {
  count           = local.deploy.hubspot && local.hubspot_sharded ? 1 : 0
  name            = "hubspot-token-refresh-work"
  location        = var.region
  service_account = google_service_account.invoker.email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  transport {
    pubsub {
      topic = google_pubsub_topic.hubspot_work[0].id
    }
  }

  destination {
    cloud_run_service {
      # A gen2 function's Cloud Run service carries the function's name.
      service = module.hubspot_refresh[0].function_name
      region  = var.region
    }
  }

  labels = var.labels
}
