"""Settings read from the environment, once per instance.

Every variable the code reads in production is declared in ``ENV`` below; the Terraform contract
test checks each one is set on the functions that read it (or is a secret), and that the local-stack-only
variables of ``LOCAL_ONLY_ENV`` never appear in Terraform.
"""

from __future__ import annotations

import functools
import os

from shared.rules.frozen import frozen

# name -> (default, description). A default of None means "required in production".
ENV: dict[str, tuple[str | None, str]] = {
    "GOOGLE_CLOUD_PROJECT": (None, "Project that holds Firestore, Cloud Tasks and Cloud Storage."),
    "FIRESTORE_DATABASE": ("(default)", "Firestore database of this deployment: one per deployment (Terraform names it "
                           "<prefix>-db); the emulator's is the default one."),
    "TASKS_LOCATION": ("us-central1", "Region of the Cloud Tasks queues."),
    "DISPATCH_QUEUE": ("mms-dispatch", "Queue id carrying one task per recipient leg."),
    "NOTIFY_QUEUE": ("mms-notify", "Queue id carrying customer webhook deliveries."),
    "DISPATCH_URL": (None, "URL of the dispatch function (Cloud Tasks target)."),
    "NOTIFIER_URL": (None, "URL of the notifier function (Cloud Tasks target)."),
    "TASKS_INVOKER_SA": ("", "Service account whose OIDC token Cloud Tasks presents to private targets."),
    "DISPATCH_MAX_ATTEMPTS": ("10", "Attempts per leg; must equal the dispatch queue's retry_config.max_attempts."),
    "TELNYX_BASE_URL": ("https://api.telnyx.com", "Telnyx API origin (the simulator's locally)."),
    "TELNYX_API_KEY": (None, "Telnyx API key (secret)."),
    "TELNYX_PUBLIC_KEY": (None, "Telnyx account Ed25519 public key, base64 (secret)."),
    "TELNYX_WEBHOOK_URL": (None, "Public URL Telnyx posts delivery reports to (gateway /webhooks/telnyx)."),
    "TWILIO_BASE_URL": ("https://api.twilio.com", "Twilio API origin (the Twilio simulator's locally)."),
    "TWILIO_ACCOUNT_SID": ("", "Twilio account SID (AC...). Empty: Twilio is not a carrier of this deployment."),
    "TWILIO_AUTH_TOKEN": ("", "Twilio auth token: Basic auth of sends, and the key of X-Twilio-Signature (secret)."),
    "TWILIO_WEBHOOK_URL": ("", "Public URL Twilio posts status callbacks and inbound messages to (gateway "
                           "/webhooks/twilio)."),
    "CARRIER_WEIGHTS": ("telnyx=100", "Share of sends per carrier, e.g. telnyx=70,twilio=30 (0..100 each; a tenant's "
                        "carrier_weights override it). A carrier without credentials is never chosen."),
    "CARRIER_ERROR_BURST": ("50/60", "N/S: more than N carrier errors (5xx, timeouts) within S seconds open the "
                            "carrier's circuit: no new send is routed to it until its errors quiet down (Notify's "
                            "50/60)."),
    "WEBHOOK_SIGNING_KEY": (None, "Master key from which each tenant's webhook signing secret is derived (secret)."),
    "MEDIA_BUCKET": (None, "Cloud Storage bucket holding media copies."),
    "MEDIA_ALLOWED_HOSTS": ("storage.googleapis.com", "Comma-separated hosts media and webhook URLs may use."),
    "MEDIA_TRUSTED_ORIGINS": ("", "Local stack only: exact origins exempt from the SSRF address rules."),
    "INBOUND_MEDIA_HOSTS": ("*.telnyx.com", "Comma-separated hosts inbound MMS media is copied from (Telnyx's "
                            "media links, media.telnyx.com in its examples); HTTPS and public addresses only."),
    "MEDIA_MAX_BYTES": ("1048576", "Media total per message must stay below this many bytes: 1048576 is "
                        "Telnyx's limit (1 MB); 614400 (600 KB) is the carrier-safe setting."),
    "MEDIA_URL_TTL_SECONDS": ("86400", "Lifetime of the V4 signed URLs of our media copies given to Telnyx."),
    "MEDIA_FETCH_TIMEOUT_SECONDS": ("10", "Overall deadline of fetching one media URL (redirects included)."),
    "MEDIA_SIGNING_KEY": ("", "Local stack only: service-account JSON whose RSA key signs media URLs for the "
                          "storage emulator. In production URLs are signed through IAM signBlob."),
    "BATCH_LEGS_PER_SECOND": ("10", "The pace of a batch sent without sending_speed (0: all at once). Below the "
                              "dispatch queue's rate, so one tenant's batch leaves room for everyone's other sends."),
    "LINK_BASE_URL": (None, "Origin of the short links of tracked sends (https://<host>; links are <origin>/l/<code>): "
                      "the API Gateway's, or the operator's link_domain that routes to it."),
    "SWEEP_QUEUED_AFTER_SECONDS": ("300", "A leg queued longer than this is re-enqueued by the sweeper."),
    "SWEEP_FINAL_AFTER_SECONDS": ("259200", "A sent leg with no final report after this is closed as sent."),
    "DISPATCH_CLAIM_LEASE_SECONDS": ("30", "How long a dispatch holds a leg's claim; must outlive the provider "
                                     "call's timeouts (connect 3 s + read 10 s)."),
    "DISPATCH_LOOKUP_HORIZON_SECONDS": ("600", "After a send whose answer was lost, how long Telnyx's detail records "
                                        "may lag: only a search made this long after the attempt can prove the "
                                        "message absent and let dispatch send again (docs/decisions.md)."),
    "LOG_LEVEL": ("INFO", "Minimum log level."),
}

