# Service accounts and their grants, least privilege: one runtime account per function, each granted only
# what its code does, scoped to the queue, secret, bucket or service account it touches wherever the
# resource has its own IAM policy. Invoker grants (who may call which function) are in functions.tf.
#
#  function  Firestore  enqueue on        actAs tasks-invoker  media bucket  signs URLs  secret
#  send      yes        dispatch, notify  yes                  objectAdmin   yes         -
#  group     yes        dispatch, notify  yes                  objectAdmin   yes         -
#  batch     yes        dispatch          yes                  objectAdmin   yes         -
#  messages  yes        notify            yes                  objectAdmin   yes         WEBHOOK_SIGNING_KEY
#  optouts   yes        -                 -                    -             -           -
#  templates yes        -                 -                    -             -           -
#  webhook   yes        dispatch, notify  yes                  -             -           TELNYX_PUBLIC_KEY
#  sweeper   yes        dispatch, notify  yes                  -             -           -
#  dispatch  yes        dispatch, notify  yes                  objectAdmin   yes         TELNYX_API_KEY
#  notifier  yes        dispatch, notify  yes                  objectAdmin   yes         WEBHOOK_SIGNING_KEY
#  Why each queue (the contract test derives them from the code): send and group enqueue their legs and
#  announce legs that end at once (message.failed); batch only enqueues its chunk tasks (the chunks write and
#  announce the legs, in dispatch) and cancels batches (chunk tasks); messages cancels (message.canceled);
#  optouts enqueues nothing (changes made through the API raise no customer event), nor does templates;
#  webhook records reports and inbound messages (customer events, inbound tasks) and starts SMS failovers
#  (their legs); dispatch re-enqueues rescheduled legs, fans out groups, writes batch chunks and announces
#  results; the notifier retries customer events and sends keyword replies (their legs); the sweeper
#  re-enqueues both. (The notifier also copies inbound media into the bucket and signs its URLs in
#  message.received: shared/services/inbound.py.)

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "${var.name_prefix}-fn-${each.key}"
  display_name = "${var.name_prefix} ${each.key} function"
  description  = each.value.description

  depends_on = [google_project_service.this]
}

# Cloud Tasks presents an OIDC token for this account to dispatch and notifier.
resource "google_service_account" "tasks_invoker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-tasks-invoker"
  display_name = "${var.name_prefix} Cloud Tasks invoker"
  description  = "Identity in the OIDC token of Cloud Tasks HTTP tasks; may invoke dispatch and notifier only."

  depends_on = [google_project_service.this]
}

# Cloud Scheduler presents an OIDC token for this account to the sweeper.
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "${var.name_prefix} Cloud Scheduler invoker"
  description  = "Identity of the sweep job's OIDC token; may invoke the sweeper only."

  depends_on = [google_project_service.this]
}

# API Gateway calls the public functions as this account.
resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-gateway"
  display_name = "${var.name_prefix} API Gateway backend identity"
  description  = "Identity API Gateway uses to call send, group, batch, messages, optouts, templates and webhook."

  depends_on = [google_project_service.this]
}

# Cloud Build runs the functions' builds as this account instead of a broad default account.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "${var.name_prefix} function builds"
  description  = "Builds the functions' images from the source archive."

  depends_on = [google_project_service.this]
}

locals {
  # "<function>/<queue>" -> pair, one enqueuer grant each.
  enqueue_grants = {
    for pair in flatten([
      for fn, cfg in local.functions : [for queue in cfg.enqueues : { function = fn, queue = queue }]
    ]) : "${pair.function}/${pair.queue}" => pair
  }
  enqueuing_functions = toset([for fn, cfg in local.functions : fn if length(cfg.enqueues) > 0])
  media_functions     = toset([for fn, cfg in local.functions : fn if cfg.media])
}

# Firestore has no finer IAM scope than the project's databases.
resource "google_project_iam_member" "firestore_user" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = local.enqueue_grants

  project  = var.project_id
  location = var.region
  name     = local.queues[each.value.queue].name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# Creating a task with an OIDC token for the tasks-invoker account requires actAs on that account.
resource "google_service_account_iam_member" "tasks_invoker_user" {
  for_each = local.enqueuing_functions

  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "media_object_admin" {
  for_each = local.media_functions

  bucket = google_storage_bucket.media.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

# V4 signed URLs from a function have no private key: they are signed through the IAM signBlob API,
# which needs Token Creator on the function's own account (and on no other).
resource "google_service_account_iam_member" "self_token_creator" {
  for_each = local.media_functions

  service_account_id = google_service_account.function[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Build account: write build logs, push images to the functions' repository, read the source.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# A gen2 build does not read our archive where we put it: Cloud Functions first copies it into its own
# bucket gcf-v2-sources-<project number>-<region> (created by Cloud Functions at the first deploy, so it
# cannot be granted on before it exists), and the build fetches it from there as the build account
# ("Access to bucket gcf-v2-sources-... denied. You must grant Storage Object Viewer permission to ...",
# hashicorp/terraform-provider-google#20571). Object Viewer on the project, conditioned on that one
# bucket, is exactly that read and nothing else.
resource "google_project_iam_member" "build_staged_source_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.build.email}"

  condition {
    title       = "${var.name_prefix}-gcf-v2-sources-only"
    description = "Only the Cloud Functions staging bucket of this region."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}\")"
  }
}

locals {
  # Cloud Functions (2nd gen) staging bucket for sources, one per project and region.
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

# A prebuilt archive (var.source_archive) sits in the caller's bucket: the build account reads it there.
resource "google_storage_bucket_iam_member" "build_archive_reader" {
  count = var.source_archive != null ? 1 : 0

  bucket = var.source_archive.bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# IAM is eventually consistent: a grant "typically" takes effect within 2 minutes and "could potentially take
# 7 minutes or longer" (https://cloud.google.com/iam/docs/access-change-propagation). A function deployed
# right after its build account's grants fails about half the time on the gcf-v2-sources bucket
# (hashicorp/terraform-provider-google#20571), and a revision whose runtime account cannot read its secret
# yet does not start. So the functions wait for this sleep, which starts once every grant they need exists.
# It runs again only when those grants change (triggers), not on every apply.
resource "time_sleep" "iam_propagation" {
  create_duration = "${var.iam_propagation_seconds}s"

  triggers = {
    grants = sha256(jsonencode(concat(
      [
        google_project_iam_member.build_log_writer.id,
        google_artifact_registry_repository_iam_member.build_writer.id,
        google_storage_bucket_iam_member.build_source_reader.id,
        google_project_iam_member.build_staged_source_reader.id,
      ],
      [for grant in google_storage_bucket_iam_member.build_archive_reader : grant.id],
      [for key in sort(keys(google_secret_manager_secret_iam_member.accessor)) : google_secret_manager_secret_iam_member.accessor[key].id],
    )))
  }
}
