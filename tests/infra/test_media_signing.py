"""``Media.signed_urls``: the same signing time gives byte-identical URLs (a retried provider request keeps
its body, so Telnyx replays it under the same Idempotency-Key), and the URLs are the ones the library's
public ``Blob.generate_signed_url`` produces at that instant. No emulator: a throwaway RSA key signs, and
the signature is checked with its public key."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import _signing

from infra.media import Media

TTL = 86_400
BUCKET = "mmsgate-media-test"
MEDIA = [
    {"object": "media/tnt_a/" + "ab" * 32, "content_type": "image/png"},
    {"object": "media/tnt_a/" + "cd" * 32, "content_type": "image/jpeg"},
]
AT = dt.datetime(2031, 3, 4, 5, 6, 7, 891_000, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_json(key) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k1",
                       "private_key": pem, "client_email": "signer@p.iam.gserviceaccount.com",
                       "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"})


@pytest.fixture
def media(key, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)  # the real endpoint, as in production
    settings = SimpleNamespace(media_url_ttl_seconds=TTL, media_signing_key=service_account_json(key))
    m = Media(settings, resolver=lambda host, port: [])
    m.bucket = storage.Client(project="p", credentials=AnonymousCredentials()).bucket(BUCKET)
    return m


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_same_signing_time_gives_identical_urls(media):
    first = media.signed_urls(MEDIA, AT)
    again = media.signed_urls(MEDIA, AT)
    assert first == again
    assert len(set(first)) == 2  # one per object


def test_a_different_signing_time_gives_different_urls(media):
    assert media.signed_urls(MEDIA, AT) != media.signed_urls(MEDIA, AT + dt.timedelta(seconds=1))


def test_the_url_is_valid_from_the_signing_time_for_the_ttl(media):
    url = media.signed_urls(MEDIA[:1], AT)[0]
    q = query(url)
    assert q["X-Goog-Date"] == "20310304T050607Z"
    assert q["X-Goog-Expires"] == str(TTL)
    assert q["X-Goog-Credential"].startswith("signer@p.iam.gserviceaccount.com/20310304/")
    assert q["response-content-type"] == "image/png"
    assert urlsplit(url).path == f"/{BUCKET}/{MEDIA[0]['object']}"


def test_a_naive_signing_time_is_utc(media):
    assert media.signed_urls(MEDIA, AT.replace(tzinfo=None)) == media.signed_urls(MEDIA, AT)


def test_equals_what_the_library_signs_at_that_instant(media, key, monkeypatch):
    """Blob.generate_signed_url (the public API, which signs "now") with the library clock at AT."""
    monkeypatch.setattr(_signing, "_NOW", lambda tz=None: AT)
    credentials = media._signer()["credentials"]
    expected = [media.bucket.blob(m["object"]).generate_signed_url(
        version="v4", expiration=dt.timedelta(seconds=TTL), method="GET", response_type=m["content_type"],
        credentials=credentials) for m in MEDIA]
    assert media.signed_urls(MEDIA, AT) == expected


def test_the_signature_verifies_with_the_public_key(media, key):
    """Rebuild the V4 string to sign from the URL (GCS's documented canonical request) and check it."""
    url = media.signed_urls(MEDIA[:1], AT)[0]
    parts = urlsplit(url)
    raw_query, _, signature = parts.query.rpartition("&X-Goog-Signature=")
    canonical = "\n".join(["GET", parts.path, raw_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"])
    q = query(url)
    scope = q["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["GOOG4-RSA-SHA256", q["X-Goog-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key.public_key().verify(binascii.unhexlify(signature), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_without_a_signing_time_it_signs_as_of_now(media):
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = dt.datetime.strptime(query(media.signed_urls(MEDIA[:1])[0])["X-Goog-Date"], "%Y%m%dT%H%M%SZ")
    after = dt.datetime.now(dt.UTC)
    assert before <= stamp.replace(tzinfo=dt.UTC) <= after


def test_iam_signblob_path_signs_at_the_given_time_too(key, monkeypatch):
    """Production signs through IAM signBlob (no key file): same time, same URL; the time is signed."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    signed = []

    def sign_blob(message, access_token, service_account_email, universe_domain=None):
        signed.append((message, access_token, service_account_email))
        digest = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(digest).decode()

    monkeypatch.setattr(_signing, "_sign_message", sign_blob)
    settings = SimpleNamespace(media_url_ttl_seconds=TTL, media_signing_key="")
    m = Media(settings, resolver=lambda host, port: [])
    m.bucket = storage.Client(project="p", credentials=AnonymousCredentials()).bucket(BUCKET)
    m._credentials = SimpleNamespace(valid=True, token="ya29.token",
                                     service_account_email="fn@p.iam.gserviceaccount.com")

    first, again = m.signed_urls(MEDIA, AT), m.signed_urls(MEDIA, AT)
    assert first == again
    assert query(first[0])["X-Goog-Credential"].startswith("fn@p.iam.gserviceaccount.com/20310304/")
    assert {(token, email) for _, token, email in signed} == {("ya29.token", "fn@p.iam.gserviceaccount.com")}
    assert all("\n20310304T050607Z\n" in message for message, _, _ in signed)
