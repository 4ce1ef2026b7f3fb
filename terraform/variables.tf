# Every input of the deployment. Defaults that mirror a default in infra/settings.py (ENV) are kept equal
# to it by tests/deploy/test_terraform_contract.py.

# --- Project and naming -------------------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "Google Cloud project that holds every resource of the gateway."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID (6-30 lowercase letters, digits and hyphens)."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, Cloud Tasks queues, Cloud Scheduler job and buckets."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1."
  }
}

variable "gateway_region" {
  type        = string
  description = "Region of the API Gateway gateway. Empty means var.region; API Gateway is offered in fewer regions than Cloud Run functions (e.g. us-central1, us-east1, europe-west1, europe-west2, asia-northeast1, australia-southeast1)."
  default     = ""

  validation {
    condition     = var.gateway_region == "" || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.gateway_region))
    error_message = "gateway_region must be empty or a Google Cloud region such as us-central1."
  }
}

variable "firestore_location" {
  type        = string
  description = "Firestore database location (a region such as us-central1, or a multi-region such as nam5). Empty means var.region. Cannot be changed after the database exists."
  default     = ""

  validation {
    condition     = var.firestore_location == "" || can(regex("^([a-z]+-[a-z]+[0-9]+|nam[0-9]+|eur[0-9]+)$", var.firestore_location))
    error_message = "firestore_location must be empty, a region such as us-central1, or a multi-region such as nam5 or eur3."
  }
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the deployment's Firestore database (firestore_database) in Native mode. Set false if it exists already (it must be in Native mode)."
  default     = true
}

variable "firestore_database" {
  type        = string
  description = "Firestore database the deployment uses (FIRESTORE_DATABASE). Empty means <name_prefix>-db, so two deployments in one project keep their data apart. \"(default)\" keeps a deployment made before named databases on the project's default database (with create_firestore_database = false). Cannot be changed after the database exists."
  default     = ""

  validation {
    condition     = var.firestore_database == "" || var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be empty, \"(default)\", or a database id: 4-63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "enable_apis" {
  type        = bool
  description = "Enable the Google APIs the deployment uses (apis.tf). Set false when the caller manages the project's APIs; they must then be enabled before the apply (terraform/README.md lists them)."
  default     = true
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names (functions, service accounts, secrets, buckets, gateway). Lowercase, starts with a letter, at most 12 characters so service-account ids stay within 30."
  default     = "mmsgate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,10}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels keys must start with a lowercase letter, and keys and values hold at most 63 lowercase letters, digits, underscores or hyphens."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the Firestore database from deletion and refuse to delete non-empty buckets on destroy."
  default     = true
}

# --- Source --------------------------------------------------------------------------------------------

variable "source_dir" {
  type        = string
  description = "Directory holding the code to deploy: main.py, requirements.txt, functions/, shared/ and infra/ (the repository's root, as examples/basic passes it). The module archives what the functions import and uploads it, named by its SHA-256. Set exactly one of source_dir and source_archive."
  default     = null

  validation {
    condition     = var.source_dir == null || (fileexists("${coalesce(var.source_dir, ".")}/main.py") && fileexists("${coalesce(var.source_dir, ".")}/requirements.txt"))
    error_message = "source_dir must be a directory holding main.py and requirements.txt (the repository's root)."
  }
}

variable "source_archive" {
  type = object({
    bucket     = string
    object     = string
    generation = optional(number)
  })
  description = "A prebuilt zip of the code in Cloud Storage (main.py and requirements.txt at its root, with functions/, shared/ and infra/), as GoogleCloudPlatform/terraform-google-cloud-functions takes its storage_source. The build account is granted Object Viewer on its bucket. Give each code version a new object name (or generation) so the functions redeploy. Set exactly one of source_dir and source_archive."
  default     = null

  validation {
    condition     = (var.source_dir == null) != (var.source_archive == null)
    error_message = "Set exactly one of source_dir (a directory holding main.py, requirements.txt, functions/, shared/ and infra/) and source_archive (a zip of that layout in Cloud Storage)."
  }

  validation {
    condition     = var.source_archive == null || try(can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.source_archive.bucket)) && endswith(var.source_archive.object, ".zip"), false)
    error_message = "source_archive must name a bucket (without gs://) and a .zip object in it."
  }
}

# --- Functions ------------------------------------------------------------------------------------------

