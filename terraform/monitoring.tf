# What an operator sees: log-based metrics from the functions' structured log lines (infra/log.py metric():
# one JSON line with "event": "<name>" per business event), a dashboard (monitoring-dashboard.json.tftpl)
# and alert policies that notify var.notification_channels.
#
# Every name carries var.name_prefix: metric names and policy names are project-wide, and the filters
# match only this deployment's Cloud Run services (<prefix>-<function>) and queues.

locals {
  # This deployment's Cloud Run services (a gen2 function runs as the service of its name), exactly: a bare
  # "<prefix>-.*" would also match another deployment whose prefix starts with this one ("mms" and "mms-eu").
  service_names = "${var.name_prefix}-(${join("|", keys(local.functions))})"

  # Log lines of this deployment's functions.
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${local.service_names}$\""

  # Counters: one per log line of the event. labels: label name -> the JSON field it is taken from.
  log_counters = {
    provider_rejections = {
      event       = "provider.rejected"
      description = "Sends a carrier refused synchronously, by the carrier's error code."
      labels      = { code = "code" }
    }
    dispatch_ambiguous = {
      event       = "dispatch.ambiguous"
      description = "Dispatch attempts whose outcome at the carrier is unknown (connection lost after sending); the next attempt reconciles them."
      labels      = {}
    }
    dispatch_reconciled = {
      event       = "dispatch.reconciled"
      description = "Ambiguous sends looked up at their carrier before any resend, by what the lookup found and carrier."
      labels      = { lookup = "lookup", carrier = "carrier" }
    }
    webhook_gave_up = {
      event       = "webhook.gave_up"
      description = "Customer webhook events abandoned after 24 hours of failed deliveries."
      labels      = {}
    }
    signature_invalid = {
      event       = "signature.invalid"
      description = "Carrier webhook requests refused for a missing, stale or invalid signature (Telnyx's Ed25519, Twilio's X-Twilio-Signature), by carrier (empty: Telnyx)."
      labels      = { carrier = "carrier" }
    }
    inbound_unknown_number = {
      event       = "inbound.unknown_number"
      description = "Carrier events for a number no tenant owns."
      labels      = {}
    }
    # Only with two carriers (twilio_enabled): the sweeper's health assessment and dispatch's failovers.
    carrier_health = {
      event       = "carrier.health"
      description = "Changes of a carrier's assessed health (shared/services/carriers.py): healthy 0 or 1, its weight penalty in points, tripped 1 while an error burst keeps its circuit open."
      labels      = { carrier = "carrier", healthy = "healthy", penalty = "penalty", tripped = "tripped" }
    }
    carrier_failover = {
      event       = "carrier.failover"
      description = "Legs moved to another carrier after a transient or permanent error of theirs (once per leg), by source and target carrier."
      labels      = { source = "source", target = "target" }
    }
  }

  # Distributions: the value is a number field of the line.
  log_distributions = {
    legs_accepted = {
      event       = "leg.accepted"
      description = "Recipient legs accepted per accepted request (count field; the distribution's sum is the legs accepted), by tenant."
      field       = "count"
      unit        = "1"
      labels      = { tenant_id = "tenant_id" }
      # 1..20 recipients per request: one bucket per count.
      linear      = { num_finite_buckets = 20, width = 1, offset = 0.5 }
      exponential = null
    }
    batch_recipients_accepted = {
      event       = "batch.accepted"
      description = "Recipients reserved for per accepted batch (count field; the sum is the recipients accepted), by tenant. Their messages are written later by chunk tasks."
      field       = "count"
      unit        = "1"
      labels      = { tenant_id = "tenant_id" }
      # 1..10,000 recipients per batch: doublings from 1.
      linear      = null
      exponential = { scale = 1 }
    }
    report_latency = {
      event       = "report.latency"
      description = "Time from the carrier send to each of its delivery reports (latency_ms field), by carrier, report (event_type: message.sent, message.finalized) and the leg's status after it."
      field       = "latency_ms"
      unit        = "ms"
      labels      = { carrier = "carrier", event_type = "event_type", status = "status" }
      # 100 ms .. ~29 h in doublings.
      linear      = null
      exponential = { scale = 100 }
    }
  }

  metric_prefix = "${var.name_prefix}/"
  # The metric type of each log-based metric, for the dashboard and the alerts.
  log_metric_types = {
    for name in concat(keys(local.log_counters), keys(local.log_distributions)) :
    name => "logging.googleapis.com/user/${local.metric_prefix}${name}"
  }
}

