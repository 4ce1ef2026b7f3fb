variable "project_id" {
  type        = string
  description = "Google Cloud project to deploy into."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, queues and buckets."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name, the Firestore database's included; another one for each deployment in the project."
  default     = "mmsgate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,10}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "source_bucket" {
  type        = string
  description = "Bucket holding the prebuilt source archive (without gs://)."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.source_bucket))
    error_message = "source_bucket must be a bucket name, without gs://."
  }
}

variable "source_object" {
  type        = string
  description = "The archive's object name in source_bucket, e.g. mmsgate/<sha256>.zip."

  validation {
    condition     = endswith(var.source_object, ".zip")
    error_message = "source_object must be a .zip object."
  }
}

variable "enable_apis" {
  type        = bool
  description = "Let the module enable the Google APIs it uses; false when the project's APIs are managed elsewhere."
  default     = false
}

variable "secret_ids" {
  type        = map(string)
  description = "Secret ids where they differ from <name_prefix>-telnyx-api-key, -telnyx-public-key and -webhook-signing-key."
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.secret_ids) : contains(["TELNYX_API_KEY", "TELNYX_PUBLIC_KEY", "WEBHOOK_SIGNING_KEY"], name)])
    error_message = "secret_ids keys must be TELNYX_API_KEY, TELNYX_PUBLIC_KEY or WEBHOOK_SIGNING_KEY."
  }
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channel ids (projects/<project>/notificationChannels/<id>) the alerts notify."
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels must be ids of the form projects/<project>/notificationChannels/<number>."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}
}
