# Secret Manager secrets for infra.settings.SECRET_ENV. The operator creates each secret with its value
# before the first apply (`gcloud secrets create <id> --data-file=-`, docs/deploy.md step 3): Terraform never
# holds a value, and reads only each secret's metadata (the data source below reads no version, so nothing of
# a value reaches the plan or the state). A plan therefore fails, naming the secret
# ("projects/<project>/secrets/<id> not found"), when a secret is missing, instead of deploying functions
# whose revisions cannot start. Terraform grants each secret to the functions that read it, and nothing more.

locals {
  # SECRET_ENV name -> secret id: var.secret_ids, else <prefix>-<name in lower case, dashes for underscores>.
  # Only the secrets of what is switched on (local.deployed_secret_env, main.tf): TWILIO_AUTH_TOKEN only with
  # twilio_enabled.
  secret_ids = {
    for name in keys(local.deployed_secret_env) :
    name => lookup(var.secret_ids, name, "${var.name_prefix}-${lower(replace(name, "_", "-"))}")
  }
}

data "google_secret_manager_secret" "this" {
  for_each = local.secret_ids

  project   = var.project_id
  secret_id = each.value
}

# Until this version the module created the (empty) secrets itself. Existing states forget them without
# deleting them: the secrets and their values stay, and the data source above reads them.
removed {
  from = google_secret_manager_secret.this

  lifecycle {
    destroy = false
  }
}

locals {
  # "<SECRET_ENV name>/<function>" -> pair, one accessor grant each.
  secret_grants = {
    for pair in flatten([
      for name, fns in local.deployed_secret_env : [for fn in fns : { secret = name, function = fn }]
    ]) : "${pair.secret}/${pair.function}" => pair
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_grants

  project   = var.project_id
  secret_id = data.google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.function].email}"
}
