variable "universign_api_url" {
  type        = string
  description = "Universign API base URL: https://api.universign.com (production) or https://api.alpha.universign.com (pre-production). The key set is read from <url>/v1/webhooks/jwks.json."
  default     = "https://api.universign.com"
}

variable "universign_signature_header" {
  type        = string
  description = "Request header(s) carrying the webhook JWS, comma-separated, tried in order. Unconfirmed: third-party code reads X-JWS-Signature; X-Universign-Signature appears elsewhere. Check a real delivery and narrow this down."
  default     = "X-JWS-Signature,X-Universign-Signature"
}

variable "universign_refusal_states" {
  type        = string
  description = "Comma-separated participant/action state values read as a refusal (the field values are unconfirmed; action.stalled refusal events are recognised regardless)."
  default     = "refused,declined,stalled"
}

variable "universign_webhook_token_enabled" {
  type        = bool
  description = "Also require ?token=<value of secret universign-webhook-token> on the webhook URL (defence in depth beside the signature)."
  default     = false
}

variable "universign_poll_schedule" {
  type        = string
  description = "Cron schedule of universign-poll-job."
  default     = "*/5 * * * *"
}

variable "universign_time_zone" {
  type        = string
  description = "Time zone of universign_poll_schedule."
  default     = "Europe/Paris"
}

variable "universign_poll_batch" {
  type        = number
  description = "Most transactions one poll syncs (due final re-checks first, then pending ones, oldest first)."
  default     = 50

  validation {
    condition     = var.universign_poll_batch >= 1 && var.universign_poll_batch <= 1000
    error_message = "universign_poll_batch must be between 1 and 1000."
  }
}

variable "universign_final_recheck_minutes" {
  type        = number
  description = "A transaction that became final is checked once more after this many minutes, then left alone."
  default     = 60
}

variable "universign_webhook_max_instances" {
  type        = number
  description = "Upper bound on concurrent webhook instances."
  default     = 5
}

variable "universign_sync_max_instances" {
  type        = number
  description = "Upper bound on concurrent universign_sync instances (each syncs one queued event at a time)."
  default     = 5
}

variable "universign_sync_retention" {
  type        = string
  description = "How long universign-sync and its push subscription universign-sync-push keep a message universign_sync has not acknowledged. Dead letters are kept for consumer_dead_letter_retention."
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.universign_sync_retention)) && tonumber(trimsuffix(var.universign_sync_retention, "s")) >= 600 && tonumber(trimsuffix(var.universign_sync_retention, "s")) <= 2678400
    error_message = "universign_sync_retention is whole seconds from \"600s\" to \"2678400s\" (31 days)."
  }
}

variable "universign_sync_max_delivery_attempts" {
  type        = number
  description = "Deliveries of one queued event to universign_sync before it is moved to universign-sync-dead-letter (Pub/Sub allows 5 to 100)."
  default     = 20

  validation {
    condition     = var.universign_sync_max_delivery_attempts >= 5 && var.universign_sync_max_delivery_attempts <= 100
    error_message = "universign_sync_max_delivery_attempts must be between 5 and 100."
  }
}

variable "universign_state_bucket_name" {
  type        = string
  description = "Bucket for transaction documents, the poll index and webhook event markers; empty means <project>-universign-state."
  default     = ""
}

variable "universign_archive_bucket_name" {
  type        = string
  description = "Bucket the signed documents are archived to (universign/<tx>/<document name>); empty means <project>-universign-archive."
  default     = ""
}

variable "universign_archive_retention_days" {
  type        = number
  description = "Retention policy on the archive bucket in days (objects cannot be deleted before); 0 for none. Check your legal retention duty before locking anything."
  default     = 0

  validation {
    condition     = var.universign_archive_retention_days >= 0
    error_message = "universign_archive_retention_days must be 0 or more."
  }
}

variable "universign_event_marker_days" {
  type        = number
  description = "Days webhook event markers are kept for deduplication (Universign retries a delivery for about 3 days)."
  default     = 30

  validation {
    condition     = var.universign_event_marker_days >= 4
    error_message = "universign_event_marker_days must be at least 4 (longer than Universign's retry schedule)."
  }
}

variable "universign_status_retention" {
  type        = string
  description = "How long universign-status-changes keeps messages no subscriber acknowledged."
  default     = "604800s"
}

variable "universign_external_status_map" {
  type        = map(string)
  description = "The app's code for each of our statuses (EN_ATTENTE, EN_COURS, SIGNE, REFUSE, EXPIRE, ANNULE), sent as external_status in every status-change event (UNIVERSIGN_EXTERNAL_STATUS_MAP); empty for none."
  default     = {}

  validation {
    condition     = alltrue([for status in keys(var.universign_external_status_map) : contains(["EN_ATTENTE", "EN_COURS", "SIGNE", "REFUSE", "EXPIRE", "ANNULE"], status)])
    error_message = "universign_external_status_map keys must be EN_ATTENTE, EN_COURS, SIGNE, REFUSE, EXPIRE or ANNULE."
  }
}
