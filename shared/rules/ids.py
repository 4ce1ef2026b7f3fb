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


def new_batch_id() -> str:
    return f"bat_{_token()}"


def new_template_id() -> str:
    return f"tpl_{_token()}"


def new_request_id() -> str:
    return f"req_{_token(10)}"


def new_tenant_id() -> str:
    return f"tnt_{_token(10)}"


API_KEY_PREFIX = "mk_live_"  # a key made for a deployment
TEST_API_KEY_PREFIX = "mk_test_"  # a key made against the emulators (make dev, tests), like the dev key
_PREFIXES = (API_KEY_PREFIX, TEST_API_KEY_PREFIX)
_SECRET_CHARS = 32  # _token(20)


def new_api_key(tenant_id: str | None = None, *, live: bool = True) -> str:
    """A new API key. With ``tenant_id`` the key names its tenant after the secret,
    ``mk_live_<secret>_<tenant id>``, so a request's first round can read the tenant's documents alongside the
    key's own (which still decides: see ``tenant_named_by``). The secret comes first, so the 12-character
    prefix operators see and revoke by (``mmsgate-admin keys``) stays distinct between keys. ``live=False``
    (a key made against the emulators) starts ``mk_test_`` instead, as the dev key does; the prefix is a label
    for people, the key's stored hash alone decides what it may do."""
    prefix = API_KEY_PREFIX if live else TEST_API_KEY_PREFIX
    secret = _token(20)
    return f"{prefix}{secret}_{tenant_id}" if tenant_id else f"{prefix}{secret}"


def tenant_named_by(api_key: str) -> str | None:
    """The tenant an API key names (None for a key made before keys named their tenant). Only a hint of which
    documents to read: the key's own document, read in the same round, must exist, be unrevoked and name the
    same tenant, or the request is 401."""
    prefix = next((p for p in _PREFIXES if api_key.startswith(p)), None)
    if prefix is None:
        return None
    secret, sep, tenant_id = api_key[len(prefix):].partition("_")
    if not sep or len(secret) != _SECRET_CHARS or not 0 < len(tenant_id) <= 128 or "/" in tenant_id:
        return None
    return tenant_id


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