resource "google_logging_metric" "counter" {
  for_each = local.log_counters

  project     = var.project_id
  name        = "${local.metric_prefix}${each.key}"
  description = each.value.description
  filter      = "${local.function_logs} AND jsonPayload.event=\"${each.value.event}\""

  label_extractors = { for label, field in each.value.labels : label => "EXTRACT(jsonPayload.${field})" }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "mmsgate ${replace(each.key, "_", " ")} (${var.name_prefix})"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "distribution" {
  for_each = local.log_distributions

  project         = var.project_id
  name            = "${local.metric_prefix}${each.key}"
  description     = each.value.description
  filter          = "${local.function_logs} AND jsonPayload.event=\"${each.value.event}\""
  value_extractor = "EXTRACT(jsonPayload.${each.value.field})"

  label_extractors = { for label, field in each.value.labels : label => "EXTRACT(jsonPayload.${field})" }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "mmsgate ${replace(each.key, "_", " ")} (${var.name_prefix})"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  bucket_options {
    dynamic "linear_buckets" {
      for_each = each.value.linear == null ? [] : [each.value.linear]
      content {
        num_finite_buckets = linear_buckets.value.num_finite_buckets
        width              = linear_buckets.value.width
        offset             = linear_buckets.value.offset
      }
    }
    dynamic "exponential_buckets" {
      for_each = each.value.exponential == null ? [] : [each.value.exponential]
      content {
        num_finite_buckets = 20
        growth_factor      = 2
        scale              = exponential_buckets.value.scale
      }
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_dashboard" "overview" {
  project = var.project_id
  dashboard_json = templatefile("${path.module}/monitoring-dashboard.json.tftpl", {
    title  = "mmsgate (${var.name_prefix})"
    metric = local.log_metric_types
    # PromQL name of a Cloud Monitoring metric: domain dots to "_", the first "/" to ":", the rest to "_".
    prom           = { for name in keys(local.log_metric_types) : name => "logging_googleapis_com:${replace("user/${local.metric_prefix}${name}", "/[^a-zA-Z0-9_]/", "_")}" }
    services_regex = local.service_names
    dispatch_queue = local.queue_ids.dispatch
    notify_queue   = local.queue_ids.notify
  })

  depends_on = [google_logging_metric.counter, google_logging_metric.distribution]
}

# Cloud Monitoring refuses an alert policy on a log-based metric created moments before: "Cannot find
# metric(s) ... If a metric was created recently, it could take up to 10 minutes to become available"
# (hashicorp/terraform-provider-google#11102, open). The alerts on log-based metrics wait for this sleep,
# which starts when the metrics exist; on a first apply it runs alongside the function builds (longer), so
# it costs no time there. It runs again only when the set of metrics changes (triggers).
resource "time_sleep" "log_metrics_visible" {
  create_duration = "${var.log_metric_wait_seconds}s"

  triggers = {
    metrics = join(",", sort(concat(
      [for metric in google_logging_metric.counter : metric.id],
      [for metric in google_logging_metric.distribution : metric.id],
    )))
  }
}

# --- Alerts ---------------------------------------------------------------------------------------------

locals {
  alert_documentation = "mmsgate deployment ${var.name_prefix} in ${var.project_id}. What each alert means and what to do: docs/deploy.md, section \"Operate\"."
}

# A function answering 5xx to more than alert_function_error_ratio of its requests for 5 minutes.
resource "google_monitoring_alert_policy" "function_errors" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: function error rate"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "5xx share of a function's requests > ${var.alert_function_error_ratio}"

    condition_threshold {
      filter             = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = monitoring.regex.full_match(\"${local.service_names}\") AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      denominator_filter = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = monitoring.regex.full_match(\"${local.service_names}\") AND metric.type = \"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_function_error_ratio
      duration           = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} A function fails more than it should: read its error logs (severity>=ERROR, resource.labels.service_name)."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.this]
}

# The dispatch queue falls behind: tasks attempted long after their time (queue age), or a backlog.
resource "google_monitoring_alert_policy" "dispatch_backlog" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: dispatch queue behind"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "dispatch attempts ${var.alert_dispatch_delay_seconds}s late (p95)"

    condition_threshold {
      filter          = "resource.type = \"cloud_tasks_queue\" AND resource.labels.queue_id = \"${local.queue_ids.dispatch}\" AND metric.type = \"cloudtasks.googleapis.com/queue/task_attempt_delays\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_dispatch_delay_seconds * 1000
      duration        = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
      }

      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "more than ${var.alert_dispatch_depth} tasks in the dispatch queue"

    condition_threshold {
      filter          = "resource.type = \"cloud_tasks_queue\" AND resource.labels.queue_id = \"${local.queue_ids.dispatch}\" AND metric.type = \"cloudtasks.googleapis.com/queue/depth\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_dispatch_depth
      duration        = "600s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MEAN"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} Legs wait longer than they should to reach Telnyx. Check the dispatch function's errors, Telnyx 429s (provider_rejections), and whether dispatch_rate_per_second is below your traffic. The depth counts scheduled legs too (up to 30 days ahead)."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.this]
}

# A customer webhook event given up on after 24 hours of retries.
resource "google_monitoring_alert_policy" "webhook_gave_up" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: customer webhook given up"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "a customer webhook event was abandoned"

    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"${local.log_metric_types["webhook_gave_up"]}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} A tenant's webhook endpoint failed for 24 hours; the events are in Firestore (customer events whose status is given up). Tell the tenant."
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.log_metrics_visible]
}

