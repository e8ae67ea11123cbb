variable "cegid_bucket_name" {
  type        = string
  description = "Bucket where Cegid exports land (as cegid/<blob name>); empty means <project_id>-cegid-exports."
  default     = ""
}

variable "cegid_mode" {
  type        = string
  description = "How the transfer reaches the Azure container: api (a SAS from the Cegid API each run, secrets cegid-api-key-id, cegid-api-key-secret, cegid-subscription-key) or sas_url (a portal SAS URL in secret cegid-sas-url, valid 24 hours: for troubleshooting)."
  default     = "api"

  validation {
    condition     = contains(["api", "sas_url"], var.cegid_mode)
    error_message = "cegid_mode must be api or sas_url."
  }
}

variable "cegid_tenant_id" {
  type        = string
  description = "Cegid customer account number (x-tenantId); required in api mode and for cegid-queries."
  default     = ""
}

variable "cegid_api_url" {
  type        = string
  description = "Base URL of the Cegid Data Access API. Unofficial: taken from third-party scripts (2021), verify with Cegid."
  default     = "https://cda.cegid.cloud"

  validation {
    condition     = startswith(var.cegid_api_url, "https://")
    error_message = "cegid_api_url must be an https:// URL (API keys are sent to it)."
  }
}

variable "cegid_sas_path" {
  type        = string
  description = "API path that returns a container SAS with read, list and delete (GetSASTokenLRD); unofficial, verify with Cegid."
  default     = "/storage/api/V1/storages/GetSASTokenLRD"
}

variable "cegid_provider_id" {
  type        = string
  description = "Data provider GUID for scheduled queries (python -m cli cegid discover finds it); empty until known."
  default     = ""
}

variable "cegid_force_time" {
  type        = string
  description = "Default HH:MM (UTC) for force requests without a time; empty means 15 minutes after the request."
  default     = ""

  validation {
    condition     = var.cegid_force_time == "" || can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.cegid_force_time))
    error_message = "cegid_force_time must be empty or HH:MM (UTC)."
  }
}

variable "cegid_schedule" {
  type        = string
  description = "Cron schedule of cegid-transfer-job (the exports are moved every hour)."
  default     = "0 * * * *"
}

variable "cegid_time_zone" {
  type        = string
  description = "Time zone of cegid_schedule."
  default     = "Etc/UTC"
}

variable "cegid_noncurrent_version_days" {
  type        = number
  description = "Days a deleted or replaced object generation stays recoverable in the export bucket."
  default     = 30

  validation {
    condition     = var.cegid_noncurrent_version_days >= 1
    error_message = "cegid_noncurrent_version_days must be at least 1."
  }
}

variable "cegid_memory" {
  type        = string
  description = "Memory of the transfer function. The copy streams: benchmarks/cegid_transfer.py measured a peak RSS of 124 MB copying 2 GiB (64 MB for the bare imports); 512M leaves room for functions-framework and the Secret Manager client, and buys a third of a vCPU for hashing and TLS."
  default     = "512M"
}

variable "cegid_timeout_seconds" {
  type        = number
  description = "Timeout of the transfer function (540 s is the ceiling for event-driven functions). The run stops starting files 60 s before it, planning at 20 MiB/s (CEGID_PLAN_MIB_PER_SECOND), so a 2 GiB export fits in one run; files that do not fit wait for the next hourly run."
  default     = 540

  validation {
    condition     = var.cegid_timeout_seconds >= 120 && var.cegid_timeout_seconds <= 540
    error_message = "cegid_timeout_seconds must be between 120 and 540."
  }
}
