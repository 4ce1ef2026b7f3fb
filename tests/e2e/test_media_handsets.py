"""Media for every handset (issue 25, item 4), through the whole path: the dev tenant's sender (+1 800) is
toll-free, so its media must total less than 600 KB (Telnyx's carrier table, docs/media.md). A 3 MB iPhone
HEIC and a 2 MB photo-like PNG each reach the Telnyx simulator as a JPEG under that limit, with the originals
kept in Cloud Storage; a 5 MB video is refused before anything is charged, with the limit named; a long-code
sender's limit is 1 MB. Images are made here (Pillow, pillow-heif), not committed."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from PIL import Image

from tests.conftest import fictional, load_json, wait_for

pytestmark = pytest.mark.stack

TOLL_FREE = 600 * 1024
LONG_CODE = 1024 * 1024
LONG_CODE_SENDER = "+14155550142"


@pytest.fixture
def host(media_host):
    media_host.reset()
    yield media_host
    media_host.reset()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo(size: tuple[int, int]) -> Image.Image:
    """Grain over a gradient: what a camera picture is to an encoder (it barely compresses)."""
    return Image.merge("RGB", [Image.effect_noise(size, 50), Image.linear_gradient("L").resize(size),
                               Image.effect_noise(size, 30)])


def iphone_heic() -> bytes:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    out = io.BytesIO()
    # x265's ultrafast preset: its default one takes a minute for this picture
    photo((1800, 1350)).save(out, "HEIF", quality=95, enc_params={"preset": "ultrafast"})
    return out.getvalue()


def photo_png() -> bytes:
    out = io.BytesIO()
    photo((1200, 900)).save(out, "PNG")
    return out.getvalue()


def stored(env, tenant_id: str) -> dict[str, bytes]:
    from infra.clients import storage

    blobs = storage().list_blobs(env.stack.config.media_bucket, prefix=f"media/{tenant_id}/")
    return {blob.name: blob.download_as_bytes() for blob in blobs}


def delivered_as_jpeg_under(env, host, original: bytes, content_type: str, path: str, to: str, limit: int,
                            sender: str | None = None) -> tuple[str, dict]:
    """Send ``original`` by URL; check what was stored, what the read shows and what the simulator fetched.
    Returns the message id and the leg's media entry."""
    url = host.put(path, original, content_type)
    response = env.api.post("/api/v1/messages/sms", json={"to": to, "body": "From the beach", "media_urls": [url],
                                                          **({"from": sender} if sender else {})})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]

    ref = env.leg_doc(message_id)["media"][0]
    assert ref["content_type"] == "image/jpeg" and ref["size"] < limit
    assert (ref["original_content_type"], ref["original_size"]) == (content_type, len(original))
    objects = stored(env, env.tenant_id)
    assert objects[ref["original_object"]] == original  # the original stays in Cloud Storage
    copy = objects[ref["object"]]
    assert sha(copy) == ref["sha256"] and len(copy) == ref["size"]
    assert env.message(message_id)["sent_media"] == [
        {"content_type": "image/jpeg", "size": ref["size"], "original_content_type": content_type,
         "original_size": len(original), "downscaled": ref["downscaled"]}]

    env.wait_status(message_id, "delivered", timeout=30)
    [sent] = env.sim_messages(to)
    [fetched] = sent["media"]
    assert fetched["content_type"] == "image/jpeg" and fetched["size"] < limit
    assert fetched["sha256"] == ref["sha256"]  # the provider got our JPEG, byte for byte
    with Image.open(io.BytesIO(copy)) as im:
        im.load()
        assert im.format == "JPEG"
    return message_id, ref


def test_a_3mb_heic_reaches_the_handset_as_a_jpeg_under_the_toll_free_limit(env, host):
    original = iphone_heic()
    assert 2_500_000 < len(original) < 4_000_000

    message_id, ref = delivered_as_jpeg_under(env, host, original, "image/heic", "/IMG_0042.HEIC", fictional(31),
                                              TOLL_FREE)

    assert ref["downscaled"] is True  # a 2.4-megapixel grainy JPEG is far over 600 KB
    with Image.open(io.BytesIO(stored(env, env.tenant_id)[ref["object"]])) as im:
        assert abs(im.size[0] / im.size[1] - 4 / 3) < 0.01

    # redaction deletes the original with the copy sent
    assert sorted(env.leg_doc(message_id)["media_objects"]) == sorted([ref["object"], ref["original_object"]])
    response = env.api.post(f"/api/v1/messages/{message_id}/redact")
    assert response.status_code == 200, response.text
    assert stored(env, env.tenant_id) == {}


