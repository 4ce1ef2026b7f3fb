"""Webhook signatures: verifying Telnyx's Ed25519 reports, signing our own customer events (Standard Webhooks)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.rules.records import Tenant

TOLERANCE_SECONDS = 300
# Unix seconds in ASCII digits only: str.isdigit() accepts "²" and other digits int() then rejects, and
# int() refuses over 4300 digits; either would escape as a 500 from an unauthenticated endpoint.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class BadSignature(ValueError):
    pass


def verify_telnyx(raw_body: bytes, timestamp: str | None, signature: str | None, public_key_b64: str,
                  *, now: float | None = None) -> None:
    """Ed25519 over ``"{timestamp}|{raw body}"`` with the account public key; raises BadSignature."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not timestamp or not signature:
        raise BadSignature("missing signature headers")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise BadSignature("malformed timestamp")
    if abs((now if now is not None else time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        raise BadSignature("timestamp outside the tolerance")
    try:
        key = base64.b64decode(public_key_b64, validate=True)
        sig = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("malformed base64") from None
    if len(key) != 32 or len(sig) != 64:
        raise BadSignature("wrong key or signature length")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, timestamp.encode() + b"|" + raw_body)
    except InvalidSignature:
        raise BadSignature("signature does not verify") from None


# Standard Webhooks (https://www.standardwebhooks.com): the header names, the signed content
# ``"{webhook-id}.{webhook-timestamp}.{body}"`` and the ``whsec_<base64 key>`` secret format are the spec's,
# so receivers verify with its published libraries in any language.
SECRET_PREFIX = "whsec_"
# After a rotation, deliveries carry the previous secret's signature too, for as long as an event may still be
# retried (24 h): a receiver that has not switched yet keeps verifying, one that has switched already does too.
ROTATION_OVERLAP_SECONDS = 24 * 3600


def webhook_key(master_key: str, tenant_id: str, version: int = 0) -> bytes:
    """The 32 key bytes of a tenant's webhook secret: HMAC-SHA256 of the master key (Secret Manager) over the
    tenant id and its secret version. Rotating bumps the version stored on the tenant, so the key changes
    without any per-tenant secret to store. An empty master key derives nothing: such a secret would be
    wrong everywhere and predictable."""
    if not master_key:
        raise ValueError("WEBHOOK_SIGNING_KEY is not set")
    label = f"tenant-webhook:{tenant_id}" + (f":v{version}" if version else "")
    return hmac.new(master_key.encode(), label.encode(), hashlib.sha256).digest()


def tenant_secret(master_key: str, tenant_id: str, version: int = 0) -> str:
    """What the tenant configures in its receiver: ``whsec_`` + base64 of the key bytes."""
    return SECRET_PREFIX + base64.b64encode(webhook_key(master_key, tenant_id, version)).decode()


def secret_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret (as the Standard Webhooks libraries read it)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def signing_secrets(master_key: str, tenant: Tenant, now: dt.datetime) -> list[str]:
    """The secrets a delivery to ``tenant`` is signed with: the current version's, and the previous
    version's while the rotation overlap lasts."""
    versions = [tenant.webhook_secret_version]
    previous, rotated_at = tenant.webhook_secret_previous_version, tenant.webhook_secret_rotated_at
    if previous is not None and previous not in versions and rotated_at is not None \
            and (now - rotated_at).total_seconds() <= ROTATION_OVERLAP_SECONDS:
        versions.append(previous)
    return [tenant_secret(master_key, tenant.id, v) for v in versions]


def sign_webhook(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """One ``webhook-signature`` entry: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def webhook_headers(secrets: list[str], event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; several secrets give space-separated signatures (rotation)."""
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign_webhook(s, event_id, timestamp, body) for s in secrets)}


def verify_webhook(secret: str, body: bytes, headers: dict[str, str], *, now: float | None = None) -> None:
    """What a receiver runs (the dev inbox does): raises BadSignature saying why. Header names are
    case-insensitive; any one ``v1`` signature that matches is enough; 300 s tolerance either way."""
    lowered = {k.lower(): v for k, v in headers.items()}
    event_id, timestamp = lowered.get("webhook-id"), lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature")
    if not event_id or not timestamp or not signatures:
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise BadSignature("malformed webhook-timestamp")
    if abs((now if now is not None else time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        raise BadSignature("webhook-timestamp outside the tolerance")
    expected = sign_webhook(secret, event_id, int(timestamp), body).split(",", 1)[1]
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(expected.encode(), value.encode()):
            return
    raise BadSignature("no signature matches this secret")
