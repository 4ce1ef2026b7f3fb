# The plan's invariants (docs/deploy.md, "Checks"), in Terraform's own test framework: plan only, against the
# offline provider stand-in (tools/tfstub) in `make test` (tests/deploy/test_terraform_test.py), or against
# the real providers with credentials. What the code needs comes in as variables the test harness derives from
# the code itself (tests/deploy/code_facts.py): the TTL fields of infra/collections.py and the composite
# indexes its Firestore queries need, read from the queries. Nothing of it is copied here.
#
#   terraform init && terraform test -var-file=<code facts>.tfvars.json     (Terraform 1.11 or later)

variables {
  project_id  = "mmsgate-tftest"
  name_prefix = "tst9"
  source_archive = {
    bucket = "mmsgate-tftest-artifacts"
    object = "mmsgate/0123abcd.zip"
  }
}

# Service-account emails are known only after apply; the invoker grants name them. Give the callers' accounts
# their real, deterministic emails during the plan so that who may invoke what can be compared.
override_resource {
  target          = google_service_account.gateway
  override_during = plan
  values = {
    email = "tst9-gateway@mmsgate-tftest.iam.gserviceaccount.com"
  }
}

override_resource {
  target          = google_service_account.tasks_invoker
  override_during = plan
  values = {
    email = "tst9-tasks-invoker@mmsgate-tftest.iam.gserviceaccount.com"
  }
}

override_resource {
  target          = google_service_account.scheduler
  override_during = plan
  values = {
    email = "tst9-scheduler@mmsgate-tftest.iam.gserviceaccount.com"
  }
}

# The project number (in every function's deterministic URL) is read once the APIs are enabled; the check
# block in functions.tf then compares Cloud Run's URLs with those. Give both their real shape.
override_data {
  target          = data.google_project.this
  override_during = plan
  values = {
    number = "123456789012"
  }
}

override_data {
  target          = data.google_cloud_run_v2_service.dispatch
  override_during = plan
  values = {
    urls = ["https://tst9-dispatch-123456789012.us-central1.run.app"]
  }
}