variable "python_runtime" {
  type        = string
  description = "Cloud Run functions runtime for every function (Python 3.11 or later)."
  default     = "python311"

  validation {
    condition     = contains(["python311", "python312", "python313"], var.python_runtime)
    error_message = "python_runtime must be python311, python312 or python313."
  }
}

variable "min_instances" {
  type        = map(number)
  description = "Minimum warm instances per function. The functions that face callers and Telnyx (send, group, webhook) keep one warm by default: a Python cold start with the Firestore client can exceed Telnyx's 2-second webhook deadline. Functions not listed use 0 (batch among them: a bulk send can wait for a cold start)."
  default = {
    send    = 1
    group   = 1
    webhook = 1
  }

  validation {
    condition     = alltrue([for name, n in var.min_instances : contains(["send", "group", "batch", "messages", "optouts", "templates", "dispatch", "webhook", "notifier", "sweeper"], name) && n >= 0 && floor(n) == n])
    error_message = "min_instances keys must be function names (send, group, batch, messages, optouts, templates, dispatch, webhook, notifier, sweeper) and values whole numbers >= 0."
  }
}

variable "max_instances" {
  type        = map(number)
  description = "Maximum instances per function; functions not listed use 20. The sweeper is capped at 1 so two sweeps never overlap."
  default = {
    sweeper = 1
  }

  validation {
    condition     = alltrue([for name, n in var.max_instances : contains(["send", "group", "batch", "messages", "optouts", "templates", "dispatch", "webhook", "notifier", "sweeper"], name) && n >= 1 && floor(n) == n])
    error_message = "max_instances keys must be function names and values whole numbers >= 1."
  }
}

variable "function_memory" {
  type        = string
  description = "Memory of each function instance (Cloud Run quantity, e.g. 512Mi, 1Gi)."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.function_memory))
    error_message = "function_memory must be a quantity such as 512Mi or 1Gi."
  }
}

variable "function_memory_overrides" {
  type        = map(string)
  description = "Memory per function where it differs from function_memory. batch parses a body of up to 10,000 recipients (4 MiB of JSON, several times that as Python objects) in memory, so it gets 1Gi."
  default = {
    batch = "1Gi"
  }

  validation {
    condition     = alltrue([for name, m in var.function_memory_overrides : contains(["send", "group", "batch", "messages", "optouts", "templates", "dispatch", "webhook", "notifier", "sweeper"], name) && can(regex("^[0-9]+(Mi|Gi|M|G)$", m))])
    error_message = "function_memory_overrides keys must be function names and values quantities such as 512Mi or 1Gi."
  }
}

variable "function_cpu" {
  type        = string
  description = "vCPUs of each function instance. At least 1 is needed for function_concurrency > 1."
  default     = "1"

  validation {
    condition     = can(regex("^(0\\.(08|[1-9][0-9]?)|[1-8])$", var.function_cpu))
    error_message = "function_cpu must be a fraction below 1 (e.g. 0.5) or a whole number of vCPUs from 1 to 8."
  }
}

variable "function_concurrency" {
  type        = number
  description = "Concurrent requests one function instance serves."
  default     = 1

  validation {
    condition     = var.function_concurrency >= 1 && var.function_concurrency <= 1000
    error_message = "function_concurrency must be between 1 and 1000."
  }
}

variable "private_ingress" {
  type        = string
  description = "Ingress of the private functions (dispatch, notifier, sweeper). ALLOW_INTERNAL_ONLY admits Cloud Tasks and Cloud Scheduler of the same project and nothing from the internet; IAM (run.invoker) is enforced in both cases."
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_INTERNAL_ONLY", "ALLOW_ALL"], var.private_ingress)
    error_message = "private_ingress must be ALLOW_INTERNAL_ONLY or ALLOW_ALL."
  }
}

