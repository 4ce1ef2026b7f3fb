output "gateway_url" {
  description = "Public origin of the API: clients call <gateway_url>/api/v1/..."
  value       = module.mmsgate.gateway_url
}

output "telnyx_webhook_url" {
  description = "URL to set as the Telnyx messaging profile's webhook URL."
  value       = module.mmsgate.telnyx_webhook_url
}

output "firestore_database" {
  description = "The deployment's Firestore database (for mmsgate-admin: FIRESTORE_DATABASE)."
  value       = module.mmsgate.firestore_database
}

output "source_object" {
  description = "The archive the functions were built from."
  value       = module.mmsgate.source_object
}
