# A root module: it pins Terraform and the providers, configures them, and keeps state in a GCS bucket
# created once per project (docs/deploy.md). The bucket is passed at init:
#   terraform init -backend-config="bucket=<project>-tfstate"
# Commit the .terraform.lock.hcl that `terraform init` writes here (docs/deploy.md, "Provider lock").
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.50"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
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
