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
  description = "Prefix of every resource name, the Firestore database's included; use another one for a second deployment in the same project."
  default     = "mmsgate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,10}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "min_instances" {
  type        = map(number)
  description = "Instances kept warm per function (cold starts can exceed Telnyx's 2 s webhook limit)."
  default = {
    send    = 1
    group   = 1
    webhook = 1
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

variable "twilio_enabled" {
  type        = bool
  description = "Make Twilio a second carrier (docs/deploy.md, Twilio as a second carrier); the <name_prefix>-twilio-auth-token secret must exist first."
  default     = false
}

variable "twilio_account_sid" {
  type        = string
  description = "The Twilio account SID (AC...), with twilio_enabled."
  default     = ""
}

variable "carrier_weights" {
  type        = map(number)
  description = "Each carrier's share of the sends that do not name their sender, e.g. { telnyx = 70, twilio = 30 }."
  default     = { telnyx = 100 }
}
