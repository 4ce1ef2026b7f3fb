# Cloud Tasks queues. Tasks carry an OIDC token for the tasks-invoker service account (the code sets it on
# each task); the private target functions admit only that account.

# One task per recipient leg, paced at Telnyx's account MMS rate. max_attempts is the same variable the
# dispatch function reads as DISPATCH_MAX_ATTEMPTS, so its "last attempt" is the queue's last attempt.
# max_retry_duration is left unset (unlimited): retries then stop on max_attempts alone.
resource "google_cloud_tasks_queue" "dispatch" {
  name     = local.queue_ids.dispatch
  project  = var.project_id
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.dispatch_rate_per_second
    max_concurrent_dispatches = var.dispatch_max_concurrent
  }

  retry_config {
    max_attempts  = var.dispatch_max_attempts
    min_backoff   = "5s"
    max_backoff   = "600s"
    max_doublings = 5
  }

  stackdriver_logging_config {
    sampling_ratio = var.tasks_log_sampling_ratio
  }

  depends_on = [google_project_service.this]
}

# Customer webhook deliveries: back off from 10 s to 1 h and keep retrying for 24 h.
resource "google_cloud_tasks_queue" "notify" {
  name     = local.queue_ids.notify
  project  = var.project_id
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.notify_rate_per_second
    max_concurrent_dispatches = var.notify_max_concurrent
  }

  retry_config {
    max_attempts       = -1
    max_retry_duration = "86400s"
    min_backoff        = "10s"
    max_backoff        = "3600s"
    max_doublings      = 9
  }

  stackdriver_logging_config {
    sampling_ratio = var.tasks_log_sampling_ratio
  }

  depends_on = [google_project_service.this]
}

locals {
  queues = {
    dispatch = google_cloud_tasks_queue.dispatch
    notify   = google_cloud_tasks_queue.notify
  }
}
