# Secret Manager secrets for infra.settings.SECRET_ENV. Terraform creates the secrets and who may read
# them, never their values: the operator adds each value with gcloud (docs/deploy.md), so no secret value
# is ever a Terraform variable or lands in Terraform state.

resource "google_secret_manager_secret" "this" {
  for_each = local.secret_env

  project   = var.project_id
  secret_id = "${var.name_prefix}-${lower(replace(each.key, "_", "-"))}"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

locals {
  # "<SECRET_ENV name>/<function>" -> pair, one accessor grant each.
  secret_grants = {
    for pair in flatten([
      for name, fns in local.secret_env : [for fn in fns : { secret = name, function = fn }]
    ]) : "${pair.secret}/${pair.function}" => pair
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_grants

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.function].email}"
}
