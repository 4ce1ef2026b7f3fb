"""Simulator configuration, read from ``TELNYX_SIM_*`` environment variables or built directly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_API_KEY = "TELNYX_SIM_API_KEY"
ENV_SIGNING_KEY = "TELNYX_SIM_SIGNING_KEY"
ENV_WEBHOOK_DELAY_MS = "TELNYX_SIM_WEBHOOK_DELAY_MS"
ENV_PROFILE_WEBHOOK_URL = "TELNYX_SIM_PROFILE_WEBHOOK_URL"
ENV_PROFILE_WEBHOOK_FAILOVER_URL = "TELNYX_SIM_PROFILE_WEBHOOK_FAILOVER_URL"
ENV_MEDIA_LIMIT_BYTES = "TELNYX_SIM_MEDIA_LIMIT_BYTES"
ENV_WEBHOOK_ATTEMPTS = "TELNYX_SIM_WEBHOOK_ATTEMPTS"
ENV_WEBHOOK_RETRY_PAUSE_MS = "TELNYX_SIM_WEBHOOK_RETRY_PAUSE_MS"
ENV_WEBHOOK_TIMEOUT_MS = "TELNYX_SIM_WEBHOOK_TIMEOUT_MS"
ENV_MEDIA_TIMEOUT_MS = "TELNYX_SIM_MEDIA_TIMEOUT_MS"
ENV_WEBHOOK_WORKERS = "TELNYX_SIM_WEBHOOK_WORKERS"
ENV_IDEMPOTENCY_TTL_S = "TELNYX_SIM_IDEMPOTENCY_TTL_S"
ENV_IDEMPOTENCY_REPLAY = "TELNYX_SIM_IDEMPOTENCY_REPLAY"
ENV_MDR_LAG_S = "TELNYX_SIM_MDR_LAG_S"
ENV_MESSAGE_RETENTION_S = "TELNYX_SIM_MESSAGE_RETENTION_S"
ENV_INBOUND_MEDIA_TTL_MS = "TELNYX_SIM_INBOUND_MEDIA_TTL_MS"


@dataclass
class SimConfig:
    """Everything the simulator can be told.

    ``signing_key`` is base64 of the raw 32-byte Ed25519 seed; when it is None the server generates a
    key at start and exposes the matching public key as ``server.public_key``.
    """

    api_key: str
    signing_key: str | None = None
    webhook_delay_ms: int = 100  # before message.sent, and again before message.finalized
    profile_webhook_url: str | None = None  # used when a message carries no webhook URL of its own
    profile_webhook_failover_url: str | None = None
    media_limit_bytes: int = 1_048_576  # total fetched media must be strictly below this
    webhook_attempts: int = 3  # attempts per URL (Telnyx: "up to 3 attempts per URL")
    webhook_retry_pause_ms: int = 200  # pause between two attempts
    webhook_timeout_s: float = 2.0  # a 2xx must arrive within this
    media_timeout_s: float = 5.0
    webhook_workers: int = 32  # threads doing webhook POSTs (waits between steps hold no thread)
    log_requests: bool = True  # one line per request on stderr
    # Telnyx's messaging reference declares no Idempotency-Key support (telnyx.md §1.9): by default the header
    # is accepted and ignored. True plays the generic idempotency page instead (replay, 422, key format), for
    # experiments only; idempotency_ttl_s is then how long a successful keyed answer is replayed (0: never).
    idempotency_replay: bool = False
    idempotency_ttl_s: float = 86_400.0
    # A detail record shows up only once its recipient is sent, and this long after (telnyx.md §9: queued
    # messages are not in MDRs; the delay is undocumented, so the simulator makes it long).
    mdr_lag_s: float = 60.0
    # GET /v2/messages/{id} finds a message this long after it was received (telnyx.md §9: 10 days).
    message_retention_s: float = 10 * 86_400.0
    inbound_media_ttl_ms: int = 60_000  # how long an inbound message's media links work (Telnyx's are ephemeral)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> SimConfig:
        env = os.environ if environ is None else environ

        def num(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError as exc:
                raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            return value

        def seconds(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError as exc:
                raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from exc
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"{name} must be a finite number, not negative")
            return value

        def flag(name: str) -> bool:
            raw = env.get(name, "").strip().lower()
            if raw in ("", "0", "false", "no", "off"):
                return False
            if raw in ("1", "true", "yes", "on"):
                return True
            raise ValueError(f"{name} must be 1 or 0, got {raw!r}")

        values = dict(
            api_key=env.get(ENV_API_KEY, ""),
            signing_key=env.get(ENV_SIGNING_KEY) or None,
            webhook_delay_ms=num(ENV_WEBHOOK_DELAY_MS, 100),
            profile_webhook_url=env.get(ENV_PROFILE_WEBHOOK_URL) or None,
            profile_webhook_failover_url=env.get(ENV_PROFILE_WEBHOOK_FAILOVER_URL) or None,
            media_limit_bytes=num(ENV_MEDIA_LIMIT_BYTES, 1_048_576),
            webhook_attempts=max(1, num(ENV_WEBHOOK_ATTEMPTS, 3)),
            webhook_retry_pause_ms=num(ENV_WEBHOOK_RETRY_PAUSE_MS, 200),
            webhook_timeout_s=num(ENV_WEBHOOK_TIMEOUT_MS, 2000) / 1000.0,
            media_timeout_s=num(ENV_MEDIA_TIMEOUT_MS, 5000) / 1000.0,
            webhook_workers=max(1, num(ENV_WEBHOOK_WORKERS, 32)),
            idempotency_replay=flag(ENV_IDEMPOTENCY_REPLAY),
            idempotency_ttl_s=seconds(ENV_IDEMPOTENCY_TTL_S, 86_400.0),
            mdr_lag_s=seconds(ENV_MDR_LAG_S, 60.0),
            message_retention_s=seconds(ENV_MESSAGE_RETENTION_S, 10 * 86_400.0),
            inbound_media_ttl_ms=num(ENV_INBOUND_MEDIA_TTL_MS, 60_000),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
