# A root module: it pins Terraform and the providers and configures them. State stays local until you add
# a backend: copy backend.tf.example to backend.tf (a GCS bucket made once per project by bootstrap.sh) and
# pass the bucket at init, as docs/deploy.md shows:
#   terraform init -backend-config="bucket=<project>-tfstate"
# Commit the .terraform.lock.hcl that `terraform init` writes here (docs/deploy.md, "Provider lock").
terraform {
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.50, < 8"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7, < 3"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.12, < 1"
    }
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
