# Minimal inputs for a production deployment. Copy, edit, and pass with -var-file.
project_id = "my-mmsgate-project"
region     = "us-central1"

# Leave empty to use the API Gateway's own hostname; set it only for a custom domain in front of it.
public_base_url = ""

# Telnyx's default account MMS rate. Raise only after Telnyx raises your account's limit.
dispatch_rate_per_second = 15
dispatch_max_attempts    = 10

# Keep the caller- and Telnyx-facing functions warm (cold starts can exceed Telnyx's 2 s webhook limit).
min_instances = {
  send    = 1
  group   = 1
  webhook = 1
}

media_retention_days = 30
sweep_schedule       = "* * * * *"
python_runtime       = "python311"

labels = {
  env = "prod"
}
