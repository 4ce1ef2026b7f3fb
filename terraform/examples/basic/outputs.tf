output "gateway_url" {
  description = "Public origin of the API: clients call <gateway_url>/api/v1/..."
  value       = module.mmsgate.gateway_url
}

output "telnyx_webhook_url" {
  description = "URL to set as the Telnyx messaging profile's webhook URL."
  value       = module.mmsgate.telnyx_webhook_url
}

output "twilio_webhook_url" {
  description = "URL to set as each Twilio number's incoming-message webhook (HTTP POST), with twilio_enabled."
  value       = module.mmsgate.twilio_webhook_url
}

output "secrets" {
  description = "Secret Manager secret id per secret environment variable (add their values before the functions deploy)."
  value       = module.mmsgate.secrets
}

output "media_bucket" {
  description = "Bucket holding media copies."
  value       = module.mmsgate.media_bucket
}

output "dashboard_id" {
  description = "The Cloud Monitoring dashboard."
  value       = module.mmsgate.dashboard_id
}
