variable "graph_schedule" {
  type        = string
  description = "Cron schedule of graph-webhook-renew-job. Hourly by default (09:00, the original service's daily check, is one of the runs): a run only renews what is due, and an hourly run lets \"no successful run\" alert within two hours without a false alert between daily runs. Keep monitoring_run_interval_minutes.graph in step."
  default     = "0 * * * *"
}

variable "graph_time_zone" {
  type        = string
  description = "Time zone of graph_schedule."
  default     = "Europe/Paris"
}

variable "graph_user_id" {
  type        = string
  description = "Object id of the user whose Inbox gets the default subscription to new messages (prefer the id to the UPN: subscriptions are matched on the resource path); unused when graph_subscriptions is set."
  default     = ""
}

variable "graph_subscriptions" {
  type        = string
  description = "JSON list of {resource, changeType, maxMinutes?} subscriptions to keep alive; empty means new messages in graph_user_id's Inbox."
  default     = ""

  validation {
    condition     = var.graph_subscriptions == "" || can(tolist(jsondecode(var.graph_subscriptions)))
    error_message = "graph_subscriptions must be empty or a JSON list of objects."
  }
}

variable "graph_renew_within_hours" {
  type        = number
  description = "Renew a subscription expiring within this many hours; keep it at least the schedule's interval (24 h for a daily job) so nothing expires between runs."
  default     = 24

  validation {
    condition     = var.graph_renew_within_hours >= 1
    error_message = "graph_renew_within_hours must be at least 1."
  }
}

variable "graph_subscription_minutes" {
  type        = number
  description = "Lifetime requested on create and renew, capped at each resource's maximum (4230 minutes for Outlook messages per the Graph docs; newer sources say 10080, so the cap is configurable per subscription with maxMinutes)."
  default     = 4200

  validation {
    condition     = var.graph_subscription_minutes >= 45
    error_message = "graph_subscription_minutes must be at least 45 (Graph's minimum)."
  }
}

variable "graph_login_url" {
  type        = string
  description = "Entra ID endpoint for the client-credentials token (the client secret is sent here)."
  default     = "https://login.microsoftonline.com"
}

variable "graph_api_url" {
  type        = string
  description = "Microsoft Graph base URL (national clouds use another host)."
  default     = "https://graph.microsoft.com"
}

variable "graph_notify_max_instances" {
  type        = number
  description = "Upper bound on concurrent graph-webhook-notify instances."
  default     = 10
}

variable "graph_notify_max_bytes" {
  type        = number
  description = "Largest notification body accepted; larger ones get 413."
  default     = 1000000
}

variable "graph_notifications_retention" {
  type        = string
  description = "How long graph-notifications keeps messages nobody acknowledged yet."
  default     = "604800s"
}
