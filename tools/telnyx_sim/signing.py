"""Ed25519 webhook signing, exactly as Telnyx does it (telnyx.md §3).

Keys travel as base64 of the raw 32-byte values: the private key is the Ed25519 seed, the public key is
what a customer puts in ``TELNYX_PUBLIC_KEY``. The signed bytes are ``f"{timestamp}|{raw_body}"``.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_RAW = serialization.Encoding.Raw


def _b64decode(value: str, what: str) -> bytes:
    value = value.strip()
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc


def load_private_key(private_key_b64: str) -> Ed25519PrivateKey:
    """Parse base64 of the 32-byte seed (a 64-byte NaCl-style seed+public key is also accepted)."""
    raw = _b64decode(private_key_b64, "Ed25519 private key")
    if len(raw) == 64:
        raw = raw[:32]
    if len(raw) != 32:
        raise ValueError(f"Ed25519 private key must be 32 raw bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_b64(private_key_b64: str) -> str:
    """The base64 raw public key that matches a base64 private key."""
    pub = load_private_key(private_key_b64).public_key()
    return base64.b64encode(pub.public_bytes(_RAW, serialization.PublicFormat.Raw)).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """Return ``(private_b64, public_b64)``: base64 of the raw 32-byte seed and raw 32-byte public key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    return base64.b64encode(private).decode("ascii"), base64.b64encode(public).decode("ascii")


def _signed_bytes(timestamp: str | int, body: bytes | str) -> bytes:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return str(timestamp).encode("ascii") + b"|" + body


def sign(private_key_b64: str, timestamp: str | int, body: bytes | str) -> str:
    """Base64 of the 64-byte Ed25519 signature over ``f"{timestamp}|{body}"``."""
    signature = load_private_key(private_key_b64).sign(_signed_bytes(timestamp, body))
    return base64.b64encode(signature).decode("ascii")


def sign_with(key: Ed25519PrivateKey, timestamp: str | int, body: bytes | str) -> str:
    """Like :func:`sign`, with an already parsed key (the server signs many bodies with one key)."""
    return base64.b64encode(key.sign(_signed_bytes(timestamp, body))).decode("ascii")


def verify(public_key_b64: str, timestamp: str | int, body: bytes | str, signature_b64: str) -> bool:
    """True when the signature is valid. No timestamp tolerance check: that is the receiver's business."""
    try:
        pub_raw = _b64decode(public_key_b64, "public key")
        sig = _b64decode(signature_b64, "signature")
        if len(pub_raw) != 32 or len(sig) != 64:
            return False
        Ed25519PublicKey.from_public_bytes(pub_raw).verify(sig, _signed_bytes(timestamp, body))
        return True
    except (ValueError, InvalidSignature):
        return False
