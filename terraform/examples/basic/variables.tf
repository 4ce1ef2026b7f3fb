variable "project_id" {
  type        = string
  description = "Google Cloud project to deploy into."
}

variable "region" {
  type        = string
  description = "Region of the functions, queues and buckets."
  default     = "us-central1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name; use another one for a second deployment in the same project."
  default     = "mmsgate"
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
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}
}
