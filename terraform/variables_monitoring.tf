variable "alert_email" {
  type        = string
  description = "Email address that receives every alert; empty creates the alert policies without a notification channel (they still show in the console)."
  default     = ""
}

variable "runbook_base_url" {
  type        = string
  description = "Where docs/runbooks/ can be read (for example the repository's web URL ending in /blob/main); alert documentation links the runbook under it. Empty names the file only."
  default     = ""
}

variable "monitoring_run_interval_minutes" {
  type        = map(number)
  description = "Schedule interval per integration, in minutes (keep in step with the *_schedule variables). An integration alerts when no successful run was logged for two intervals, capped at 23.5 hours, the longest absence Cloud Monitoring can watch."
  default = {
    bitrix24   = 30
    hubspot    = 15
    graph      = 1440
    cegid      = 60
    universign = 5
  }
}

variable "graph_expiry_alert_minutes" {
  type        = number
  description = "Alert when a run reports a Microsoft Graph subscription expiring within this many minutes (720 = 12 hours)."
  default     = 720
}

variable "universign_signature_failure_threshold" {
  type        = number
  description = "Alert when more than this many Universign webhook calls fail token or signature checks within 15 minutes (a few are internet noise; a burst means a key or token changed)."
  default     = 5
}

variable "log_metric_propagation_seconds" {
  type        = number
  description = "Wait between creating log-based metrics and the alert policies that read them (a new metric is not found by Cloud Monitoring at first)."
  default     = 60
}