variable "log_level" {
  type        = string
  description = "Minimum log level of the functions (LOG_LEVEL)."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "secret_ids" {
  type        = map(string)
  description = "Secret Manager secret id of a secret environment variable (TELNYX_API_KEY, TELNYX_PUBLIC_KEY, TWILIO_AUTH_TOKEN, WEBHOOK_SIGNING_KEY) where it is not <name_prefix>-<name in lower case with dashes>, e.g. one Telnyx key shared by two deployments. The secrets must exist, with a value, before the apply (docs/deploy.md, step 3); TWILIO_AUTH_TOKEN only with twilio_enabled."
  default     = {}

  validation {
    condition     = alltrue([for name, id in var.secret_ids : contains(["TELNYX_API_KEY", "TELNYX_PUBLIC_KEY", "TWILIO_AUTH_TOKEN", "WEBHOOK_SIGNING_KEY"], name) && can(regex("^[a-zA-Z0-9_-]{1,255}$", id))])
    error_message = "secret_ids keys must be TELNYX_API_KEY, TELNYX_PUBLIC_KEY, TWILIO_AUTH_TOKEN or WEBHOOK_SIGNING_KEY, and values secret ids (letters, digits, - and _)."
  }
}

variable "iam_propagation_seconds" {
  type        = number
  description = "How long the functions' deployment waits after the grants it needs (the build account's, the secrets' accessors) are made: IAM changes typically take 2 minutes to propagate, sometimes 7 or more. Waited only when those grants change."
  default     = 180

  validation {
    condition     = var.iam_propagation_seconds >= 0 && var.iam_propagation_seconds <= 900 && floor(var.iam_propagation_seconds) == var.iam_propagation_seconds
    error_message = "iam_propagation_seconds must be a whole number from 0 to 900."
  }
}

# --- Telnyx and media -----------------------------------------------------------------------------------

variable "telnyx_base_url" {
  type        = string
  description = "Telnyx API origin (TELNYX_BASE_URL)."
  default     = "https://api.telnyx.com"

  validation {
    condition     = can(regex("^https://[^/]+$", var.telnyx_base_url))
    error_message = "telnyx_base_url must be an https origin without a path or trailing slash."
  }
}

# --- Carriers: Twilio and the share of each ------------------------------------------------------------

variable "twilio_enabled" {
  type        = bool
  description = "Make Twilio a second carrier (docs/deploy.md, Twilio as a second carrier): the functions get twilio_account_sid and the <name_prefix>-twilio-auth-token secret (which must exist, with a value, before the apply), and Twilio numbers of the tenants can send. Off: Telnyx alone, and nothing of Twilio is read."
  default     = false
}

variable "twilio_account_sid" {
  type        = string
  description = "TWILIO_ACCOUNT_SID: the Twilio account SID (AC followed by 32 hexadecimal digits), required with twilio_enabled. Not a secret: the auth token is (the TWILIO_AUTH_TOKEN secret)."
  default     = ""

  validation {
    condition     = var.twilio_account_sid == "" || can(regex("^AC[0-9a-f]{32}$", var.twilio_account_sid))
    error_message = "twilio_account_sid must be empty or a Twilio account SID: AC followed by 32 lowercase hexadecimal digits."
  }

  validation {
    condition     = !var.twilio_enabled || var.twilio_account_sid != ""
    error_message = "twilio_enabled needs twilio_account_sid, the SID of the Twilio account that holds your Twilio numbers."
  }
}

variable "twilio_base_url" {
  type        = string
  description = "TWILIO_BASE_URL: Twilio API origin."
  default     = "https://api.twilio.com"

  validation {
    condition     = can(regex("^https://[^/]+$", var.twilio_base_url))
    error_message = "twilio_base_url must be an https origin without a path or trailing slash."
  }
}

variable "carrier_weights" {
  type        = map(number)
  description = "CARRIER_WEIGHTS: each carrier's share of the sends that do not name their sender, e.g. { telnyx = 70, twilio = 30 } (whole numbers 0..100; a tenant's own carrier_weights override them, and an unhealthy carrier's weight moves to the others: docs/decisions.md, Carrier routing and failover). A carrier left out weighs 0: it still sends from its own numbers, and takes failovers."
  default     = { telnyx = 100 }

  validation {
    condition     = length(var.carrier_weights) > 0 && alltrue([for carrier, weight in var.carrier_weights : contains(["telnyx", "twilio"], carrier) && weight >= 0 && weight <= 100 && floor(weight) == weight])
    error_message = "carrier_weights must name telnyx and/or twilio, each with a whole number from 0 to 100."
  }

  validation {
    condition     = var.twilio_enabled || lookup(var.carrier_weights, "twilio", 0) == 0
    error_message = "carrier_weights gives twilio a share, but twilio_enabled is false: Twilio would never be chosen."
  }
}

variable "carrier_error_burst" {
  type        = string
  description = "CARRIER_ERROR_BURST: N/S, more than N carrier errors (5xx, timeouts) within S seconds open the carrier's circuit: no new send is routed to it until its errors quiet down. Default 50/60, GOV.UK Notify's. Used only with two carriers."
  default     = "50/60"

  validation {
    condition     = can(regex("^[0-9]+/[0-9]+$", var.carrier_error_burst)) && try(tonumber(split("/", var.carrier_error_burst)[1]) >= 10 && tonumber(split("/", var.carrier_error_burst)[1]) <= 3600, false)
    error_message = "carrier_error_burst must be errors/seconds, e.g. 50/60, with seconds from 10 to 3600."
  }
}

variable "extra_allowed_hosts" {
  type        = list(string)
  description = "Hosts added to MEDIA_ALLOWED_HOSTS besides storage.googleapis.com and the media bucket's virtual-host name (e.g. a CDN your tenants host media on)."
  default     = []

  validation {
    condition     = alltrue([for h in var.extra_allowed_hosts : can(regex("^[a-z0-9.-]+$", h))])
    error_message = "extra_allowed_hosts must be bare lowercase host names (no scheme, port or path)."
  }
}

variable "inbound_media_hosts" {
  type        = list(string)
  description = "INBOUND_MEDIA_HOSTS: hosts inbound MMS media is copied from (the media links in Telnyx's message.received events; its examples use media.telnyx.com). Exact names, or *.suffix for any name under it; HTTPS and public addresses only."
  default     = ["*.telnyx.com"]

  validation {
    condition     = length(var.inbound_media_hosts) > 0 && alltrue([for h in var.inbound_media_hosts : can(regex("^(\\*\\.)?[a-z0-9.-]+$", h))])
    error_message = "inbound_media_hosts must be bare lowercase host names or *.suffix patterns (no scheme, port or path)."
  }
}

variable "media_max_bytes" {
  type        = number
  description = "MEDIA_MAX_BYTES: the media total of one message stays below this many bytes; larger JPEG, PNG and still GIF/WebP images are downscaled to fit, anything else is refused (MEDIA_TOO_LARGE). 1048576 is Telnyx's limit (1 MB); 614400 (600 KB) is the carrier-safe setting that every US carrier and sender type accepts."
  default     = 1048576

  validation {
    condition     = var.media_max_bytes >= 65536 && var.media_max_bytes <= 1048576 && floor(var.media_max_bytes) == var.media_max_bytes
    error_message = "media_max_bytes must be a whole number from 65536 to 1048576 (Telnyx refuses 1 MB or more)."
  }
}

variable "media_url_ttl_seconds" {
  type        = number
  description = "MEDIA_URL_TTL_SECONDS: lifetime of the V4 signed URLs of our media copies that dispatch gives Telnyx (Telnyx fetches at send time and caches for an hour)."
  default     = 86400

  validation {
    condition     = var.media_url_ttl_seconds >= 300 && var.media_url_ttl_seconds <= 604800 && floor(var.media_url_ttl_seconds) == var.media_url_ttl_seconds
    error_message = "media_url_ttl_seconds must be a whole number from 300 to 604800 (V4 signed URLs last at most 7 days)."
  }
}

variable "media_fetch_timeout_seconds" {
  type        = number
  description = "MEDIA_FETCH_TIMEOUT_SECONDS: overall deadline of fetching one media URL at accept time, redirects included. Up to 10 URLs are fetched 4 at a time, so 3 rounds must fit in the send and group functions' 60 s timeout."
  default     = 10

  validation {
    condition     = var.media_fetch_timeout_seconds >= 1 && var.media_fetch_timeout_seconds <= 15
    error_message = "media_fetch_timeout_seconds must be between 1 and 15."
  }
}

# --- Queues ---------------------------------------------------------------------------------------------

variable "dispatch_rate_per_second" {
  type        = number
  description = "Dispatch queue max_dispatches_per_second: recipient legs sent to Telnyx per second. Default 15 = Telnyx's default account MMS rate; raise it only after Telnyx raises yours."
  default     = 15

  validation {
    condition     = var.dispatch_rate_per_second > 0 && var.dispatch_rate_per_second <= 500
    error_message = "dispatch_rate_per_second must be in (0, 500] (Cloud Tasks' per-queue maximum)."
  }
}

variable "dispatch_max_concurrent" {
  type        = number
  description = "Dispatch queue max_concurrent_dispatches: legs in flight at once."
  default     = 50

  validation {
    condition     = var.dispatch_max_concurrent >= 1 && var.dispatch_max_concurrent <= 5000
    error_message = "dispatch_max_concurrent must be between 1 and 5000."
  }
}

variable "dispatch_max_attempts" {
  type        = number
  description = "Attempts per recipient leg: the dispatch queue's retry_config.max_attempts and the DISPATCH_MAX_ATTEMPTS the dispatch function uses to recognise its last attempt (one variable feeds both)."
  default     = 10

  validation {
    condition     = var.dispatch_max_attempts >= 1 && var.dispatch_max_attempts <= 100 && floor(var.dispatch_max_attempts) == var.dispatch_max_attempts
    error_message = "dispatch_max_attempts must be a whole number between 1 and 100."
  }
}

variable "dispatch_claim_lease_seconds" {
  type        = number
  description = "DISPATCH_CLAIM_LEASE_SECONDS: how long a dispatch attempt holds a leg's claim before another attempt may take it over. It must outlive the Telnyx call's timeouts (connect 3 s + read 10 s)."
  default     = 30

  validation {
    condition     = var.dispatch_claim_lease_seconds >= 15 && var.dispatch_claim_lease_seconds <= 600 && floor(var.dispatch_claim_lease_seconds) == var.dispatch_claim_lease_seconds
    error_message = "dispatch_claim_lease_seconds must be a whole number from 15 to 600 (longer than the Telnyx call's 13 s of timeouts)."
  }
}

variable "dispatch_lookup_horizon_seconds" {
  type        = number
  description = "DISPATCH_LOOKUP_HORIZON_SECONDS: after a Telnyx send whose answer was lost, how long after the attempt a detail-record search must be made before \"not found\" counts as proof that Telnyx never got the message (and dispatch sends it again). Telnyx does not document how late its detail records appear: set it above the largest lag you observe on your account (docs/decisions.md, Exactly once)."
  default     = 600

  validation {
    condition     = var.dispatch_lookup_horizon_seconds >= 60 && var.dispatch_lookup_horizon_seconds <= 14400 && floor(var.dispatch_lookup_horizon_seconds) == var.dispatch_lookup_horizon_seconds
    error_message = "dispatch_lookup_horizon_seconds must be a whole number from 60 to 14400 (4 hours, Telnyx's queue limit)."
  }
}

variable "notify_rate_per_second" {
  type        = number
  description = "Customer-webhook queue max_dispatches_per_second."
  default     = 50

  validation {
    condition     = var.notify_rate_per_second > 0 && var.notify_rate_per_second <= 500
    error_message = "notify_rate_per_second must be in (0, 500]."
  }
}

variable "notify_max_concurrent" {
  type        = number
  description = "Customer-webhook queue max_concurrent_dispatches."
  default     = 100

  validation {
    condition     = var.notify_max_concurrent >= 1 && var.notify_max_concurrent <= 5000
    error_message = "notify_max_concurrent must be between 1 and 5000."
  }
}

variable "tasks_log_sampling_ratio" {
  type        = number
  description = "Fraction of Cloud Tasks dispatch attempts logged to Cloud Logging (0 to 1)."
  default     = 1

  validation {
    condition     = var.tasks_log_sampling_ratio >= 0 && var.tasks_log_sampling_ratio <= 1
    error_message = "tasks_log_sampling_ratio must be between 0 and 1."
  }
}

# --- Sweeper --------------------------------------------------------------------------------------------

variable "sweep_schedule" {
  type        = string
  description = "Cron schedule of the sweeper's Cloud Scheduler job."
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.sweep_schedule))) == 5
    error_message = "sweep_schedule must be a cron expression of five fields."
  }
}

