terraform {
  # 1.5 for check blocks; the offline plan gate (make test) runs the Terraform on PATH.
  required_version = ">= 1.5"
  required_providers {
    # One major each, from the version the offline plan gate checks the module against
    # (tools/tfstandin/schemas/): a new major changes schemas and needs a new gate run.
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 7"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7, < 3"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.13, < 1"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
