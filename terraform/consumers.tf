# Consumers of the output topics (var.consumers): the apps the original systems delivered to
# directly (NOVA's notification URL, Odoo's folder, the Sage update) subscribe here.
#   graph-notifications / universign-status-changes / cegid-files
#     -> <name> subscription: push (HTTPS + OIDC token) or pull, with a retry policy
#        -> after max_delivery_attempts: <name>-dead-letter topic -> <name>-dead-letter subscription
#                                        (kept for consumer_dead_letter_retention; alert below)
# docs/operations.md "Consumers" shows a minimal push consumer and how to replay dead letters.

locals {
  # The output topics this deployment has, by name.
  output_topics = merge(
    local.deploy.graph ? { "graph-notifications" = google_pubsub_topic.graph_notifications[0].id } : {},
    local.deploy.universign ? { "universign-status-changes" = google_pubsub_topic.universign_status_changes[0].id } : {},
    local.deploy.cegid ? { "cegid-files" = google_pubsub_topic.cegid_files[0].id } : {},
  )
  consumers = {
    for c in flatten([
      for topic, list in var.consumers : [for consumer in list : merge(consumer, { topic = topic })]
    ]) : c.name => c
  }
  push_consumers = { for name, c in local.consumers : name => c if c.push_endpoint != null }
  # Push consumers that name no identity of their own share one created here.
  push_identity_needed = anytrue([for c in values(local.push_consumers) : c.oidc_service_account_email == null])
  pubsub_agent         = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# The identity whose OIDC token Pub/Sub sends to push consumers: a consumer checks the token's
# signature, its audience (its own URL) and this email (docs/operations.md).
resource "google_service_account" "consumer_push" {
  count        = local.push_identity_needed ? 1 : 0
  account_id   = "keepalive-consumer-push"
  display_name = "Signs Pub/Sub push requests to the output topics' consumers"
  depends_on   = [time_sleep.apis_ready]
}

# Pub/Sub mints the push token; agents created before April 2021 lack this (see main.tf).
resource "google_service_account_iam_member" "consumer_push_token_creator" {
  count              = local.push_identity_needed ? 1 : 0
  service_account_id = google_service_account.consumer_push[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_pubsub_topic" "consumer_dead_letter" {
  for_each = local.consumers
  #checkov:skip=CKV_GCP_83:Holds copies of output-topic messages (ids and statuses, no document content), as the output topics do.
  name                       = "${each.key}-dead-letter"
  message_retention_duration = var.consumer_dead_letter_retention
  labels                     = var.labels
  depends_on                 = [time_sleep.apis_ready]
}

# A topic keeps nothing without a subscription: this one holds the dead letters to read or
# replay.
resource "google_pubsub_subscription" "consumer_dead_letter" {
  for_each                   = local.consumers
  name                       = "${each.key}-dead-letter"
  topic                      = google_pubsub_topic.consumer_dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.consumer_dead_letter_retention
  labels                     = var.labels

  expiration_policy {
    ttl = "" # never deleted for inactivity: it is read only when something went wrong
  }
}

resource "google_pubsub_subscription" "consumer" {
  for_each                   = local.consumers
  name                       = each.key
  topic                      = lookup(local.output_topics, each.value.topic, "")
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = each.value.message_retention_duration
  filter                     = each.value.filter
  labels                     = var.labels

  dynamic "push_config" {
    for_each = each.value.push_endpoint == null ? [] : [each.value]
    content {
      push_endpoint = push_config.value.push_endpoint
      oidc_token {
        service_account_email = coalesce(push_config.value.oidc_service_account_email, try(google_service_account.consumer_push[0].email, ""))
        audience              = coalesce(push_config.value.oidc_audience, push_config.value.push_endpoint)
      }
    }
  }

  retry_policy {
    minimum_backoff = each.value.minimum_backoff
    maximum_backoff = each.value.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.consumer_dead_letter[each.key].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # an idle consumer (a quiet month) must not lose its subscription
  }

  lifecycle {
    precondition {
      condition     = contains(keys(local.output_topics), each.value.topic)
      error_message = "consumers: ${each.key} subscribes to ${each.value.topic}, whose integration is not in var.integrations."
    }
  }

  depends_on = [google_service_account_iam_member.consumer_push_token_creator]
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic
# and acknowledge on the source subscription, or messages are retried forever instead.
resource "google_pubsub_topic_iam_member" "consumer_dead_letter_publish" {
  for_each = local.consumers
  topic    = google_pubsub_topic.consumer_dead_letter[each.key].id
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "consumer_dead_letter_ack" {
  for_each     = local.consumers
  subscription = google_pubsub_subscription.consumer[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# One condition across every consumer, split by subscription, so an incident names the
# consumer (alerts.tf's conventions: one condition per rule, documentation says what to do).
resource "google_monitoring_alert_policy" "consumer_dead_letters" {
  count                 = length(local.consumers) > 0 ? 1 : 0
  display_name          = "Consumers: messages dead-lettered"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "A consumer subscription dead-lettered messages"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/dead_letter_message_count\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=one_of(${join(", ", [for name in keys(local.consumers) : "\"${name}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.subscription_id"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Consumer $${resource.label.subscription_id} did not acknowledge some messages after its
      max_delivery_attempts: they were moved to the subscription
      `$${resource.label.subscription_id}-dead-letter`, where they are kept, not lost. Fix the
      consumer (its logs; for a push consumer, the HTTP status it answers), then replay them.
      Runbook: ${local.runbook_prefix}docs/runbooks/consumer-dead-letters.md
    EOT
  }

  depends_on = [time_sleep.apis_ready]
}

output "consumers" {
  description = "Per consumer: its subscription, topic, dead-letter subscription and, for a push consumer, the endpoint and the service account email its OIDC tokens name."
  value = {
    for name, c in local.consumers : name => {
      subscription             = google_pubsub_subscription.consumer[name].name
      topic                    = c.topic
      dead_letter_subscription = google_pubsub_subscription.consumer_dead_letter[name].name
      push_endpoint            = c.push_endpoint
      oidc_service_account     = c.push_endpoint == null ? null : coalesce(c.oidc_service_account_email, try(google_service_account.consumer_push[0].email, ""))
    }
  }
}
