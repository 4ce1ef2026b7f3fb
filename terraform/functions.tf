# The ten Cloud Run functions (2nd gen), all built from the one source archive, each with entry_point =
# its name in main.ENTRY_POINTS, its own runtime service account and the same configuration (local.env,
# whose function URLs are the deterministic ones from main.tf, so no function waits for another).

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

# send, group, batch, messages, optouts, templates, webhook and links: behind API Gateway.
resource "google_cloudfunctions2_function" "public" {
  #checkov:skip=CKV_GCP_124:API Gateway is not an internal ingress source, so the functions it fronts need ALLOW_ALL; IAM still admits only the gateway's service account (run.invoker), and the functions check API keys or the carriers' signatures themselves.
  for_each = local.public_functions

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
        bucket     = local.source.bucket
        object     = local.source.object
        generation = local.source.generation
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    min_instance_count               = lookup(var.min_instances, each.key, 0)
    max_instance_count               = lookup(var.max_instances, each.key, 20)
    max_instance_request_concurrency = var.function_concurrency
    available_memory                 = lookup(var.function_memory_overrides, each.key, var.function_memory)
    available_cpu                    = var.function_cpu
    timeout_seconds                  = each.value.timeout
    environment_variables            = local.env

    dynamic "secret_environment_variables" {
      for_each = { for name, fns in local.deployed_secret_env : name => data.google_secret_manager_secret.this[name].secret_id if contains(fns, each.key) }
      content {
        key        = secret_environment_variables.key
        project_id = data.google_project.this.number
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  # The build account's and the runtime account's grants, and the time they take to propagate (iam.tf).
  depends_on = [
    google_project_service.this,
    time_sleep.iam_propagation,
  ]
}

# dispatch and notifier (Cloud Tasks targets) and sweeper (Cloud Scheduler target).
resource "google_cloudfunctions2_function" "private" {
  for_each = local.private_functions

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
        bucket     = local.source.bucket
        object     = local.source.object
        generation = local.source.generation
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = var.private_ingress
    all_traffic_on_latest_revision   = true
    min_instance_count               = lookup(var.min_instances, each.key, 0)
    max_instance_count               = lookup(var.max_instances, each.key, 20)
    max_instance_request_concurrency = var.function_concurrency
    available_memory                 = lookup(var.function_memory_overrides, each.key, var.function_memory)
    available_cpu                    = var.function_cpu
    timeout_seconds                  = each.value.timeout
    environment_variables            = local.env

    dynamic "secret_environment_variables" {
      for_each = { for name, fns in local.deployed_secret_env : name => data.google_secret_manager_secret.this[name].secret_id if contains(fns, each.key) }
      content {
        key        = secret_environment_variables.key
        project_id = data.google_project.this.number
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  # The build account's and the runtime account's grants, and the time they take to propagate (iam.tf).
  depends_on = [
    google_project_service.this,
    time_sleep.iam_propagation,
  ]
}

# The code reaches functions at the deterministic URLs above. Should Cloud Run ever not serve one (it
# assigns them when the service-name DNS label fits in 63 characters), this check warns at plan/apply. The
# service is looked up by name, not through the function resource, so that the check is decided at plan time
# once the function exists (before that, at the first plan, the lookup finds nothing and only warns).
check "deterministic_function_urls" {
  data "google_cloud_run_v2_service" "dispatch" {
    project  = var.project_id
    location = var.region
    name     = "${var.name_prefix}-dispatch"
  }

  assert {
    condition     = contains(data.google_cloud_run_v2_service.dispatch.urls, local.function_urls["dispatch"])
    error_message = "Cloud Run does not serve the dispatch function at ${local.function_urls["dispatch"]}; DISPATCH_URL and NOTIFIER_URL would not reach the functions."
  }
}

# --- Invokers (roles/run.invoker on each function's Cloud Run service) ----------------------------------
# No function is open to anyone: the public ones admit only API Gateway's account, the private ones only
# the account that Cloud Tasks or Cloud Scheduler signs its OIDC token with.

resource "google_cloud_run_service_iam_member" "gateway_invoker" {
  for_each = local.public_functions

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.public[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_cloud_run_service_iam_member" "tasks_invoker" {
  for_each = toset(["dispatch", "notifier"])

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.private[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks_invoker.email}"
}

resource "google_cloud_run_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.private["sweeper"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}
