# Terraform and provider pins. API Gateway resources exist only in google-beta, so both Google providers
# are pinned to the same major version. State lives in a GCS bucket the operator creates once (see
# docs/deploy.md); pass it at init: terraform init -backend-config="bucket=<state-bucket>".
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.14"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }

  backend "gcs" {
    prefix = "mmsgate"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