run "invariants" {
  command = plan

  # --- Who may invoke what ----------------------------------------------------------------------------------

  assert {
    condition = (
      toset([for g in google_cloud_run_service_iam_member.tasks_invoker : "${g.service} ${g.role} ${g.member}"]) ==
      toset(["tst9-dispatch roles/run.invoker serviceAccount:tst9-tasks-invoker@mmsgate-tftest.iam.gserviceaccount.com",
      "tst9-notifier roles/run.invoker serviceAccount:tst9-tasks-invoker@mmsgate-tftest.iam.gserviceaccount.com"])
    )
    error_message = "dispatch and notifier must be invokable by the Cloud Tasks invoker account, and by it alone."
  }

  assert {
    condition = (
      "${google_cloud_run_service_iam_member.scheduler_invoker.service} ${google_cloud_run_service_iam_member.scheduler_invoker.role} ${google_cloud_run_service_iam_member.scheduler_invoker.member}" ==
      "tst9-sweeper roles/run.invoker serviceAccount:tst9-scheduler@mmsgate-tftest.iam.gserviceaccount.com"
    )
    error_message = "The sweeper must be invokable by the Cloud Scheduler account alone."
  }

  assert {
    condition = (
      toset([for g in google_cloud_run_service_iam_member.gateway_invoker : "${g.service} ${g.role} ${g.member}"]) ==
      toset([for name in ["send", "group", "batch", "messages", "optouts", "templates", "webhook", "links"] :
      "tst9-${name} roles/run.invoker serviceAccount:tst9-gateway@mmsgate-tftest.iam.gserviceaccount.com"])
    )
    error_message = "API Gateway's account must invoke exactly the eight public functions, and no private one."
  }

  assert {
    condition = alltrue([
      for g in concat(values(google_cloud_run_service_iam_member.tasks_invoker), values(google_cloud_run_service_iam_member.gateway_invoker),
      [google_cloud_run_service_iam_member.scheduler_invoker]) : !contains(["allUsers", "allAuthenticatedUsers"], g.member)
    ])
    error_message = "No function may be invokable by allUsers or allAuthenticatedUsers."
  }

  assert {
    condition = (
      alltrue([for f in google_cloudfunctions2_function.private : f.service_config[0].ingress_settings == "ALLOW_INTERNAL_ONLY"]) &&
      toset(keys(google_cloudfunctions2_function.private)) == toset(["dispatch", "notifier", "sweeper"])
    )
    error_message = "The private functions (dispatch, notifier, sweeper) must refuse internet traffic."
  }

  # --- Every name that must be unique in a project or region carries the prefix -----------------------------

  assert {
    condition = alltrue([
      for name in concat(
        [for f in google_cloudfunctions2_function.public : f.name],
        [for f in google_cloudfunctions2_function.private : f.name],
        [for a in google_service_account.function : a.account_id],
        [google_service_account.tasks_invoker.account_id, google_service_account.scheduler.account_id,
        google_service_account.gateway.account_id, google_service_account.build.account_id],
        [google_storage_bucket.media.name, google_storage_bucket.source.name, google_storage_bucket.access_logs.name],
        [google_cloud_tasks_queue.dispatch.name, google_cloud_tasks_queue.notify.name],
        [google_cloud_scheduler_job.sweep.name],
        [google_artifact_registry_repository.functions.repository_id],
        [google_api_gateway_api.this.api_id, google_api_gateway_api_config.this.api_config_id_prefix,
        google_api_gateway_gateway.this.gateway_id],
        [for m in google_logging_metric.counter : m.name],
        [for m in google_logging_metric.distribution : m.name],
        [google_monitoring_alert_policy.function_errors.display_name, google_monitoring_alert_policy.dispatch_backlog.display_name,
        google_monitoring_alert_policy.webhook_gave_up.display_name, google_monitoring_alert_policy.invalid_signatures.display_name],
        [google_monitoring_alert_policy.carrier_unhealthy.display_name],
        [jsondecode(google_monitoring_dashboard.overview.dashboard_json).displayName],
        [for d in google_firestore_database.this : d.name],
        [for s in data.google_secret_manager_secret.this : s.secret_id],
        [google_project_iam_member.build_staged_source_reader.condition[0].title],
      ) : can(regex("(^|[-( ])tst9([-/:) ]|$)", name))
    ])
    error_message = "Every name that must be unique in the project or region carries name_prefix."
  }

  # --- Firestore: what the code needs ---------------------------------------------------------------------

  assert {
    condition     = google_firestore_database.this[0].name == "tst9-db" && google_firestore_database.this[0].type == "FIRESTORE_NATIVE"
    error_message = "The deployment's own Native-mode database is <prefix>-db."
  }

  assert {
    condition     = alltrue([for f in concat(values(google_firestore_field.ttl), values(google_firestore_index.composite)) : f.database == "tst9-db"])
    error_message = "The TTL policies and indexes must be on the deployment's database."
  }

  assert {
    condition     = google_cloudfunctions2_function.private["dispatch"].service_config[0].environment_variables["FIRESTORE_DATABASE"] == "tst9-db"
    error_message = "The functions must read the deployment's database (FIRESTORE_DATABASE)."
  }

  assert {
    condition = alltrue([
      for collection, field in var.code_ttl_fields : anytrue([
        for f in google_firestore_field.ttl : f.collection == collection && f.field == field && length(f.ttl_config) == 1
      ])
    ])
    error_message = "A TTL field the code sets (infra/collections.py TTL_FIELDS) has no TTL policy."
  }

  assert {
    condition = alltrue([
      for need in var.code_index_needs : anytrue([
        for index in [
          for i in values(google_firestore_index.composite) : i
          if i.collection == need.collection && length(i.fields) == length(need.equality) + length(need.tail)
        ] :
        jsonencode(sort([for f in slice(index.fields, 0, length(need.equality)) : f.field_path])) == jsonencode(sort(need.equality)) &&
        jsonencode([for f in slice(index.fields, length(need.equality), length(index.fields)) : f.field_path]) == jsonencode([for t in need.tail : t.field]) &&
        alltrue([for i, t in need.tail : t.order == null || index.fields[length(need.equality) + i].order == t.order])
      ])
    ])
    error_message = "A Firestore query of the code (or a search it allows) has no composite index: equality fields first, then the range and order fields."
  }

  # --- Every alert and dashboard chart reads a metric that exists -------------------------------------------

  assert {
    condition = alltrue(flatten([
      for policy in [google_monitoring_alert_policy.function_errors, google_monitoring_alert_policy.dispatch_backlog,
        google_monitoring_alert_policy.webhook_gave_up, google_monitoring_alert_policy.invalid_signatures,
        google_monitoring_alert_policy.carrier_unhealthy] : [
        for condition in policy.conditions : [
          for threshold in condition.condition_threshold : [
            for metric in regexall("metric\\.type = \"([^\"]+)\"", join(" ", compact([threshold.filter, threshold.denominator_filter]))) :
            contains(var.google_metric_types, metric[0]) ||
            contains([for m in concat(values(google_logging_metric.counter), values(google_logging_metric.distribution)) : "logging.googleapis.com/user/${m.name}"], metric[0])
          ]
        ]
      ]
    ]))
    error_message = "An alert policy reads a metric that is neither a Google metric nor a log-based metric of this deployment."
  }

  assert {
    condition = alltrue([
      for metric in regexall("logging\\.googleapis\\.com/user/([A-Za-z0-9_/.-]+)", google_monitoring_dashboard.overview.dashboard_json) :
      contains([for m in concat(values(google_logging_metric.counter), values(google_logging_metric.distribution)) : m.name], metric[0])
    ])
    error_message = "The dashboard charts a log-based metric this deployment does not create."
  }

  # Another deployment whose prefix starts with this one ("tst9-eu") must not be counted: the filters name
  # this deployment's ten services exactly.
  assert {
    condition = alltrue([
      for filter in concat(
        [for m in concat(values(google_logging_metric.counter), values(google_logging_metric.distribution)) : m.filter],
        [google_monitoring_alert_policy.function_errors.conditions[0].condition_threshold[0].filter,
        google_monitoring_alert_policy.function_errors.conditions[0].condition_threshold[0].denominator_filter],
      ) : length(regexall("tst9-\\((batch|dispatch|group|links|messages|notifier|optouts|send|sweeper|templates|webhook)(\\|(batch|dispatch|group|links|messages|notifier|optouts|send|sweeper|templates|webhook)){10}\\)", filter)) == 1 && !strcontains(filter, "tst9-.*")
    ])
    error_message = "A metric or alert filter must match exactly this deployment's ten services."
  }

  assert {
    condition = alltrue([
      for policy in [google_monitoring_alert_policy.webhook_gave_up, google_monitoring_alert_policy.invalid_signatures,
      google_monitoring_alert_policy.carrier_unhealthy] :
      length(regexall("logging\\.googleapis\\.com/user/", policy.conditions[0].condition_threshold[0].filter)) > 0
    ])
    error_message = "The give-up, signature and carrier-health alerts must read their log-based metrics."
  }

  # --- Carriers: the default is Telnyx alone, unchanged -----------------------------------------------------

  assert {
    condition = (
      !contains(keys(data.google_secret_manager_secret.this), "TWILIO_AUTH_TOKEN") &&
      alltrue([for key in keys(google_secret_manager_secret_iam_member.accessor) : !startswith(key, "TWILIO_AUTH_TOKEN/")]) &&
      alltrue([for f in concat(values(google_cloudfunctions2_function.public), values(google_cloudfunctions2_function.private)) :
      !contains([for s in f.service_config[0].secret_environment_variables : s.key], "TWILIO_AUTH_TOKEN")])
    )
    error_message = "Without twilio_enabled no Twilio secret may be read, granted or set: Telnyx alone needs none."
  }

  assert {
    condition = (
      google_cloudfunctions2_function.private["dispatch"].service_config[0].environment_variables["TWILIO_ACCOUNT_SID"] == "" &&
      google_cloudfunctions2_function.private["dispatch"].service_config[0].environment_variables["CARRIER_WEIGHTS"] == "telnyx=100"
    )
    error_message = "By default Twilio is no carrier (no account SID) and Telnyx takes every send (CARRIER_WEIGHTS telnyx=100)."
  }
}

