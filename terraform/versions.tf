# Terraform and provider requirements of the module. No provider or backend blocks: the root module that
# calls this one (examples/, or your own) configures the providers and the state backend.
#
# google and google-beta: any 6.x from 6.50 on, and 7.x (the 7.0.0 upgrade guide changes nothing this module
# sets: docs/decisions.md, "Terraform module"), the range terraform-google-modules modules declare. API Gateway
# resources exist only in google-beta, so both Google providers share one range. time: time_sleep, the waits
# for IAM and log-based-metric propagation that make a first apply succeed in one go (iam.tf, monitoring.tf).
#
# Terraform 1.9 or later: validations that compare two variables (source_dir, source_archive) and `removed`
# blocks (secrets.tf). The Terraform tests (tests/) need 1.11 (overrides during plan).
# tools/tfstub/schemas/ holds these providers' schemas at a version inside these ranges (checked by
# tests/deploy/test_terraform_plan.py); refresh them with tools/tfstub/extract.py.
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
