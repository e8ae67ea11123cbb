variable "project" {
  type        = string
  description = "Project the function runs in."
}

variable "region" {
  type        = string
  description = "Region of the function and of its Eventarc trigger."
}

variable "name" {
  type        = string
  description = "Cloud Function name (lowercase letters, digits and hyphens)."
}

variable "description" {
  type        = string
  description = "What the function does, shown in the console."
  default     = ""
}

variable "entry_point" {
  type        = string
  description = "Python function in main.py that the framework calls."
}

variable "source_dir" {
  type        = string
  description = "The function's folder (main.py, requirements.txt, helper modules)."
}

variable "shared_dir" {
  type        = string
  description = "The shared/ library folder, packed next to main.py as the package `shared`."
}

variable "source_bucket" {
  type        = string
  description = "Bucket holding deploy archives; objects are named by content hash."
}

variable "service_account_email" {
  type        = string
  description = "Identity the function runs as (one per function, holding only what it needs)."
}

variable "build_service_account_email" {
  type        = string
  description = "Identity Cloud Build uses to build the function (logs, image push, source read)."
}

variable "environment" {
  type        = map(string)
  description = "Environment variables of the function."
  default     = {}
}

variable "trigger_topic" {
  type        = string
  description = "Name of the Pub/Sub topic (in var.project) that triggers a CloudEvent function; null for an HTTP function. A name, known at plan, not the topic's id: whether the trigger exists must not wait for apply."
  default     = null
}

variable "trigger_service_account_email" {
  type        = string
  description = "Identity Eventarc uses to invoke the function; required with trigger_topic."
  default     = null
}

variable "retry" {
  type        = bool
  description = "Redeliver a Pub/Sub event when the function raises (functions guard against storms by dropping events older than a maximum age)."
  default     = true
}

variable "public" {
  type        = bool
  description = "HTTP functions only: reachable from the internet without authentication (webhook endpoints)."
  default     = false
}

variable "timeout_seconds" {
  type        = number
  description = "Maximum run time of one invocation."
  default     = 300
}

variable "memory" {
  type        = string
  description = "Memory of one instance, e.g. 256M."
  default     = "256M"
}

variable "max_instances" {
  type        = number
  description = "Upper bound on concurrent instances."
  default     = 1
}

variable "labels" {
  type        = map(string)
  description = "Labels on the function."
  default     = {}
}

variable "invokers" {
  type        = map(string)
  description = "Service accounts, by a key known at plan, allowed to invoke this function besides its Eventarc trigger: the OIDC identity of a Pub/Sub push subscription that delivers to function_uri."
  default     = {}
}