variable "sweep_time_zone" {
  type        = string
  description = "Time zone of sweep_schedule."
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.sweep_time_zone))
    error_message = "sweep_time_zone must be a tz database name such as Etc/UTC or America/New_York."
  }
}

variable "batch_legs_per_second" {
  type        = number
  description = "BATCH_LEGS_PER_SECOND: the pace of a batch sent without sending_speed (0: all at once). Keep it below dispatch_rate_per_second, so one tenant's batch leaves room on the dispatch queue for every other send."
  default     = 10

  validation {
    condition     = var.batch_legs_per_second >= 0 && var.batch_legs_per_second <= 500
    error_message = "batch_legs_per_second must be in [0, 500] (Cloud Tasks' per-queue maximum rate)."
  }
}

variable "link_domain" {
  type        = string
  description = "Host name of the short links of tracked sends (https://<link_domain>/l/<code>), e.g. go.example.com; it must route /l/* to this deployment's API Gateway (an external HTTPS load balancer, say). Empty: the gateway's own host name."
  default     = ""

  validation {
    condition     = var.link_domain == "" || (length(var.link_domain) <= 253 && can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.link_domain)))
    error_message = "link_domain must be empty or a lower-case host name such as go.example.com (no scheme, port or path)."
  }
}

variable "sweep_queued_after_seconds" {
  type        = number
  description = "SWEEP_QUEUED_AFTER_SECONDS: a leg queued longer than this is re-enqueued by the sweeper."
  default     = 300

  validation {
    condition     = var.sweep_queued_after_seconds >= 60
    error_message = "sweep_queued_after_seconds must be at least 60."
  }
}