# Set by the local stack only, never by Terraform (tests/deploy/test_terraform_contract.py checks it): an SSRF
# exemption for the emulators' loopback origins, and a signing key the emulator accepts in place of IAM.
LOCAL_ONLY_ENV: frozenset[str] = frozenset({"MEDIA_TRUSTED_ORIGINS", "MEDIA_SIGNING_KEY"})

# Secrets come from Secret Manager as secret environment variables, and only to the functions that use
# them. Every other variable in ENV is plain configuration set on every function.
SECRET_ENV: dict[str, tuple[str, ...]] = {
    "TELNYX_API_KEY": ("dispatch",),
    "TELNYX_PUBLIC_KEY": ("webhook",),
    "TWILIO_AUTH_TOKEN": ("dispatch", "webhook"),
    # messages derives the search cursor key from it (shared/rules/searching.py)
    "WEBHOOK_SIGNING_KEY": ("notifier", "messages"),
}


def env(name: str) -> str:
    default, _ = ENV[name]
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise RuntimeError(f"environment variable {name} is not set")
        return default
    return value


def env_optional(name: str) -> str:
    """For required-in-production values that a given function may not need."""
    value = os.environ.get(name)
    return value if value else (ENV[name][0] or "")


@frozen
class Settings:
    project: str
    firestore_database: str
    tasks_location: str
    dispatch_queue: str
    notify_queue: str
    dispatch_url: str
    notifier_url: str
    tasks_invoker_sa: str
    dispatch_max_attempts: int
    telnyx_base_url: str
    telnyx_api_key: str
    telnyx_public_key: str
    telnyx_webhook_url: str
    twilio_base_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_webhook_url: str
    carrier_weights: dict[str, int]
    carrier_error_burst: tuple[int, int]
    webhook_signing_key: str
    media_bucket: str
    media_allowed_hosts: tuple[str, ...]
    media_trusted_origins: tuple[str, ...]
    inbound_media_hosts: tuple[str, ...]
    media_max_bytes: int
    media_url_ttl_seconds: int
    media_fetch_timeout_seconds: float
    media_signing_key: str
    batch_legs_per_second: float
    link_base_url: str
    sweep_queued_after_seconds: int
    sweep_final_after_seconds: int
    dispatch_claim_lease_seconds: int
    dispatch_lookup_horizon_seconds: int
    # Emulator endpoints: set only in the local stack and tests.
    firestore_emulator_host: str
    storage_emulator_host: str
    tasks_emulator_host: str


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def carrier_weights(value: str) -> dict[str, int]:
    """``telnyx=70,twilio=30`` as a mapping; a malformed entry stops the instance at start, not a send later."""
    weights: dict[str, int] = {}
    for part in _csv(value):
        name, _, number = part.partition("=")
        if not name.strip() or not number.strip().isdigit() or not 0 <= int(number) <= 100:
            raise RuntimeError(f"CARRIER_WEIGHTS: {part!r} is not carrier=weight with a weight of 0..100")
        weights[name.strip()] = int(number)
    return weights


