output "gateway_url" {
  description = "Public origin of the API (API Gateway). Clients call <gateway_url>/api/v1/..."
  value       = "https://${google_api_gateway_gateway.this.default_hostname}"
}

output "telnyx_webhook_url" {
  description = "URL to set as the Telnyx messaging profile's webhook URL."
  value       = local.telnyx_webhook_url
}

output "twilio_webhook_url" {
  description = "URL to set as the incoming-message webhook (HTTP POST) of each Twilio number or Messaging Service, with twilio_enabled. Twilio signs over this exact URL."
  value       = local.twilio_webhook_url
}

output "function_urls" {
  description = "Deterministic URL of each function, as the code and the gateway use them (the public ones admit only API Gateway; the private ones only Cloud Tasks or Cloud Scheduler)."
  value       = local.function_urls
}

output "function_service_uris" {
  description = "URI Cloud Run functions reports for each function (the hash-based run.app URL)."
  value       = { for name, fn in merge(google_cloudfunctions2_function.public, google_cloudfunctions2_function.private) : name => fn.service_config[0].uri }
}

output "media_bucket" {
  description = "Bucket holding media copies (MEDIA_BUCKET)."
  value       = google_storage_bucket.media.name
}

output "source_bucket" {
  description = "Bucket holding the functions' source archives."
  value       = google_storage_bucket.source.name
}

output "access_log_bucket" {
  description = "Bucket receiving the media and source buckets' usage logs."
  value       = google_storage_bucket.access_logs.name
}

output "queues" {
  description = "Cloud Tasks queue ids (DISPATCH_QUEUE, NOTIFY_QUEUE) and their location."
  value = {
    dispatch = google_cloud_tasks_queue.dispatch.name
    notify   = google_cloud_tasks_queue.notify.name
    location = var.region
  }
}

output "secrets" {
  description = "Secret Manager secret id per secret environment variable (the operator creates them with their values; the functions read version latest)."
  value       = local.secret_ids
}

output "firestore_database" {
  description = "Firestore database of this deployment (FIRESTORE_DATABASE): pass it to mmsgate-admin and gcloud firestore."
  value       = local.firestore_database
}

output "service_accounts" {
  description = "Service account email of each function, of the Cloud Tasks and Cloud Scheduler invokers, of API Gateway and of the function builds."
  value = merge(
    { for name, sa in google_service_account.function : name => sa.email },
    {
      tasks_invoker = google_service_account.tasks_invoker.email
      scheduler     = google_service_account.scheduler.email
      gateway       = google_service_account.gateway.email
      build         = google_service_account.build.email
    },
  )
}

output "source_object" {
  description = "Source archive every function was built from: the module's own (named by its SHA-256) from source_dir, or source_archive."
  value       = try("gs://${local.source.bucket}/${local.source.object}", null)
}

output "log_metrics" {
  description = "Log-based metric type of each business event the functions log (infra/log.py metric())."
  value       = local.log_metric_types
}

output "dashboard_id" {
  description = "Id of the Cloud Monitoring dashboard (open it under Monitoring > Dashboards)."
  value       = google_monitoring_dashboard.overview.id
}