variable "sweep_final_after_seconds" {
  type        = number
  description = "SWEEP_FINAL_AFTER_SECONDS: a sent leg with no final delivery report after this is closed as sent."
  default     = 259200

  validation {
    condition     = var.sweep_final_after_seconds >= 3600
    error_message = "sweep_final_after_seconds must be at least 3600."
  }
}

# --- Storage --------------------------------------------------------------------------------------------

variable "media_retention_days" {
  type        = number
  description = "Days a media copy is kept in the media bucket before the lifecycle rule deletes it. It must outlive the longest a leg can wait: scheduling allows 180 days ahead, then dispatch retries."
  default     = 190

  validation {
    condition     = var.media_retention_days >= 182 && floor(var.media_retention_days) == var.media_retention_days
    error_message = "media_retention_days must be a whole number of at least 182 (a message may be scheduled 180 days ahead and its copy must still exist when it is sent)."
  }
}

variable "noncurrent_retention_days" {
  type        = number
  description = "Days a replaced or deleted object version is kept in the versioned buckets before it is purged."
  default     = 7

  validation {
    condition     = var.noncurrent_retention_days >= 1
    error_message = "noncurrent_retention_days must be at least 1."
  }
}

variable "access_log_retention_days" {
  type        = number
  description = "Days Cloud Storage usage logs of the media and source buckets are kept."
  default     = 90

  validation {
    condition     = var.access_log_retention_days >= 1
    error_message = "access_log_retention_days must be at least 1."
  }
}

