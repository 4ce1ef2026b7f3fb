# The seven Cloud Run functions (2nd gen), all built from the one source archive, each with entry_point =
# its name in main.ENTRY_POINTS and its own runtime service account. Creation order breaks the URL
# cycle: notifier first (it enqueues nothing), then dispatch (needs NOTIFIER_URL), then the rest (need
# both URLs). Nothing reads its own URL.

# Images of the functions, in a repository the build account may write to (and nothing else).
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Images hold only the open-source code and its public dependencies; Google-managed encryption is the default, and operators who require CMEK add kms_key_name here.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  format        = "DOCKER"
  description   = "Container images of the mmsgate functions."
  labels        = local.labels

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_cloudfunctions2_function" "notifier" {
  name        = "${var.name_prefix}-notifier"
  project     = var.project_id
  location    = var.region
  description = local.functions.notifier.description
  labels      = local.labels

  build_config {
    runtime           = var.python_runtime
    entry_point       = "notifier"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function["notifier"].email
    ingress_settings                 = var.private_ingress
    all_traffic_on_latest_revision   = true
    min_instance_count               = lookup(var.min_instances, "notifier", 0)
    max_instance_count               = lookup(var.max_instances, "notifier", 20)
    max_instance_request_concurrency = var.function_concurrency
    available_memory                 = var.function_memory
    available_cpu                    = var.function_cpu
    timeout_seconds                  = local.functions.notifier.timeout
    environment_variables            = local.env_notifier

    dynamic "secret_environment_variables" {
      for_each = { for name, fns in local.secret_env : name => google_secret_manager_secret.this[name].secret_id if contains(fns, "notifier") }
      content {
        key        = secret_environment_variables.key
        project_id = data.google_project.this.number
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build_log_writer,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_secret_manager_secret_iam_member.accessor,
  ]
}

resource "google_cloudfunctions2_function" "dispatch" {
  name        = "${var.name_prefix}-dispatch"
  project     = var.project_id
  location    = var.region
  description = local.functions.dispatch.description
  labels      = local.labels

  build_config {
    runtime           = var.python_runtime
    entry_point       = "dispatch"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function["dispatch"].email
    ingress_settings                 = var.private_ingress
    all_traffic_on_latest_revision   = true
    min_instance_count               = lookup(var.min_instances, "dispatch", 0)
    max_instance_count               = lookup(var.max_instances, "dispatch", 20)
    max_instance_request_concurrency = var.function_concurrency
    available_memory                 = var.function_memory
    available_cpu                    = var.function_cpu
    timeout_seconds                  = local.functions.dispatch.timeout
    environment_variables            = local.env_dispatch

    dynamic "secret_environment_variables" {
      for_each = { for name, fns in local.secret_env : name => google_secret_manager_secret.this[name].secret_id if contains(fns, "dispatch") }
      content {
        key        = secret_environment_variables.key
        project_id = data.google_project.this.number
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build_log_writer,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_secret_manager_secret_iam_member.accessor,
  ]
}

# send, group, reads, webhook (public, behind API Gateway) and sweeper (private, Cloud Scheduler).
resource "google_cloudfunctions2_function" "service" {
  #checkov:skip=CKV_GCP_124:send, group, reads and webhook sit behind API Gateway, which is not an internal ingress source, so they need ALLOW_ALL; they admit only the gateway's service account (run.invoker) and check API keys or Telnyx signatures themselves. The sweeper gets var.private_ingress.
  for_each = local.service_functions

  name        = "${var.name_prefix}-${each.key}"
  project     = var.project_id
  location    = var.region
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime           = var.python_runtime
    entry_point       = each.key
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket_object.source.bucket
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = each.value.public ? "ALLOW_ALL" : var.private_ingress
    all_traffic_on_latest_revision   = true
    min_instance_count               = lookup(var.min_instances, each.key, 0)
    max_instance_count               = lookup(var.max_instances, each.key, 20)
    max_instance_request_concurrency = var.function_concurrency
    available_memory                 = var.function_memory
    available_cpu                    = var.function_cpu
    timeout_seconds                  = each.value.timeout
    environment_variables            = local.env_service

    dynamic "secret_environment_variables" {
      for_each = { for name, fns in local.secret_env : name => google_secret_manager_secret.this[name].secret_id if contains(fns, each.key) }
      content {
        key        = secret_environment_variables.key
        project_id = data.google_project.this.number
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build_log_writer,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_secret_manager_secret_iam_member.accessor,
  ]
}

locals {
  function_urls = merge(
    {
      notifier = google_cloudfunctions2_function.notifier.service_config[0].uri
      dispatch = google_cloudfunctions2_function.dispatch.service_config[0].uri
    },
    { for name, fn in google_cloudfunctions2_function.service : name => fn.service_config[0].uri },
  )
  public_function_names = toset([for name, fn in local.service_functions : name if fn.public])
}

# --- Invokers (roles/run.invoker on each function's Cloud Run service) ----------------------------------
# No function is open to anyone: the public ones admit only API Gateway's account, the private ones only
# the account that Cloud Tasks or Cloud Scheduler signs its OIDC token with.

resource "google_cloud_run_service_iam_member" "dispatch_invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.dispatch.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks_invoker.email}"
}

resource "google_cloud_run_service_iam_member" "notifier_invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.notifier.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks_invoker.email}"
}

resource "google_cloud_run_service_iam_member" "sweeper_invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.service["sweeper"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_run_service_iam_member" "gateway_invoker" {
  for_each = local.public_function_names

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.service[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}
