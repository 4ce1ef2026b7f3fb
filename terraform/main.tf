# What is deployed and how the pieces refer to each other. The literal maps below restate facts the Python
# code owns (main.ENTRY_POINTS, infra.settings.ENV/SECRET_ENV, infra.collections); the contract test
# tests/deploy/test_terraform_contract.py fails whenever the two drift apart, and the Terraform tests
# (tests/*.tftest.hcl) check the plan's invariants. The module reads nothing outside its own folder: the
# code comes in through var.source_dir or var.source_archive.

# The project's number, for the functions' deterministic URLs. Read at plan time (Cloud Resource Manager is
# one of the APIs bootstrap.sh enables before Terraform runs), so the plan shows every URL.
data "google_project" "this" {
  project_id = var.project_id
}

locals {
  gateway_region     = var.gateway_region != "" ? var.gateway_region : var.region
  firestore_location = var.firestore_location != "" ? var.firestore_location : var.region
  labels             = merge({ app = "mmsgate", "managed-by" = "terraform" }, var.labels)

  # Every function of main.ENTRY_POINTS (entry point = key). public: reachable through API Gateway;
  # enqueues: the Cloud Tasks queues its code creates tasks on, and no other (the contract test follows each
  # entry point's calls to the queue helpers): dispatch carries legs, fan-outs and batch chunks, notify
  # customer events and inbound messages. media: stores or signs media in the media bucket.
  # timeout: at least the longest API Gateway deadline of the paths it serves (openapi-gateway.yaml.tftpl).
  functions = {
    send = {
      description = "POST /api/v1/messages/sms: accept one MMS and enqueue its leg."
      public      = true
      timeout     = 60
      enqueues    = ["dispatch", "notify"]
      media       = true
    }
    group = {
      description = "POST /api/v1/messages/group: accept a group MMS and enqueue one leg per recipient."
      public      = true
      timeout     = 60
      enqueues    = ["dispatch", "notify"]
      media       = true
    }
    batch = {
      description = "POST /api/v1/messages/batch: accept up to 10,000 recipients and enqueue chunk tasks on the dispatch queue; GET a batch's progress; DELETE cancels it."
      public      = true
      timeout     = 60
      enqueues    = ["dispatch"]
      media       = true
    }
    messages = {
      description = "The messages already sent: GET a message, a group, search and pricing; DELETE cancels a message or a group's messages; POST redacts."
      public      = true
      timeout     = 60
      enqueues    = ["notify"]
      media       = true
    }
    optouts = {
      description = "The opt-out API: list, read, add and remove numbers, and import up to 10,000 (60 s: the gateway's deadline of the import)."
      public      = true
      timeout     = 60
      enqueues    = []
      media       = false
    }
    templates = {
      description = "The template API: create, list, read, edit (a new version), archive and preview message templates with personalisation."
      public      = true
      timeout     = 30
      enqueues    = []
      media       = false
    }
    webhook = {
      description = "POST /webhooks/telnyx and /webhooks/twilio: verify and record each carrier's delivery reports and inbound messages; start SMS failovers and keyword replies."
      public      = true
      timeout     = 30
      enqueues    = ["dispatch", "notify"]
      media       = false
    }
    links = {
      description = "GET /l/{code}: the short links of tracked sends; 302 to the stored URL and a link.clicked event for the customer."
      public      = true
      timeout     = 30
      enqueues    = ["notify"]
      media       = false
    }
    sweeper = {
      description = "Cloud Scheduler target: re-enqueue stuck legs, close stale ones, and assess each carrier's health."
      public      = false
      timeout     = 300
      enqueues    = ["dispatch", "notify"]
      media       = false
    }
    dispatch = {
      description = "Cloud Tasks target: send one recipient leg through its carrier (Telnyx or Twilio), failing over once."
      public      = false
      timeout     = 120
      enqueues    = ["dispatch", "notify"]
      media       = true
    }
    notifier = {
      description = "Cloud Tasks target: deliver one signed customer webhook; copy an inbound message's media and send its keyword reply."
      public      = false
      timeout     = 60
      enqueues    = ["dispatch", "notify"]
      media       = true
    }
  }

  # Public functions sit behind API Gateway; private ones are invoked only by Cloud Tasks or Scheduler.
  public_functions  = { for name, fn in local.functions : name => fn if fn.public }
  private_functions = { for name, fn in local.functions : name => fn if !fn.public }

  # Each function's URL, known before any function exists: Cloud Run's deterministic URL
  # https://<service>-<project number>.<region>.run.app (a gen2 function's service has the function's
  # name). With it no function waits for another's URL, dispatch can re-enqueue onto itself, and the
  # gateway (whose hostname TELNYX_WEBHOOK_URL needs) does not wait for the functions: one apply, no cycle.
  function_urls = {
    for name in keys(local.functions) :
    name => "https://${var.name_prefix}-${name}-${data.google_project.this.number}.${var.region}.run.app"
  }

  # Queue ids carry the deployment's prefix, so two deployments in one project and region do not collide;
  # the functions learn them from DISPATCH_QUEUE and NOTIFY_QUEUE.
  queue_ids = {
    dispatch = "${var.name_prefix}-dispatch"
    notify   = "${var.name_prefix}-notify"
  }

  # infra.settings.SECRET_ENV: secret environment variable -> functions that receive it.
  secret_env = {
    TELNYX_API_KEY      = ["dispatch"]
    TELNYX_PUBLIC_KEY   = ["webhook"]
    TWILIO_AUTH_TOKEN   = ["dispatch", "webhook"]
    WEBHOOK_SIGNING_KEY = ["notifier", "messages"]
  }

  # The secrets of a carrier that is switched off are neither read nor granted nor set on any function: a
  # deployment without Twilio needs no Twilio secret (the code reads an unset TWILIO_AUTH_TOKEN as "no
  # Twilio", and refuses every /webhooks/twilio request then).
  optional_secrets = {
    TWILIO_AUTH_TOKEN = var.twilio_enabled
  }
  deployed_secret_env = { for name, fns in local.secret_env : name => fns if lookup(local.optional_secrets, name, true) }

  # infra.collections.TTL_FIELDS: collection -> timestamp field Firestore TTL deletes on.
  firestore_ttl_fields = {
    messages        = "delete_at"
    groups          = "delete_at"
    conversations   = "delete_at"
    batches         = "delete_at"
    batch_chunks    = "delete_at"
    idempotency     = "expires_at"
    rate_limits     = "expires_at"
    provider_events = "expires_at"
    carrier_slots   = "expires_at"
    links           = "expires_at"
  }

  # infra.collections.COMPOSITE_INDEXES, keyed by a readable id.
  firestore_composite_indexes = {
    # the sweeper: legs in one status, not final, that entered it before a cutoff
    "messages-status-final-status_since" = {
      collection = "messages"
      fields     = [["status", "ASCENDING"], ["final", "ASCENDING"], ["status_since", "ASCENDING"]]
    }
    # the sweeper: scheduled legs whose time has come (their task may never have been created)
    "messages-status-scheduled_at" = {
      collection = "messages"
      fields     = [["status", "ASCENDING"], ["scheduled_at", "ASCENDING"]]
    }
    # the sweeper: queued or scheduled legs whose validity has ended
    "messages-status-valid_until" = {
      collection = "messages"
      fields     = [["status", "ASCENDING"], ["valid_until", "ASCENDING"]]
    }
    # the sweeper: batch chunks whose work is not done (their task may have been lost)
    "batch_chunks-todo-updated_at" = {
      collection = "batch_chunks"
      fields     = [["todo", "ASCENDING"], ["updated_at", "ASCENDING"]]
    }
    # message search (shared/searching.py SEARCH_INDEXES): tenant_id, the equality filters it allows, newest first
    "messages-tenant_id-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-status-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["status", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-to-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["to", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-from-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["from", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-group_id-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["group_id", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-batch_id-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["batch_id", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-client_ref-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["client_ref", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-direction-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["direction", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-group_id-status-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["group_id", "ASCENDING"], ["status", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-batch_id-status-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["batch_id", "ASCENDING"], ["status", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-direction-status-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["direction", "ASCENDING"], ["status", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-direction-to-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["direction", "ASCENDING"], ["to", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    "messages-tenant_id-direction-from-created_at" = {
      collection = "messages"
      fields     = [["tenant_id", "ASCENDING"], ["direction", "ASCENDING"], ["from", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
  }

  media_allowed_hosts = concat(
    ["storage.googleapis.com", "${google_storage_bucket.media.name}.storage.googleapis.com"],
    var.extra_allowed_hosts,
  )

  # The gateway's own https://<hostname> is the one public origin (no custom domain is deployed).
  public_base_url    = "https://${google_api_gateway_gateway.this.default_hostname}"
  telnyx_webhook_url = "${local.public_base_url}/webhooks/telnyx"
  # Twilio signs the URL it calls: the functions must know it exactly as the number's webhook is set.
  twilio_webhook_url = "${local.public_base_url}/webhooks/twilio"
  # Short links (<origin>/l/<code>) are on the operator's link domain, which must route to the gateway, or
  # else on the gateway's own origin.
  link_base_url = var.link_domain != "" ? "https://${var.link_domain}" : local.public_base_url

  # CARRIER_WEIGHTS as the code reads it: telnyx=70,twilio=30 (infra/settings.py carrier_weights).
  carrier_weights = join(",", [for carrier, weight in var.carrier_weights : "${carrier}=${weight}"])

  # Plain configuration, the same for every function: infra.settings.ENV minus the secrets (those come
  # from Secret Manager, secrets.tf) and minus the local-stack-only escape hatch.
  env = {
    GOOGLE_CLOUD_PROJECT            = var.project_id
    TASKS_LOCATION                  = var.region
    DISPATCH_QUEUE                  = google_cloud_tasks_queue.dispatch.name
    NOTIFY_QUEUE                    = google_cloud_tasks_queue.notify.name
    DISPATCH_URL                    = local.function_urls["dispatch"]
    NOTIFIER_URL                    = local.function_urls["notifier"]
    TASKS_INVOKER_SA                = google_service_account.tasks_invoker.email
    DISPATCH_MAX_ATTEMPTS           = tostring(var.dispatch_max_attempts)
    TELNYX_BASE_URL                 = var.telnyx_base_url
    TELNYX_WEBHOOK_URL              = local.telnyx_webhook_url
    TWILIO_BASE_URL                 = var.twilio_base_url
    TWILIO_ACCOUNT_SID              = var.twilio_enabled ? var.twilio_account_sid : ""
    TWILIO_WEBHOOK_URL              = local.twilio_webhook_url
    CARRIER_WEIGHTS                 = local.carrier_weights
    CARRIER_ERROR_BURST             = var.carrier_error_burst
    MEDIA_BUCKET                    = google_storage_bucket.media.name
    MEDIA_ALLOWED_HOSTS             = join(",", local.media_allowed_hosts)
    INBOUND_MEDIA_HOSTS             = join(",", var.inbound_media_hosts)
    MEDIA_MAX_BYTES                 = tostring(var.media_max_bytes)
    MEDIA_URL_TTL_SECONDS           = tostring(var.media_url_ttl_seconds)
    MEDIA_FETCH_TIMEOUT_SECONDS     = tostring(var.media_fetch_timeout_seconds)
    SWEEP_QUEUED_AFTER_SECONDS      = tostring(var.sweep_queued_after_seconds)
    BATCH_LEGS_PER_SECOND           = tostring(var.batch_legs_per_second)
    LINK_BASE_URL                   = local.link_base_url
    SWEEP_FINAL_AFTER_SECONDS       = tostring(var.sweep_final_after_seconds)
    DISPATCH_CLAIM_LEASE_SECONDS    = tostring(var.dispatch_claim_lease_seconds)
    DISPATCH_LOOKUP_HORIZON_SECONDS = tostring(var.dispatch_lookup_horizon_seconds)
    FIRESTORE_DATABASE              = local.firestore_database
    LOG_LEVEL                       = var.log_level
  }

  # --- Source --------------------------------------------------------------------------------------------
  # With var.source_dir, only what the functions import goes into the archive: main.py and requirements.txt
  # at its root, and the packages below; tests, tools, bench, docs, terraform, virtualenvs and caches stay
  # out. With var.source_archive, the caller's prebuilt zip (the same layout) is used as it is.
  source_dirs       = ["functions", "shared", "infra"]
  source_extensions = ["py", "json", "yaml", "yml", "csv", "txt"]
  source_files = var.source_dir == null ? toset([]) : toset(concat(
    ["main.py", "requirements.txt"],
    flatten([
      for dir in local.source_dirs : [
        for ext in local.source_extensions : tolist(fileset(var.source_dir, "${dir}/**/*.${ext}"))
      ]
    ]),
  ))

  # Where every function's build reads the code from.
  source = var.source_archive != null ? var.source_archive : {
    bucket     = one(google_storage_bucket_object.source[*].bucket)
    object     = one(google_storage_bucket_object.source[*].name)
    generation = null
  }
}

# One archive for every function, built from file contents only (no timestamps or modes), so its hash
# changes exactly when the code or the dependency list changes. Written under the root module's .terraform
# folder, which exists wherever the module is called from (the module's own folder may be read-only).
data "archive_file" "source" {
  count = var.source_dir != null && var.source_archive == null ? 1 : 0

  type        = "zip"
  output_path = "${path.root}/.terraform/${var.name_prefix}-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      content  = file("${var.source_dir}/${source.value}")
      filename = source.value
    }
  }
}

# Named by the archive's hash: a code change is a new object, which changes every function's
# build_config and so redeploys them.
resource "google_storage_bucket_object" "source" {
  count = length(data.archive_file.source)

  name         = "source/${data.archive_file.source[0].output_sha256}.zip"
  bucket       = google_storage_bucket.source.name
  source       = data.archive_file.source[0].output_path
  content_type = "application/zip"
}

moved {
  from = google_storage_bucket_object.source
  to   = google_storage_bucket_object.source[0]
}
