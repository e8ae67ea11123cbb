variable "project_id" {
  type        = string
  description = "Google Cloud project that hosts the functions, topics, secrets and buckets."
}

variable "integrations" {
  type        = set(string)
  description = "Integrations to deploy, any of: bitrix24, hubspot, graph, cegid, universign. One left out gets no function, job, topic, secret, IAM binding, metric or alert; the shared buckets and identities stay."
  default     = ["bitrix24", "hubspot", "graph", "cegid", "universign"]

  validation {
    condition     = length(setsubtract(var.integrations, ["bitrix24", "hubspot", "graph", "cegid", "universign"])) == 0
    error_message = "integrations takes only bitrix24, hubspot, graph, cegid and universign."
  }
}

variable "api_propagation_seconds" {
  type        = number
  description = "Wait after enabling the Google APIs on the first apply, before creating anything that uses them (enabling returns before every API answers)."
  default     = 60
}

variable "region" {
  type        = string
  description = "Region of the functions, Cloud Scheduler jobs and buckets."
  default     = "europe-west1"
}

variable "state_bucket_name" {
  type        = string
  description = "Bucket for locks and integration state; empty means <project_id>-keepalive-state."
  default     = ""
}

variable "source_bucket_name" {
  type        = string
  description = "Bucket for function deploy archives; empty means <project_id>-keepalive-sources."
  default     = ""
}

variable "force_destroy_buckets" {
  type        = bool
  description = "Let `terraform destroy` delete buckets that still hold objects."
  default     = false
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every function and bucket."
  default     = { app = "integration-keepalive" }
}

variable "b24_schedule" {
  type        = string
  description = "Cron schedule of b24-token-refresh-job (Bitrix24 access tokens live 60 minutes)."
  default     = "*/30 * * * *"
}

variable "b24_time_zone" {
  type        = string
  description = "Time zone of b24_schedule."
  default     = "Etc/UTC"
}

variable "b24_refresh_margin_minutes" {
  type        = number
  description = "Refresh when the Bitrix24 access token expires within this many minutes; above the schedule interval so a valid token is always stored."
  default     = 35
}

variable "b24_oauth_url" {
  type        = string
  description = "Bitrix24 token endpoint (the client secret is sent here, so only oauth.bitrix.info)."
  default     = "https://oauth.bitrix.info/oauth/token/"
}

variable "b24_versions_to_keep" {
  type        = number
  description = "Versions kept per Bitrix24 token secret; older ones are destroyed (each live version costs $0.06 a month)."
  default     = 2
}
