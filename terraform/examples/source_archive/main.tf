# mmsgate consumed as a module by another repository: the module comes from a release (here, for the tests
# of this repository, its folder), and the code from a zip that the application's own pipeline built and
# uploaded. Nothing here reads the application's source tree, so this root module can live anywhere: in an
# infrastructure repository that vendors the module, or next to a `git::` source.
#
# Build and upload the archive from a checkout of the same release (its layout: main.py and requirements.txt
# at the root, with functions/, shared/ and infra/), naming it by its content so that a new version
# redeploys the functions:
#   zip -r -X mmsgate.zip main.py requirements.txt functions shared infra -x '*/__pycache__/*'
#   gcloud storage cp mmsgate.zip "gs://$BUCKET/mmsgate/$(sha256sum mmsgate.zip | cut -c1-64).zip"
module "mmsgate" {
  # Vendored copy or release: "git::https://github.com/<owner>/mmsgate.git//terraform?ref=v1.0.0"
  source = "../.."

  project_id  = var.project_id
  region      = var.region
  name_prefix = var.name_prefix

  source_archive = {
    bucket = var.source_bucket
    object = var.source_object
  }

  # This project's APIs are enabled by the platform team's project factory, not by this deployment.
  enable_apis = var.enable_apis

  secret_ids            = var.secret_ids
  notification_channels = var.notification_channels
  labels                = var.labels
}
