# mmsgate in one project, with the module's defaults and the few inputs most deployments set, deployed from
# this checkout: source_dir is the repository's root, which the module archives. Copy this folder to start
# your own root module; point `source` at a tagged release of the repository then, e.g.
#   source = "git::https://github.com/<owner>/mmsgate.git//terraform?ref=v0.5.0"
# and source_dir at a checkout of the same release (or use source_archive: examples/source_archive).
module "mmsgate" {
  source = "../.."

  project_id            = var.project_id
  region                = var.region
  name_prefix           = var.name_prefix
  source_dir            = "${path.module}/../../.."
  min_instances         = var.min_instances
  notification_channels = var.notification_channels
  labels                = var.labels

  # A second carrier (off by default: Telnyx alone).
  twilio_enabled     = var.twilio_enabled
  twilio_account_sid = var.twilio_account_sid
  carrier_weights    = var.carrier_weights
}
