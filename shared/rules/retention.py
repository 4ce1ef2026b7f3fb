"""Retention: how long a tenant's messages, groups, conversations and their provider events are kept.

Every such record carries ``delete_at`` (infra.collections.TTL_FIELDS; not ``expires_at``, which names a
send's validity in the public API), which Firestore TTL deletes on.
The tenant's ``retention_days`` is set by the operator (``python -m tools.admin set-retention``); a record
keeps the expiry it was written with, so changing the setting applies to new messages.
"""

from __future__ import annotations

import datetime as dt

from shared.rules.records import DEFAULT_RETENTION_DAYS, Tenant

MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 3650


def clamp_days(days: int | None) -> int:
    """A stored setting outside the allowed range is treated as its nearest bound, never as "forever"."""
    if days is None:
        return DEFAULT_RETENTION_DAYS
    return max(MIN_RETENTION_DAYS, min(MAX_RETENTION_DAYS, int(days)))


def delete_at(tenant: Tenant, created_at: dt.datetime) -> dt.datetime:
    return created_at + dt.timedelta(days=clamp_days(tenant.retention_days))
