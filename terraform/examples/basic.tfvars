# Minimal inputs for a production deployment. Copy, edit, and pass with -var-file.
project_id = "my-mmsgate-project"
region     = "us-central1"

# Empty on the first apply; then set it to `terraform output -raw gateway_url` (or your custom domain in
# front of the gateway) and apply again so dispatch passes Telnyx a per-message webhook URL.
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