# Twilio as a second carrier: its token is read, granted to dispatch and webhook alone and set on them, the
# account SID and the weights reach the functions, and Twilio's webhook is the gateway's /webhooks/twilio.
run "twilio" {
  command = plan

  variables {
    twilio_enabled     = true
    twilio_account_sid = "AC0123456789abcdef0123456789abcdef"
    carrier_weights    = { telnyx = 70, twilio = 30 }
  }

  assert {
    condition     = data.google_secret_manager_secret.this["TWILIO_AUTH_TOKEN"].secret_id == "tst9-twilio-auth-token"
    error_message = "With twilio_enabled the plan must read the <prefix>-twilio-auth-token secret."
  }

  assert {
    condition = (
      toset([for key in keys(google_secret_manager_secret_iam_member.accessor) : key if startswith(key, "TWILIO_AUTH_TOKEN/")]) ==
      toset(["TWILIO_AUTH_TOKEN/dispatch", "TWILIO_AUTH_TOKEN/webhook"])
    )
    error_message = "The Twilio token must be granted to dispatch and webhook, and to no other function."
  }

  assert {
    condition = alltrue([
      for name, f in merge(google_cloudfunctions2_function.public, google_cloudfunctions2_function.private) :
      contains([for s in f.service_config[0].secret_environment_variables : s.key], "TWILIO_AUTH_TOKEN") == contains(["dispatch", "webhook"], name)
    ])
    error_message = "Exactly dispatch and webhook must get TWILIO_AUTH_TOKEN."
  }

  assert {
    condition = (
      google_cloudfunctions2_function.private["dispatch"].service_config[0].environment_variables["TWILIO_ACCOUNT_SID"] == "AC0123456789abcdef0123456789abcdef" &&
      google_cloudfunctions2_function.private["dispatch"].service_config[0].environment_variables["CARRIER_WEIGHTS"] == "telnyx=70,twilio=30"
    )
    error_message = "The functions must get the Twilio account SID and CARRIER_WEIGHTS as carrier=weight pairs."
  }
}

# Twilio settings the variables refuse: enabled without an account SID, a weight out of range or fractional,
# a carrier mmsgate has no adapter for, a Twilio share while Twilio is off, a malformed error burst.
run "bad_carrier_inputs" {
  command = plan

  variables {
    twilio_enabled      = true
    twilio_account_sid  = ""
    carrier_weights     = { telnyx = 100.5, vonage = 10 }
    carrier_error_burst = "50/5"
  }

  expect_failures = [
    var.twilio_account_sid,
    var.carrier_weights,
    var.carrier_error_burst,
  ]
}

run "twilio_share_without_twilio" {
  command = plan

  variables {
    carrier_weights = { telnyx = 50, twilio = 50 }
  }

  expect_failures = [
    var.carrier_weights,
  ]
}

# What the variables refuse, in one plan: no source (the code comes from exactly one place: source_dir or
# source_archive), a prefix that would break names, a database id Firestore refuses.
run "bad_inputs" {
  command = plan

  variables {
    source_archive     = null
    name_prefix        = "Not_A_Prefix"
    firestore_database = "x"
  }

  expect_failures = [
    var.source_archive,
    var.name_prefix,
    var.firestore_database,
  ]
}