def error_burst(value: str) -> tuple[int, int]:
    errors, _, seconds = value.partition("/")
    if not errors.strip().isdigit() or not seconds.strip().isdigit() or not 10 <= int(seconds) <= 3600:
        raise RuntimeError(f"CARRIER_ERROR_BURST: {value!r} is not errors/seconds (seconds 10..3600)")
    return int(errors), int(seconds)


@functools.cache
def settings() -> Settings:
    return Settings(
        project=env("GOOGLE_CLOUD_PROJECT"),
        firestore_database=env("FIRESTORE_DATABASE"),
        tasks_location=env("TASKS_LOCATION"),
        dispatch_queue=env("DISPATCH_QUEUE"),
        notify_queue=env("NOTIFY_QUEUE"),
        dispatch_url=env_optional("DISPATCH_URL"),
        notifier_url=env_optional("NOTIFIER_URL"),
        tasks_invoker_sa=env("TASKS_INVOKER_SA"),
        dispatch_max_attempts=int(env("DISPATCH_MAX_ATTEMPTS")),
        telnyx_base_url=env("TELNYX_BASE_URL").rstrip("/"),
        telnyx_api_key=env_optional("TELNYX_API_KEY"),
        telnyx_public_key=env_optional("TELNYX_PUBLIC_KEY"),
        telnyx_webhook_url=env_optional("TELNYX_WEBHOOK_URL"),
        twilio_base_url=env("TWILIO_BASE_URL").rstrip("/"),
        twilio_account_sid=env("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=env("TWILIO_AUTH_TOKEN"),
        twilio_webhook_url=env("TWILIO_WEBHOOK_URL"),
        carrier_weights=carrier_weights(env("CARRIER_WEIGHTS")),
        carrier_error_burst=error_burst(env("CARRIER_ERROR_BURST")),
        webhook_signing_key=env_optional("WEBHOOK_SIGNING_KEY"),
        media_bucket=env_optional("MEDIA_BUCKET"),
        media_allowed_hosts=_csv(env("MEDIA_ALLOWED_HOSTS")),
        media_trusted_origins=_csv(env("MEDIA_TRUSTED_ORIGINS")),
        inbound_media_hosts=_csv(env("INBOUND_MEDIA_HOSTS")),
        media_max_bytes=int(env("MEDIA_MAX_BYTES")),
        media_url_ttl_seconds=int(env("MEDIA_URL_TTL_SECONDS")),
        media_fetch_timeout_seconds=float(env("MEDIA_FETCH_TIMEOUT_SECONDS")),
        media_signing_key=env("MEDIA_SIGNING_KEY"),
        batch_legs_per_second=float(env("BATCH_LEGS_PER_SECOND")),
        link_base_url=env_optional("LINK_BASE_URL").rstrip("/"),
        sweep_queued_after_seconds=int(env("SWEEP_QUEUED_AFTER_SECONDS")),
        sweep_final_after_seconds=int(env("SWEEP_FINAL_AFTER_SECONDS")),
        dispatch_claim_lease_seconds=int(env("DISPATCH_CLAIM_LEASE_SECONDS")),
        dispatch_lookup_horizon_seconds=int(env("DISPATCH_LOOKUP_HORIZON_SECONDS")),
        firestore_emulator_host=os.environ.get("FIRESTORE_EMULATOR_HOST", ""),
        storage_emulator_host=os.environ.get("STORAGE_EMULATOR_HOST", ""),
        tasks_emulator_host=os.environ.get("CLOUD_TASKS_EMULATOR_HOST", ""),
    )
