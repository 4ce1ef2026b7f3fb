# The sweeper runs on a schedule: Cloud Scheduler POSTs to it with an OIDC token for the scheduler
# account, the only principal allowed to invoke it. No retries: the next run comes within the schedule.

resource "google_cloud_scheduler_job" "sweep" {
  name             = "${var.name_prefix}-sweep"
  project          = var.project_id
  region           = var.region
  description      = "Re-enqueue stuck message legs and close stale ones."
  schedule         = var.sweep_schedule
  time_zone        = var.sweep_time_zone
  attempt_deadline = "${local.functions.sweeper.timeout + 20}s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.private["sweeper"].service_config[0].uri
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.private["sweeper"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invoker]
}
