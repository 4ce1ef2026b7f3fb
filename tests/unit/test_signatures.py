"""Webhook signatures, with keys made here (not the simulator's signer, which could share a bug with the
verifier). Telnyx: Ed25519 over ``"{timestamp}|{raw body}"``, base64 headers, 300 s two-sided tolerance
(reference/telnyx.md §3). Ours: ``t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">`` (README)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.signatures import BadSignature, sign_customer_event, tenant_secret, verify_customer_event, verify_telnyx

NOW = 1_800_000_000
BODY = b'{"data":{"id":"0f1e2d3c","event_type":"message.finalized","payload":{"id":"tx-1"}}}'
KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def telnyx_sig(message: bytes, key: Ed25519PrivateKey = KEY) -> str:
    return base64.b64encode(key.sign(message)).decode()


def signed(ts: int | str = NOW, body: bytes = BODY) -> tuple[str, str]:
    return str(ts), telnyx_sig(str(ts).encode() + b"|" + body)


def test_a_telnyx_signature_verifies():
    ts, sig = signed()
    verify_telnyx(BODY, ts, sig, PUBLIC, now=NOW)  # no exception


@pytest.mark.parametrize("skew", [-300, 300, -1, 1])
def test_inside_the_tolerance_both_ways(skew):
    ts, sig = signed(NOW + skew)
    verify_telnyx(BODY, ts, sig, PUBLIC, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_outside_the_tolerance_both_ways(skew):
    ts, sig = signed(NOW + skew)
    with pytest.raises(BadSignature):
        verify_telnyx(BODY, ts, sig, PUBLIC, now=NOW)


@pytest.mark.parametrize("scheme", [
    lambda ts, body: ts.encode() + b"." + body,  # our customer scheme's separator
    lambda ts, body: body,  # body only
    lambda ts, body: ts.encode() + body,  # no separator
    lambda ts, body: body + b"|" + ts.encode(),  # reversed
    lambda ts, body: ts.encode() + b"|" + body + b"\n",  # re-serialised body
])
def test_only_timestamp_bar_body_is_the_signed_message(scheme):
    ts = str(NOW)
    with pytest.raises(BadSignature):
        verify_telnyx(BODY, ts, telnyx_sig(scheme(ts, BODY)), PUBLIC, now=NOW)


def test_the_raw_body_is_signed_byte_for_byte():
    raw = b"  " + BODY + b"\r\n"  # whitespace a JSON parser would ignore is still signed
    ts, sig = signed(body=raw)
    verify_telnyx(raw, ts, sig, PUBLIC, now=NOW)
    with pytest.raises(BadSignature):
        verify_telnyx(raw.strip(), ts, sig, PUBLIC, now=NOW)
    _, stripped = signed(body=raw.strip())
    with pytest.raises(BadSignature):
        verify_telnyx(raw, ts, stripped, PUBLIC, now=NOW)


def test_a_tampered_body_fails():
    ts, sig = signed()
    with pytest.raises(BadSignature):
        verify_telnyx(BODY.replace(b"tx-1", b"tx-2"), ts, sig, PUBLIC, now=NOW)


def test_a_signature_for_another_timestamp_fails():
    _, sig = signed(NOW - 10)
    with pytest.raises(BadSignature):
        verify_telnyx(BODY, str(NOW), sig, PUBLIC, now=NOW)


def test_another_key_fails():
    ts = str(NOW)
    other = telnyx_sig(ts.encode() + b"|" + BODY, Ed25519PrivateKey.generate())
    with pytest.raises(BadSignature):
        verify_telnyx(BODY, ts, other, PUBLIC, now=NOW)


VALID = "valid"  # the right signature for BODY at NOW


@pytest.mark.parametrize(("ts", "sig"), [
    (None, VALID), ("", VALID), (str(NOW), None), (str(NOW), ""),
    (f"{NOW}.0", VALID), ("-1", VALID), (" " + str(NOW), VALID), ("²", VALID), ("9" * 5000, VALID),
    (str(NOW), "not base64!"),
    (str(NOW), base64.b64encode(b"\x00" * 63).decode()),  # 63 bytes, not 64
    (str(NOW), base64.b64encode(b"\x00" * 64).decode()),  # right length, wrong signature
])
def test_malformed_headers_raise_bad_signature(ts, sig):
    with pytest.raises(BadSignature):
        verify_telnyx(BODY, ts, signed()[1] if sig == VALID else sig, PUBLIC, now=NOW)


@pytest.mark.parametrize("key", ["", "not base64!", base64.b64encode(b"\x01" * 31).decode()])
def test_a_malformed_public_key_raises_bad_signature(key):
    ts, sig = signed()
    with pytest.raises(BadSignature):
        verify_telnyx(BODY, ts, sig, key, now=NOW)


# -- customer events ---------------------------------------------------------------------------------
SECRET = "whsec_unit"


def reference_header(secret: str, body: bytes, t: int) -> str:
    """The README's receiver, written out: HMAC-SHA256 over "{t}.{body}", hex."""
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_our_header_is_what_the_readme_tells_receivers_to_check():
    assert sign_customer_event(SECRET, BODY, NOW) == reference_header(SECRET, BODY, NOW)


def test_round_trip():
    assert verify_customer_event(SECRET, BODY, sign_customer_event(SECRET, BODY, NOW), now=NOW + 10)


@pytest.mark.parametrize("change", [
    lambda h, b: (h, b + b" "),  # body tampered
    lambda h, b: (h.replace(f"t={NOW}", f"t={NOW + 1}"), b),  # timestamp swapped
    lambda h, b: (h[:-1] + ("0" if h[-1] != "0" else "1"), b),  # signature tampered
    lambda h, b: (h.split(",")[0], b),  # no v1
    lambda h, b: (h.split(",")[1], b),  # no t
    lambda h, b: ("", b),
])
def test_tampering_is_refused(change):
    header, body = change(sign_customer_event(SECRET, BODY, NOW), BODY)
    assert verify_customer_event(SECRET, body, header, now=NOW) is False


def test_another_secret_is_refused():
    assert verify_customer_event("whsec_other", BODY, sign_customer_event(SECRET, BODY, NOW), now=NOW) is False


def test_a_stale_event_is_refused():
    header = sign_customer_event(SECRET, BODY, NOW)
    assert verify_customer_event(SECRET, BODY, header, now=NOW + 301) is False
    assert verify_customer_event(SECRET, BODY, header, now=NOW + 300) is True


def test_tenant_secrets_differ_per_tenant_and_master_key():
    a, b = tenant_secret("master", "tnt_a"), tenant_secret("master", "tnt_b")
    assert a != b and a.startswith("whsec_") and b.startswith("whsec_")
    assert tenant_secret("master", "tnt_a") == a
    assert tenant_secret("other-master", "tnt_a") != a
