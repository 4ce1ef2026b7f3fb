"""Media through the whole path: accept fetches and stores our copy, dispatch signs URLs of it, and the
Telnyx simulator fetches those (and answers 40317 at 1 MB or more, as Telnyx does). The tenant's media
is served by ``media_host`` (tests/conftest.py), a loopback origin the stack trusts explicitly."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.conftest import fictional, load_json

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

LIMIT = 1_048_576


@pytest.fixture
def host(media_host):
    media_host.reset()
    yield media_host
    media_host.reset()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png(seed: int, size=(80, 60)) -> bytes:
    im = Image.new("RGB", size, (seed * 40 % 256, 90, 200 - seed * 30 % 200))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def noise_jpeg(size=(1900, 1400)) -> bytes:
    """About 3 MB: random pixels at quality 95 barely compress."""
    im = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95)
    return out.getvalue()


def stored(env, tenant_id: str) -> dict[str, bytes]:
    from infra.clients import storage

    blobs = storage().list_blobs(env.stack.config.media_bucket, prefix=f"media/{tenant_id}/")
    return {blob.name: blob.download_as_bytes() for blob in blobs}


def leg(env, message_id: str) -> dict:
    return env.leg_doc(message_id)


def assert_signed_copy(url: str, env, ref: dict) -> None:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == env.stack.urls["storage"]
    assert parts.path == f"/{env.stack.config.media_bucket}/{ref['object']}"
    assert "X-Goog-Signature=" in parts.query and "X-Goog-Algorithm=GOOG4-RSA-SHA256" in parts.query


def test_a_group_of_20_with_3_urls_fetches_each_once_and_stores_3_objects(env, host):
    images = {f"/pic-{i}.png": png(i) for i in range(3)}
    urls = [host.put(path, data, "image/png") for path, data in images.items()]
    to = [fictional(i) for i in range(1, 21)]

    response = env.api.post("/api/v1/messages/group", json={"to": to, "body": "Sale", "media_urls": urls})

    assert response.status_code == 200, response.text
    body = load_json(response)
    assert body["summary"]["accepted"] == 20
    assert host.hits == dict.fromkeys(images, 1)  # once per URL, not once per recipient
    objects = stored(env, env.tenant_id)
    assert sorted(objects.values()) == sorted(images.values())
    assert set(objects) == {f"media/{env.tenant_id}/{sha(d)}" for d in images.values()}

    ids = [m["id"] for m in body["messages"]]
    for message_id in ids:
        env.wait_status(message_id, "delivered", timeout=30)
    first = leg(env, ids[0])
    assert first["media_urls"] == urls  # what the customer asked for, still on the record and reads
    assert [m["sha256"] for m in first["media"]] == [sha(d) for d in images.values()]
    assert env.message(ids[0])["media_urls"] == urls
    sent = env.sim_messages()
    assert len(sent) == 20
    for message in sent:
        assert [m["sha256"] for m in message["media"]] == [sha(d) for d in images.values()]
        for url, ref in zip(message["media_urls"], first["media"], strict=True):
            assert_signed_copy(url, env, ref)
    assert host.hits == dict.fromkeys(images, 1)  # the provider fetched our copies, not the tenant's host


def test_a_3mb_jpeg_is_downscaled_still_decodes_and_the_simulator_accepts_it(env, host):
    original = noise_jpeg()
    assert len(original) > 2_500_000
    url = host.put("/big.jpg", original, "image/jpeg")
    # from a long code, whose limit is the 1 MB this test is about (the dev sender, +1 800, is toll-free: 600 KB;
    # tests/e2e/test_media_handsets.py)
    long_code = "+14155550142"
    env.store.accounts.put_tenant(env.tenant_id, {"senders": {long_code: {"sms": True, "mms": True}}})

    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(21), "media_urls": [url],
                                                           "from": long_code})

    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    ref = leg(env, message_id)["media"][0]
    assert ref["content_type"] == "image/jpeg" and ref["original_size"] == len(original)
    assert 0.5 * LIMIT < ref["size"] < LIMIT
    # the read shows it: what was sent and what was given (issue 24, item 3)
    assert env.message(message_id)["sent_media"] == [
        {"content_type": "image/jpeg", "size": ref["size"], "original_content_type": "image/jpeg",
         "original_size": len(original), "downscaled": True}]
    copy = stored(env, env.tenant_id)[ref["object"]]
    assert len(copy) == ref["size"] and sha(copy) == ref["sha256"]
    with Image.open(io.BytesIO(copy)) as im:
        im.load()
        assert im.format == "JPEG"
        assert abs(im.size[0] / im.size[1] - 1900 / 1400) < 0.01

    env.wait_status(message_id, "delivered", timeout=20)
    [sent] = env.sim_messages(fictional(21))
    assert sent["media"] == [{"url": sent["media_urls"][0], "content_type": "image/jpeg",
                              "sha256": ref["sha256"], "size": ref["size"]}]
    assert_signed_copy(sent["media_urls"][0], env, ref)


def test_a_3mb_pdf_is_refused_as_too_large_and_the_message_is_stored_failed(env, host):
    pdf = b"%PDF-1.7\n%" + os.urandom(3_000_000)
    url = host.put("/big.pdf", pdf, "application/pdf")

    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(22), "body": "Invoice",
                                                           "media_urls": [url]})

    assert response.status_code == 413, response.text
    error = load_json(response)["error"]
    assert error["code"] == "MEDIA_TOO_LARGE"
    assert "only images can be downscaled" in error["message"]
    assert [d["field"] for d in error["details"]] == ["media_urls"]
    message = env.message(error["message_id"])
    assert message["status"] == "failed" and message["error_code"] == "MEDIA_TOO_LARGE"
    assert stored(env, env.tenant_id) == {}
    assert env.sim_messages() == []


def test_a_media_failure_fails_every_leg_of_a_group(env, host):
    url = host.put("/lying.png", noise_jpeg((40, 30)), "image/png")

    response = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(23), fictional(24), "+442071838750", "not a number"], "media_urls": [url]})

    assert response.status_code == 207, response.text
    codes = [m.get("error_code") for m in load_json(response)["messages"]]
    assert codes == ["MEDIA_TYPE_UNSUPPORTED"] * 3 + ["INVALID_PHONE_NUMBER"]
    assert "declares image/png but its content is image/jpeg" in load_json(response)["messages"][0]["error_message"]
    assert env.balance() == 100_000_000  # nothing debited
    env.wait_until_delivered("dispatch")  # whatever was queued has been dispatched: still nothing sent
    assert env.sim_messages() == []


def test_a_base64_upload_is_stored_signed_and_fetched_byte_for_byte(env, host):
    vcard = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nTEL:+14155550101\r\nEND:VCARD\r\n"
    photo = png(7, (120, 90))
    media = [{"content_type": "image/png", "blob": base64.b64encode(photo).decode(), "filename": "shop.png"},
             {"content_type": "text/vcard", "blob": base64.b64encode(vcard).decode()}]

    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(25), "body": "Our card", "media": media})

    assert response.status_code == 200, response.text
    assert response.json()["data"]["channel"] == "mms"
    message_id = response.json()["data"]["id"]
    refs = leg(env, message_id)["media"]
    assert [(r["content_type"], r["sha256"], r["size"]) for r in refs] == [
        ("image/png", sha(photo), len(photo)), ("text/vcard", sha(vcard), len(vcard))]
    assert refs[0]["filename"] == "shop.png"
    assert stored(env, env.tenant_id) == {refs[0]["object"]: photo, refs[1]["object"]: vcard}

    env.wait_status(message_id, "delivered")
    [sent] = env.sim_messages(fictional(25))
    assert [(m["sha256"], m["size"], m["content_type"]) for m in sent["media"]] == [
        (sha(photo), len(photo), "image/png"), (sha(vcard), len(vcard), "text/vcard")]
    for url, ref in zip(sent["media_urls"], refs, strict=True):
        assert_signed_copy(url, env, ref)


def test_an_upload_of_an_unsupported_type_fails_the_group(env, host):
    html = base64.b64encode(b"<html><body>hi</body></html>").decode()
    response = env.api.post("/api/v1/messages/group", json={
        "to": [fictional(26)], "media": [{"content_type": "text/html", "blob": html}]})
    assert response.status_code == 207, response.text
    assert load_json(response)["messages"][0]["error_code"] == "MEDIA_TYPE_UNSUPPORTED"


def test_an_upload_that_is_not_base64_writes_nothing(env, host):
    response = env.api.post("/api/v1/messages/sms", json={
        "to": fictional(27), "media": [{"content_type": "image/png", "blob": "not base64!"}]})
    assert response.status_code == 400
    assert load_json(response)["error"]["code"] == "VALIDATION_ERROR"
