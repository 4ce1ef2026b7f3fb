"""Webhook signatures: verifying Telnyx's Ed25519 reports, signing our own customer events (HMAC)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time

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


def tenant_secret(master_key: str, tenant_id: str) -> str:
    """Each tenant's webhook secret is derived from one master key held in Secret Manager."""
    digest = hmac.new(master_key.encode(), f"tenant-webhook:{tenant_id}".encode(), hashlib.sha256).hexdigest()
    return f"whsec_{digest}"


def sign_customer_event(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Mmsgate-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_customer_event(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """What a receiver runs (and what our tests run): constant-time compare, 300 s tolerance."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if not _TIMESTAMP.fullmatch(parts.get("t", "")) or "v1" not in parts:
        return False
    if abs((now if now is not None else time.time()) - int(parts["t"])) > TOLERANCE_SECONDS:
        return False
    expected = sign_customer_event(secret, body, int(parts["t"])).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts["v1"])
