"""Identifiers: ids we hand out, the per-leg idempotency key, and the names derived from it."""

from __future__ import annotations

import base64
import hashlib
import secrets


def _token(nbytes: int = 15) -> str:
    return base64.b32encode(secrets.token_bytes(nbytes)).decode().lower().rstrip("=")


def new_message_id() -> str:
    return f"msg_{_token()}"


def new_group_id() -> str:
    return f"grp_{_token()}"


def new_request_id() -> str:
    return f"req_{_token(10)}"


def new_tenant_id() -> str:
    return f"tnt_{_token(10)}"


def new_api_key() -> str:
    return f"mk_live_{_token(20)}"


def leg_key(group_id: str, to: str) -> str:
    """The per-leg idempotency key of the public contract."""
    return f"group-mms:{group_id}:{to}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def leg_message_id(key: str) -> str:
    """A group leg's message id is derived from its key, so a retried fan-out lands on the same row."""
    raw = hashlib.sha256(key.encode()).digest()[:15]
    return "msg_" + base64.b32encode(raw).decode().lower()


def failover_key(message_id: str) -> str:
    """The leg key of an MMS leg's SMS failover: one per MMS leg."""
    return f"failover:{message_id}"


def failover_message_id(message_id: str) -> str:
    """The SMS failover's message id, derived from the MMS leg's: every path that creates it (the report,
    dispatch, the sweeper, a replay) names the same row, and only one ``create()`` can succeed."""
    return leg_message_id(failover_key(message_id))


def conversation_id(group_id: str) -> str:
    """The conversation (one group_mms) of a group send, derived from the group id."""
    raw = hashlib.sha256(f"conversation:{group_id}".encode()).digest()[:15]
    return "cnv_" + base64.b32encode(raw).decode().lower()


def task_name(key: str, generation: int = 0) -> str:
    """Cloud Tasks names allow letters, digits, '-' and '_'; a hash also spreads them (no hot prefix).

    ``generation`` > 0 names a deliberate re-enqueue (the sweeper's), which must not collide with the
    first task's name while Cloud Tasks still remembers it.
    """
    name = _digest(key)[:40]
    return name if generation == 0 else f"{name}-g{generation}"


def notify_event_id(message_id: str, status: str) -> str:
    """One customer event per (leg, status): stable across retries so receivers can deduplicate."""
    return "evt_" + _digest(f"{message_id}:{status}")[:26]


def api_key_hash(api_key: str) -> str:
    return _digest(api_key)
