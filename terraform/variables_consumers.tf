variable "consumers" {
  type = map(list(object({
    name                       = string
    push_endpoint              = optional(string)
    oidc_audience              = optional(string)
    oidc_service_account_email = optional(string)
    ack_deadline_seconds       = optional(number, 60)
    max_delivery_attempts      = optional(number, 10)
    minimum_backoff            = optional(string, "10s")
    maximum_backoff            = optional(string, "600s")
    message_retention_duration = optional(string, "604800s")
    filter                     = optional(string)
  })))
  description = "Apps that consume the output topics (graph-notifications, universign-status-changes, cegid-files), keyed by topic: each entry a subscription named `name`, pushed to the HTTPS `push_endpoint` with an OIDC token (audience `oidc_audience`, default the endpoint; signed for `oidc_service_account_email`, default the keepalive-consumer-push account created here), or pulled when `push_endpoint` is unset. Every subscription gets a retry policy (minimum_backoff to maximum_backoff), a dead-letter topic and subscription `<name>-dead-letter` after max_delivery_attempts, and the alert on dead-lettered messages. Default: none."
  default     = {}

  validation {
    condition     = length(setsubtract(keys(var.consumers), ["graph-notifications", "universign-status-changes", "cegid-files"])) == 0
    error_message = "consumers is keyed by output topic: graph-notifications, universign-status-changes or cegid-files."
  }

  validation {
    condition = alltrue([
      for c in flatten(values(var.consumers)) : can(regex("^[a-z][a-z0-9-]{1,48}[a-z0-9]$", c.name))
    ])
    error_message = "Each consumer name is 3 to 50 lowercase letters, digits and hyphens, starting with a letter (it names the subscription and its <name>-dead-letter topic)."
  }

  validation {
    condition     = length(flatten(values(var.consumers))) == length(distinct([for c in flatten(values(var.consumers)) : c.name]))
    error_message = "Consumer names must be unique across all topics."
  }

  validation {
    condition = alltrue([
      for c in flatten(values(var.consumers)) : c.push_endpoint == null ? (c.oidc_audience == null && c.oidc_service_account_email == null) : startswith(c.push_endpoint, "https://")
    ])
    error_message = "A push_endpoint must be an https:// URL; oidc_audience and oidc_service_account_email only go with a push_endpoint."
  }

  validation {
    condition = alltrue([
      for c in flatten(values(var.consumers)) : c.max_delivery_attempts >= 5 && c.max_delivery_attempts <= 100 && c.ack_deadline_seconds >= 10 && c.ack_deadline_seconds <= 600
    ])
    error_message = "max_delivery_attempts must be 5 to 100 and ack_deadline_seconds 10 to 600 (Pub/Sub's limits)."
  }

  validation {
    condition = alltrue([
      for c in flatten(values(var.consumers)) : alltrue([
        for d in [c.minimum_backoff, c.maximum_backoff] : can(regex("^[0-9]+s$", d)) && tonumber(trimsuffix(d, "s")) <= 600
      ]) && tonumber(trimsuffix(c.minimum_backoff, "s")) <= tonumber(trimsuffix(c.maximum_backoff, "s"))
    ])
    error_message = "minimum_backoff and maximum_backoff are whole seconds such as \"10s\", at most \"600s\", minimum not above maximum."
  }

  validation {
    condition = alltrue([
      for c in flatten(values(var.consumers)) : can(regex("^[0-9]+s$", c.message_retention_duration)) && tonumber(trimsuffix(c.message_retention_duration, "s")) >= 600 && tonumber(trimsuffix(c.message_retention_duration, "s")) <= 2678400
    ])
    error_message = "message_retention_duration is whole seconds from \"600s\" to \"2678400s\" (31 days)."
  }
}

variable "consumer_dead_letter_retention" {
  type        = string
  description = "How long each <name>-dead-letter subscription keeps messages nobody has looked at (at most 31 days, \"2678400s\")."
  default     = "2678400s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.consumer_dead_letter_retention)) && tonumber(trimsuffix(var.consumer_dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.consumer_dead_letter_retention, "s")) <= 2678400
    error_message = "consumer_dead_letter_retention is whole seconds from \"600s\" to \"2678400s\" (31 days)."
  }
}
