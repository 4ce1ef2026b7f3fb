"""What both carrier simulators (tools/telnyx_sim, tools/twilio_sim) run on: the job scheduler of their webhooks
and their outbound HTTP (TLS context, media-fetch client)."""
