"""Simulator configuration, read from ``TWILIO_SIM_*`` environment variables or built directly.

Defaults play Twilio as twilio.md documents it; where it is silent they take the harsher reading (the
comments name the section). ``docs/twilio-simulator.md`` lists every variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

ENV_ACCOUNT_SID = "TWILIO_SIM_ACCOUNT_SID"
ENV_AUTH_TOKEN = "TWILIO_SIM_AUTH_TOKEN"
ENV_API_KEY_SID = "TWILIO_SIM_API_KEY_SID"
ENV_API_KEY_SECRET = "TWILIO_SIM_API_KEY_SECRET"
ENV_NUMBERS = "TWILIO_SIM_NUMBERS"
ENV_INBOUND_URL = "TWILIO_SIM_INBOUND_URL"
ENV_INBOUND_FALLBACK_URL = "TWILIO_SIM_INBOUND_FALLBACK_URL"
ENV_STATUS_DELAY_MS = "TWILIO_SIM_STATUS_DELAY_MS"
ENV_SENDER_SEGMENTS_PER_S = "TWILIO_SIM_SENDER_SEGMENTS_PER_S"
ENV_QUEUE_CAPACITY_S = "TWILIO_SIM_QUEUE_CAPACITY_S"
ENV_RATE_LIMIT_PER_S = "TWILIO_SIM_RATE_LIMIT_PER_S"
ENV_LIST_LAG_S = "TWILIO_SIM_LIST_LAG_S"
ENV_HANG_S = "TWILIO_SIM_HANG_S"
ENV_OUTAGE = "TWILIO_SIM_OUTAGE"
ENV_FETCH_MEDIA = "TWILIO_SIM_FETCH_MEDIA"
ENV_MEDIA_TIMEOUT_MS = "TWILIO_SIM_MEDIA_TIMEOUT_MS"
ENV_CARRIER_MEDIA_LIMIT_BYTES = "TWILIO_SIM_CARRIER_MEDIA_LIMIT_BYTES"
ENV_CALLBACK_RETRY_PAUSE_MS = "TWILIO_SIM_CALLBACK_RETRY_PAUSE_MS"
ENV_IDEMPOTENCY_TOKEN = "TWILIO_SIM_IDEMPOTENCY_TOKEN"
ENV_WORKERS = "TWILIO_SIM_WORKERS"

DEFAULT_ACCOUNT_SID = "AC" + "0" * 31 + "1"
ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
OUTAGE_MODES = ("off", "5xx", "timeout")


@dataclass
class SimConfig:
    """Everything the simulator can be told.

    ``account_sid`` + ``auth_token`` are the Basic-auth credentials and the webhook signing key (twilio.md §1,
    §4); ``api_key_sid`` + ``api_key_secret`` (``SK…``) are a second accepted credential that never signs.
    """

    auth_token: str
    account_sid: str = DEFAULT_ACCOUNT_SID
    api_key_sid: str | None = None
    api_key_secret: str | None = None
    # Numbers the account owns. Empty: any E.164 From is taken as owned (a kinder spot, for convenience);
    # otherwise a From outside the list is 400/21660 (§1 "From must be owned by the account").
    numbers: list[str] = field(default_factory=list)
    inbound_url: str | None = None  # the number's "A message comes in" webhook (§5)
    inbound_fallback_url: str | None = None  # tried once the primary fails (§5, E11205)
    status_delay_ms: int = 100  # between two status changes (queued→sending→sent→final)
    # Per-sender throughput in segments per second (§7: US/CA long code 1, toll-free 3). None: by the From
    # number's kind; 0: unlimited.
    sender_segments_per_s: float | None = None
    queue_capacity_s: float = 36_000.0  # a sender queue holds 10 h of segments (§7)
    # API requests per second per account before 429/20429. Twilio publishes no number (§7): the simulator's
    # choice, 0 turns the limit off.
    rate_limit_per_s: int = 50
    # How long a created message stays out of the list (GET Messages.json). Undocumented (§6, UNCONFIRMED):
    # harsher reading, a long lag; fetch by SID always sees it.
    list_lag_s: float = 30.0
    hang_s: float = 60.0  # how long a "timeout" answer hangs before the connection is dropped
    outage: str = "off"  # "off" | "5xx" | "timeout" (switchable at run time: POST /_sim/outage)
    # Twilio fetches every MediaUrl (HEAD and GET) at send time (§8). Off by default: URLs are only
    # syntax-checked (a kinder spot; turn it on to play §8).
    fetch_media: bool = False
    media_timeout_s: float = 5.0
    # Non-image media above this is undelivered (§8: carriers 0.6-1.5 MB, Twilio recommends 600 KB; harsher:
    # the recommendation is the limit). Only checked when fetch_media is on.
    carrier_media_limit_bytes: int = 600 * 1024
    callback_retry_pause_ms: int = 0  # E11205: "two 5 s tries" back to back
    # Send I-Twilio-Idempotency-Token on callbacks. UNCONFIRMED for Messaging (§4): off by default (harsher).
    idempotency_token: bool = False
    workers: int = 32  # threads doing callback POSTs
    log_requests: bool = True

    def __post_init__(self) -> None:
        if not self.auth_token:
            raise ValueError("an auth token is required (TWILIO_SIM_AUTH_TOKEN or SimConfig.auth_token)")
        if not ACCOUNT_SID.match(self.account_sid):
            raise ValueError(f"account SID must be AC + 32 lowercase hex, got {self.account_sid!r}")
        if self.outage not in OUTAGE_MODES:
            raise ValueError(f"outage must be one of {', '.join(OUTAGE_MODES)}, got {self.outage!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> SimConfig:
        env = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError as exc:
                raise ValueError(f"{name} must be a number, got {raw!r}") from exc
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

        rate = env.get(ENV_SENDER_SEGMENTS_PER_S, "").strip()
        values: dict[str, object] = dict(
            auth_token=env.get(ENV_AUTH_TOKEN, ""),
            account_sid=env.get(ENV_ACCOUNT_SID) or DEFAULT_ACCOUNT_SID,
            api_key_sid=env.get(ENV_API_KEY_SID) or None,
            api_key_secret=env.get(ENV_API_KEY_SECRET) or None,
            numbers=[n.strip() for n in env.get(ENV_NUMBERS, "").split(",") if n.strip()],
            inbound_url=env.get(ENV_INBOUND_URL) or None,
            inbound_fallback_url=env.get(ENV_INBOUND_FALLBACK_URL) or None,
            status_delay_ms=int(number(ENV_STATUS_DELAY_MS, 100)),
            sender_segments_per_s=number(ENV_SENDER_SEGMENTS_PER_S, 0) if rate else None,
            queue_capacity_s=number(ENV_QUEUE_CAPACITY_S, 36_000.0),
            rate_limit_per_s=int(number(ENV_RATE_LIMIT_PER_S, 50)),
            list_lag_s=number(ENV_LIST_LAG_S, 30.0),
            hang_s=number(ENV_HANG_S, 60.0),
            outage=(env.get(ENV_OUTAGE) or "off").strip().lower(),
            fetch_media=flag(ENV_FETCH_MEDIA),
            media_timeout_s=number(ENV_MEDIA_TIMEOUT_MS, 5000) / 1000.0,
            carrier_media_limit_bytes=int(number(ENV_CARRIER_MEDIA_LIMIT_BYTES, 600 * 1024)),
            callback_retry_pause_ms=int(number(ENV_CALLBACK_RETRY_PAUSE_MS, 0)),
            idempotency_token=flag(ENV_IDEMPOTENCY_TOKEN),
            workers=max(1, int(number(ENV_WORKERS, 32))),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
