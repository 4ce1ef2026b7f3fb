"""Webhook signatures, with keys made here (not the simulator's signer, which could share a bug with the
verifier). Telnyx: Ed25519 over ``"{timestamp}|{raw body}"``, base64 headers, 300 s two-sided tolerance
(reference/telnyx.md §3). Ours: Standard Webhooks, ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{raw body}">`` with the key bytes of a ``whsec_<base64>`` secret (README)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.carriers.signatures import (
    BadSignature,
    signing_secrets,
    tenant_secret,
    verify_telnyx,
    verify_webhook,
    webhook_headers,
)
from shared.rules.records import Tenant

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


# -- customer events (Standard Webhooks) ----------------------------------------------------------------
SECRET = "whsec_" + base64.b64encode(b"unit-test-key-32-bytes-long!!!!!").decode()
EVENT = "evt_0123456789abcdef"


def reference_signature(secret: str, event_id: str, t: int, body: bytes) -> str:
    """The Standard Webhooks spec written out: the key is the base64 after ``whsec_``; HMAC-SHA256 over
    "{id}.{timestamp}.{body}"; "v1," + base64 of the digest."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.new(key, f"{event_id}.{t}.".encode() + body, hashlib.sha256).digest()).decode()


def headers(secret: str = SECRET, t: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return webhook_headers([secret], EVENT, t, body)


def test_our_headers_are_the_specs():
    assert headers() == {"webhook-id": EVENT, "webhook-timestamp": str(NOW),
                         "webhook-signature": reference_signature(SECRET, EVENT, NOW, BODY)}


def test_round_trip_and_header_names_are_case_insensitive():
    verify_webhook(SECRET, BODY, headers(), now=NOW + 10)
    verify_webhook(SECRET, BODY, {k.upper(): v for k, v in headers().items()}, now=NOW)


@pytest.mark.parametrize("change", [
    lambda h, b: (h, b + b" "),  # body tampered
    lambda h, b: ({**h, "webhook-timestamp": str(NOW + 1)}, b),  # timestamp swapped
    lambda h, b: ({**h, "webhook-id": "evt_other"}, b),  # id swapped
    lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
    lambda h, b: ({**h, "webhook-signature": h["webhook-signature"][:-4] + "AAA="}, b),
    lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
    lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
    lambda h, b: ({**h, "webhook-timestamp": "²"}, b),
    lambda h, b: ({}, b),
])
def test_tampering_is_refused(change):
    tampered, body = change(headers(), BODY)
    with pytest.raises(BadSignature):
        verify_webhook(SECRET, body, tampered, now=NOW)


def test_another_secret_is_refused_and_any_matching_signature_of_several_is_enough():
    other = tenant_secret("master", "tnt_other")
    with pytest.raises(BadSignature):
        verify_webhook(other, BODY, headers(), now=NOW)
    both = webhook_headers([SECRET, other], EVENT, NOW, BODY)
    assert len(both["webhook-signature"].split(" ")) == 2
    verify_webhook(SECRET, BODY, both, now=NOW)
    verify_webhook(other, BODY, both, now=NOW)


def test_a_stale_or_future_event_is_refused():
    with pytest.raises(BadSignature):
        verify_webhook(SECRET, BODY, headers(), now=NOW + 301)
    with pytest.raises(BadSignature):
        verify_webhook(SECRET, BODY, headers(), now=NOW - 301)
    verify_webhook(SECRET, BODY, headers(), now=NOW + 300)


def test_tenant_secrets_are_whsec_base64_of_32_bytes_and_differ_per_tenant_version_and_master_key():
    a, b = tenant_secret("master", "tnt_a"), tenant_secret("master", "tnt_b")
    assert a != b and a.startswith("whsec_") and b.startswith("whsec_")
    assert len(base64.b64decode(a.removeprefix("whsec_"), validate=True)) == 32
    assert tenant_secret("master", "tnt_a") == a
    assert tenant_secret("other-master", "tnt_a") != a
    assert tenant_secret("master", "tnt_a", 1) not in (a, tenant_secret("master", "tnt_a", 2))


def test_no_secret_is_derived_from_an_empty_master_key():
    with pytest.raises(ValueError):
        tenant_secret("", "tnt_a")


def test_a_rotation_signs_with_both_secrets_for_a_day_then_only_the_new_one():
    rotated = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    tenant = Tenant(id="tnt_a", webhook_secret_version=3, webhook_secret_previous_version=2,
                    webhook_secret_rotated_at=rotated)
    old, new = tenant_secret("m", "tnt_a", 2), tenant_secret("m", "tnt_a", 3)
    assert signing_secrets("m", tenant, rotated + dt.timedelta(hours=23)) == [new, old]
    assert signing_secrets("m", tenant, rotated + dt.timedelta(hours=25)) == [new]
    assert signing_secrets("m", Tenant(id="tnt_a"), rotated) == [tenant_secret("m", "tnt_a")]
