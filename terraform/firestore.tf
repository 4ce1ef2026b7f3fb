# Firestore in Native mode, the composite indexes the code's queries need, and TTL policies for the
# records that expire. Collections and fields come from locals that restate infra/collections.py.
#
# Each deployment has its own named database, <prefix>-db by default, whose name the functions read from
# FIRESTORE_DATABASE (infra/settings.py): two deployments in one project keep their data apart. A project can
# hold 100 databases, and the free tier goes to the first database created in the project, named or not
# (https://cloud.google.com/firestore/quotas, "Free tier usage").

locals {
  firestore_database = var.firestore_database != "" ? var.firestore_database : "${var.name_prefix}-db"
}

resource "google_firestore_database" "this" {
  count = var.create_firestore_database ? 1 : 0

  project                           = var.project_id
  name                              = local.firestore_database
  location_id                       = local.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.this]
}

resource "google_firestore_index" "composite" {
  for_each = local.firestore_composite_indexes

  project     = var.project_id
  database    = local.firestore_database
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }

  depends_on = [google_firestore_database.this]
}

# TTL policy per expiring collection. The empty index_config exempts the expiry timestamp from single-field
# indexing: nothing queries on it, and an indexed, ever-increasing timestamp caps a collection's write rate.
resource "google_firestore_field" "ttl" {
  for_each = local.firestore_ttl_fields

  project    = var.project_id
  database   = local.firestore_database
  collection = each.key
  field      = each.value

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_database.this]
}

moved {
  from = google_firestore_database.default
  to   = google_firestore_database.this
}