def test_a_2mb_photo_like_png_reaches_the_handset_as_a_jpeg_under_the_toll_free_limit(env, host):
    original = photo_png()
    assert 1_800_000 < len(original) < 3_000_000

    _, ref = delivered_as_jpeg_under(env, host, original, "image/png", "/holiday.png", fictional(32), TOLL_FREE)

    with Image.open(io.BytesIO(stored(env, env.tenant_id)[ref["object"]])) as im:
        assert im.size == (1200, 900)  # as JPEG it fits whole; as PNG it would have lost half its width


def test_a_5mb_video_is_refused_with_the_limit_named_and_nothing_charged(env, host):
    video = (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomavc1" + b"\x00\x00\x00\x08free"
             + os.urandom(5 * 1024 * 1024))
    url = host.put("/clip.mp4", video, "video/mp4")
    balance = env.balance()

    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(33), "body": "Watch", "media_urls": [url]})

    assert response.status_code == 413, response.text
    error = load_json(response)["error"]
    assert error["code"] == "MEDIA_TOO_LARGE"
    assert "toll-free sender must total less than 614400 bytes (600 KB)" in error["message"]
    assert [d["field"] for d in error["details"]] == ["media_urls"]
    message = env.message(error["message_id"])
    assert message["status"] == "failed" and message["error_code"] == "MEDIA_TOO_LARGE"
    assert message["price"]["amount"] == "0.0000"
    assert env.balance() == balance  # nothing charged
    assert stored(env, env.tenant_id) == {}
    env.wait_until_delivered("dispatch")  # whatever was queued has been dispatched: still nothing sent
    assert env.sim_messages() == []


def test_a_long_code_sender_may_send_up_to_1mb(env, host):
    # the kind is stored as mmsgate-admin senders add --kind stores it (a +1 415 number is a long code anyway)
    env.store.accounts.put_tenant(env.tenant_id, {
        "senders": {LONG_CODE_SENDER: {"sms": True, "mms": True, "carrier": "telnyx", "kind": "long_code"}}})

    _, ref = delivered_as_jpeg_under(env, host, iphone_heic(), "image/heic", "/IMG_0043.HEIC", fictional(34),
                                  LONG_CODE, sender=LONG_CODE_SENDER)

    assert ref["size"] > TOLL_FREE  # more than a toll-free sender may send: the limit is the sender's


def test_a_batch_sends_its_heic_as_one_jpeg_under_the_limit_and_refuses_a_video_whole(env, host):
    url = host.put("/IMG_0044.HEIC", iphone_heic(), "image/heic")
    to = [fictional(i) for i in (35, 36, 37)]

    response = env.api.post("/api/v1/messages/batch", json={"to": to, "body": "Team photo", "media_urls": [url]})

    assert response.status_code == 202, response.text
    wait_for(lambda: len([m for m in env.sim_messages() if m["to"] in to]) == 3, 60, "the batch was not sent")
    media = [m["media"] for m in env.sim_messages() if m["to"] in to]
    assert {(f["content_type"], f["sha256"]) for [f] in media} == {("image/jpeg", media[0][0]["sha256"])}
    assert media[0][0]["size"] < TOLL_FREE
    assert host.hits["/IMG_0044.HEIC"] == 1  # fetched and converted once for the whole batch

    video = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomavc1" + os.urandom(5 * 1024 * 1024)
    balance = env.balance()
    refused = env.api.post("/api/v1/messages/batch", json={
        "to": [fictional(38), fictional(39)], "media_urls": [host.put("/clip2.mp4", video, "video/mp4")]})
    assert refused.status_code == 413, refused.text
    error = load_json(refused)["error"]
    assert error["code"] == "MEDIA_TOO_LARGE" and "toll-free sender" in error["message"]
    assert "614400 bytes" in error["message"]
    assert env.balance() == balance  # nothing reserved
