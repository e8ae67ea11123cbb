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
  description = "Schedule interval per integration, in minutes (keep in step with the *_schedule variables). An integration alerts when no successful run was logged for two intervals (at least 60 minutes, at most 23.5 hours, the longest absence Cloud Monitoring can watch); integrations with the same window share one alert condition."
  default = {
    bitrix24   = 30
    hubspot    = 15
    graph      = 60
    cegid      = 60
    universign = 5
  }
}

variable "monitoring_failure_window_minutes" {
  type        = number
  description = "An integration alerts when every run it logged within this many minutes failed (a configuration error counts as a failure); one failed run among good ones does not alert."
  default     = 120
  validation {
    condition     = var.monitoring_failure_window_minutes >= 5 && var.monitoring_failure_window_minutes <= 1440
    error_message = "monitoring_failure_window_minutes must be between 5 and 1440."
  }
}

variable "monitoring_slow_run_fraction" {
  type        = number
  description = "Alert when a run or webhook request takes more than this fraction of its function's time limit."
  default     = 0.8
  validation {
    condition     = var.monitoring_slow_run_fraction > 0 && var.monitoring_slow_run_fraction < 1
    error_message = "monitoring_slow_run_fraction must be between 0 and 1."
  }
}

variable "monitoring_secret_reads_max" {
  type        = map(number)
  description = "Alert when one run reads more secret values than this (HubSpot: per account the run looked at). A normal run reads a handful: see docs/operations.md for the measured counts."
  default = {
    bitrix24   = 12
    hubspot    = 6
    graph      = 16
    cegid      = 12
    universign = 12
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
