"""Stripe-style ``Idempotency-Key`` rules, pure: what a key is scoped to, when a stored record has expired,
and what a request finds under its key (run it, replay the stored answer, refuse another body, or wait for a
duplicate still in flight). The store (infra/store/idempotency.py) and the HTTP edge (infra/web.py) only read,
write and ask these.

A key is scoped to the tenant and the route: the operation's canonical path (``/api/v1/messages/sms``), never
the path as spelled, so ``/sms`` and ``/sms/`` are one operation, and the same key sent to the single and the
group endpoint names two requests. Every idempotent route is a POST, so the route names the operation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from enum import StrEnum
from typing import Any

from shared.rules.errors import ApiError, ErrorCode
from shared.rules.frozen import frozen
from shared.rules.records import IdempotencyRecord, IdempotencyState

TTL_SECONDS = 24 * 3600  # the first answer is replayed for a day (Stripe's window)
# A claim whose request died is taken over after this: long enough for an accept's media fetch and commit.
LEASE_SECONDS = 60
MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"


class InvalidKey(ApiError):
    """400: the key is empty or longer than 255 characters."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.IDEMPOTENCY_KEY_INVALID, f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")


class KeyReused(ApiError):
    """422: the key was first used with another body."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.IDEMPOTENCY_KEY_REUSED,
                         "This Idempotency-Key was used with a different request body")


class KeyInUse(ApiError):
    """409: the first request with this key is still running; its answer is not known yet."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.IDEMPOTENCY_KEY_IN_USE, "A request with this Idempotency-Key is still in progress",
                         headers={"Retry-After": "1"})


class Claim(StrEnum):
    """What a request finds under its key (the store's ``begin`` answers one of these)."""

    NEW = "new"  # nothing live there: this request runs, and its record is written
    COMPLETED = "completed"  # the first request's answer is stored
    IN_PROGRESS = "in_progress"  # the first request holds a live lease
    MISMATCH = "mismatch"  # a live record of another body


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidKey()
    return key


def record_id(tenant_id: str, route: str, key: str) -> str:
    """The record a key names: one per tenant, route and key (hashed: a key is any text the client chose)."""
    return hashlib.sha256(f"{tenant_id}\n{route}\n{key}".encode()).hexdigest()


def payload_hash(raw: bytes) -> str:
    """The body's fingerprint, blind to key order and whitespace: the same JSON sent twice is the same request."""
    return hashlib.sha256(json.dumps(json.loads(raw), sort_keys=True).encode()).hexdigest()


def fresh_record(payload_hash: str, now: dt.datetime, *, lease_seconds: int = LEASE_SECONDS,
                 ttl_seconds: int = TTL_SECONDS) -> IdempotencyRecord:
    """The record a claiming request writes: in progress, leased, and kept until its TTL."""
    return IdempotencyRecord(state=IdempotencyState.IN_PROGRESS, payload_hash=payload_hash, created_at=now,
                             lease_until=now + dt.timedelta(seconds=lease_seconds),
                             expires_at=now + dt.timedelta(seconds=ttl_seconds))


def expired(record: IdempotencyRecord, now: dt.datetime) -> bool:
    """Past its TTL the record is as good as absent (Firestore's TTL deletes it only eventually)."""
    return record.expires_at <= now


def claim(record: IdempotencyRecord | None, payload_hash: str, now: dt.datetime) -> Claim:
    """What a request with ``payload_hash`` finds in ``record``. ``NEW`` over an existing record means the
    store takes it over: it expired, or its request died without finishing (its lease ran out)."""
    if record is None or expired(record, now):
        return Claim.NEW
    if record.payload_hash != payload_hash:
        return Claim.MISMATCH
    if record.state is IdempotencyState.COMPLETED:
        return Claim.COMPLETED
    if record.lease_until > now:
        return Claim.IN_PROGRESS
    return Claim.NEW


@frozen
class Replay:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def stored_answer(found: Claim, record: IdempotencyRecord | None) -> Replay | None:
    """The answer a request gets without running: the first answer, marked replayed; None when it must run.
    Raises ``KeyReused`` for another body and ``KeyInUse`` while the first request runs."""
    if found is Claim.MISMATCH:
        raise KeyReused()
    if found is Claim.IN_PROGRESS:
        raise KeyInUse()
    if found is Claim.COMPLETED and record is not None and record.response_status is not None:
        return Replay(record.response_status, record.response_body or {},
                      {**record.response_headers, REPLAYED_HEADER: "true"})
    return None


def keeps(status: int) -> bool:
    """Whether an answer is stored for replay. A rate limit (429) and our own failure (5xx) are not: the
    client's retry must run for real, not get the same refusal for a day."""
    return status != 429 and status < 500
