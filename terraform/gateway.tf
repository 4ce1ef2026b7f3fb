# API Gateway in front of the public functions: one public origin whose paths /api/v1/..., /webhooks/telnyx,
# /webhooks/twilio and /l/{code} map to send, group, batch, messages, optouts, templates, webhook and links
# (openapi-gateway.yaml.tftpl).
# The gateway checks no API key: the functions check tenants' API keys and the carriers' signatures
# themselves. It calls the functions as its own service account, the only principal they admit. Backends are
# the functions' deterministic URLs, so the gateway does not wait for the functions, and the functions can be
# given the gateway's hostname (TELNYX_WEBHOOK_URL, TWILIO_WEBHOOK_URL) in the same apply.

resource "google_api_gateway_api" "this" {
  provider = google-beta

  project      = var.project_id
  api_id       = "${var.name_prefix}-api"
  display_name = var.name_prefix
  labels       = local.labels

  depends_on = [google_project_service.this]
}

locals {
  openapi_spec = templatefile("${path.module}/openapi-gateway.yaml.tftpl", {
    title         = "mmsgate"
    send_url      = local.function_urls["send"]
    group_url     = local.function_urls["group"]
    batch_url     = local.function_urls["batch"]
    messages_url  = local.function_urls["messages"]
    optouts_url   = local.function_urls["optouts"]
    templates_url = local.function_urls["templates"]
    webhook_url   = local.function_urls["webhook"]
    links_url     = local.function_urls["links"]
  })
}

# API configs are immutable: a changed spec is a new config (the id prefix gets a unique suffix), created
# before the old one is destroyed so the gateway always points at a live config.
resource "google_api_gateway_api_config" "this" {
  provider = google-beta

  project              = var.project_id
  api                  = google_api_gateway_api.this.api_id
  api_config_id_prefix = "${var.name_prefix}-"
  display_name         = "${var.name_prefix} ${substr(sha256(local.openapi_spec), 0, 12)}"
  labels               = local.labels

  openapi_documents {
    document {
      path     = "openapi-gateway.yaml"
      contents = base64encode(local.openapi_spec)
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "this" {
  provider = google-beta

  project      = var.project_id
  region       = local.gateway_region
  gateway_id   = "${var.name_prefix}-gw"
  display_name = var.name_prefix
  api_config   = google_api_gateway_api_config.this.id
  labels       = local.labels
}

# The API's own managed service, so its request metrics and logs are recorded.
resource "google_project_service" "gateway_managed_service" {
  project            = var.project_id
  service            = google_api_gateway_api.this.managed_service
  disable_on_destroy = false
}
