variable "hubspot_schedule" {
  type        = string
  description = "Cron schedule of hubspot-token-refresh-job. HubSpot access tokens live 30 minutes; every 15 minutes keeps at least 15 minutes of validity stored."
  default     = "*/15 * * * *"
}

variable "hubspot_time_zone" {
  type        = string
  description = "Time zone of hubspot_schedule."
  default     = "Etc/UTC"
}

variable "hubspot_token_url" {
  type        = string
  description = "HubSpot token endpoint: the date-versioned one HubSpot's v1 migration guide points to. https://api.hubapi.com/oauth/v3/token takes the same form fields (in the body only); the legacy https://api.hubapi.com/oauth/v1/token stays selectable until HubSpot retires it on 2027-02-16, with a WARNING on each run and a row in `python -m cli status` meanwhile."
  default     = "https://api.hubapi.com/oauth/2026-03/token"

  validation {
    condition     = startswith(var.hubspot_token_url, "https://")
    error_message = "hubspot_token_url must be an https:// URL (client secrets and refresh tokens are sent to it)."
  }
}

variable "hubspot_refresh_margin_minutes" {
  type        = number
  description = "Refresh an account when its access token expires within this many minutes (or expired, or expiry unknown); at least twice the schedule interval."
  default     = 30

  validation {
    condition     = var.hubspot_refresh_margin_minutes >= 0
    error_message = "hubspot_refresh_margin_minutes must be >= 0."
  }
}

variable "hubspot_concurrency" {
  type        = number
  description = "Accounts refreshed at the same time by one instance (threads, each under its own lock)."
  default     = 8

  validation {
    condition     = var.hubspot_concurrency >= 1 && var.hubspot_concurrency <= 64
    error_message = "hubspot_concurrency must be between 1 and 64."
  }
}

variable "hubspot_shard_size" {
  type        = number
  description = "0: one run refreshes every due account. N > 0: the scheduled run publishes the due accounts in shards of N to hubspot-token-refresh-work, consumed by the same function on up to hubspot_max_instances instances. Turn on when runs report deferred > 0 while Secret Manager is not throttling (its 600 writes/min per project allow about 200 refreshes a minute whatever the sharding), roughly beyond 1,500 accounts."
  default     = 0

  validation {
    condition     = var.hubspot_shard_size >= 0
    error_message = "hubspot_shard_size must be >= 0."
  }
}

variable "hubspot_max_instances" {
  type        = number
  description = "Upper bound on hubspot-refresh instances; 1 without sharding, more (e.g. 10) with it so shards run in parallel."
  default     = 1
}

variable "hubspot_timeout_seconds" {
  type        = number
  description = "Timeout of one hubspot-refresh invocation; the run stops starting accounts a minute before it."
  default     = 540

  validation {
    condition     = var.hubspot_timeout_seconds >= 120 && var.hubspot_timeout_seconds <= 540
    error_message = "hubspot_timeout_seconds must be between 120 and 540 (event-driven functions)."
  }
}

variable "hubspot_versions_to_keep" {
  type        = number
  description = "Versions kept per HubSpot token secret; older ones are destroyed (each live version costs $0.06 a month)."
  default     = 2
}