# A burst of Telnyx webhook requests with bad signatures: a misconfigured public key, or someone probing.
resource "google_monitoring_alert_policy" "invalid_signatures" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: invalid provider signatures"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "more than ${var.alert_invalid_signatures} invalid signatures in 5 minutes"

    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"${local.log_metric_types["signature_invalid"]}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_invalid_signatures
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} If every report is refused, TELNYX_PUBLIC_KEY does not match the Telnyx account (delivery reports are being lost): fix the secret. Otherwise someone is posting forged reports; they are refused."
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.log_metrics_visible]
}

# A carrier marked unhealthy by the sweeper's assessment (carrier.health with healthy = 0): its deliveries are
# slow or its errors burst, and part of its weight (or, on a burst, all its new traffic) moves to the other
# carrier. Only a deployment with two carriers (twilio_enabled) assesses health; with one, this never fires.
resource "google_monitoring_alert_policy" "carrier_unhealthy" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: carrier unhealthy"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "a carrier was marked unhealthy"

    condition_threshold {
      # The label holds the JSON number 0 as text; the regular expression also admits a "0.0" rendering.
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"${local.log_metric_types["carrier_health"]}\" AND metric.labels.healthy = monitoring.regex.full_match(\"0([.]0+)?\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.carrier"]
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "${local.alert_documentation} The sweeper found a carrier slow (15 % or more of at least 20 messages in 15 minutes took 5 minutes or more to deliver) or failing (more than 50 errors in about a minute, which also stops new sends to it), and moved 10 points of its weight to the other carrier; it recovers 10 points per 10 quiet minutes. The reason is in the sweeper's log line \"carrier health changed\". Check the carrier's status page and the provider_rejections chart; nothing is lost meanwhile (docs/decisions.md, \"Carrier routing and failover\")."
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.log_metrics_visible]
}
