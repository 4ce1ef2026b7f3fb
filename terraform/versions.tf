# Terraform and provider requirements of the module. No provider or backend blocks: the root module that
# calls this one (examples/basic/, or your own) configures the providers and the state backend.
# API Gateway resources exist only in google-beta, so both Google providers share one pin.
# tools/tfstub/schemas/ holds these providers' schemas at a version inside these pins (checked by
# tests/deploy/test_terraform_plan.py); bump both together (tools/tfstub/extract.py).
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
}
