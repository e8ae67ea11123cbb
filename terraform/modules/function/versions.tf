terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 7"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7, < 3"
    }
  }
}