# --- Monitoring -----------------------------------------------------------------------------------------

variable "notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channels every alert policy notifies, as ids projects/<project>/notificationChannels/<id> (create one with `gcloud beta monitoring channels create`). Empty: alerts still open incidents in the console, but notify no one."
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels must be ids of the form projects/<project>/notificationChannels/<number>."
  }
}

variable "alert_function_error_ratio" {
  type        = number
  description = "Alert when a function answers 5xx to more than this share of its requests over 5 minutes."
  default     = 0.05

  validation {
    condition     = var.alert_function_error_ratio > 0 && var.alert_function_error_ratio < 1
    error_message = "alert_function_error_ratio must be between 0 and 1 (exclusive)."
  }
}

variable "alert_dispatch_delay_seconds" {
  type        = number
  description = "Alert when dispatch tasks are attempted this many seconds after their scheduled time (95th percentile over 5 minutes): the queue's age."
  default     = 300

  validation {
    condition     = var.alert_dispatch_delay_seconds >= 10
    error_message = "alert_dispatch_delay_seconds must be at least 10."
  }
}

variable "alert_dispatch_depth" {
  type        = number
  description = "Alert when the dispatch queue holds more tasks than this for 10 minutes. Scheduled legs (up to 30 days ahead) count too, so set it above your usual scheduled volume."
  default     = 20000

  validation {
    condition     = var.alert_dispatch_depth >= 1
    error_message = "alert_dispatch_depth must be at least 1."
  }
}

variable "alert_invalid_signatures" {
  type        = number
  description = "Alert when more than this many Telnyx webhook requests with an invalid signature arrive within 5 minutes."
  default     = 20

  validation {
    condition     = var.alert_invalid_signatures >= 0 && floor(var.alert_invalid_signatures) == var.alert_invalid_signatures
    error_message = "alert_invalid_signatures must be a whole number >= 0."
  }
}

variable "log_metric_wait_seconds" {
  type        = number
  description = "How long the alert policies on log-based metrics wait after the metrics are created: Cloud Monitoring may take up to 10 minutes to accept a new metric in an alert. Waited only when the set of metrics changes; on a first apply it overlaps the function builds."
  default     = 600

  validation {
    condition     = var.log_metric_wait_seconds >= 0 && var.log_metric_wait_seconds <= 1800 && floor(var.log_metric_wait_seconds) == var.log_metric_wait_seconds
    error_message = "log_metric_wait_seconds must be a whole number from 0 to 1800."
  }
}
