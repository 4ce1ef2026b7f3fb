"""Media for every handset (issue 25, item 4), the pure part: HEIC/HEIF recognised and converted to JPEG, a
photo-like PNG sent as JPEG when that is what fits, the size limit of each kind of sender, and refusals that
name the limit. No stack: images are made here with Pillow and pillow-heif."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from shared.rules import media
from shared.rules.errors import ErrorCode
from shared.rules.media import Item, MediaError, MediaLimit
from shared.rules.records import Tenant

ROOT = Path(__file__).resolve().parents[2]
TOLL_FREE = 600 * 1024
LONG_CODE = 1024 * 1024


def heic(size=(96, 64), *, noise: bool = False, quality: int = 80, exif: bytes | None = None) -> bytes:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    w, h = size
    im = (Image.frombytes("RGB", size, os.urandom(w * h * 3)) if noise
          else Image.linear_gradient("L").resize(size).convert("RGB"))
    out = io.BytesIO()
    extra = {"exif": exif} if exif else {}
    # ultrafast: x265's default preset takes a minute on a large noisy picture
    im.save(out, "HEIF", quality=quality, enc_params={"preset": "ultrafast"}, **extra)
    return out.getvalue()


def photo_png(size=(900, 675)) -> bytes:
    """Photo-like: grain and gradients, as a camera picture saved as PNG."""
    im = Image.merge("RGB", [Image.effect_noise(size, 40), Image.linear_gradient("L").resize(size),
                             Image.effect_noise(size, 25)])
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def drawing_png(size=(1200, 900)) -> bytes:
    """Not photo-like: text and flat shapes on white, as a screenshot."""
    im = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for y in range(0, size[1], 12):
        draw.text((10, y), f"Invoice 2026, line {y}: total 123.45 USD " * 3, fill=(0, 0, 0))
    for i in range(40):
        x, y = i * 30 % size[0], i * 17 % size[1]
        draw.rectangle((x, y, x + 50, y + 20), fill=(i * 6 % 256, 100, 200))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def ftyp(brand: bytes, compatible: tuple[bytes, ...] = ()) -> bytes:
    body = b"ftyp" + brand + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00\x00\x00\x08free" + b"\x00" * 64


def decoded(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# ------------------------------------------------------------------------------------------ sender kinds


@pytest.mark.parametrize(("number", "kind"), [
    *[(f"+1{npa}5550100", "toll_free") for npa in ("800", "833", "844", "855", "866", "877", "888")],
    ("+18225550100", "long_code"),  # 822 is reserved for toll-free but not in service
    ("+14155550100", "long_code"),
    ("+16135550123", "long_code"),
    ("+448005550100", "long_code"),  # a UK freephone number is not NANP toll-free
    ("+1800555010", "long_code"),  # ten digits after +: not a NANP number at all
    ("12345", "short_code"),
    ("898211", "short_code"),
])
def test_a_sender_kind_is_inferred_from_the_number(number, kind):
    assert media.sender_kind(number) == kind


def test_each_kind_takes_the_smallest_us_carrier_limit_of_telnyx_table():
    # Telnyx's table (docs/media.md, telnyx.md 4.1): AT&T, T-Mobile, Verizon, Sprint (legacy), in KB
    table = {"long_code": (1024, 1536, 1024, 1536), "toll_free": (600, 600, 600, 600),
             "short_code": (600, 1024, 1229, 1024)}
    assert media.SENDER_KIND_LIMITS == {kind: min(row) * 1024 for kind, row in table.items()}
    assert set(media.SENDER_KINDS) == set(table)


@pytest.mark.parametrize(("kind", "deployment", "expected"), [
    ("toll_free", LONG_CODE, TOLL_FREE),
    ("long_code", LONG_CODE, LONG_CODE),
    ("short_code", LONG_CODE, TOLL_FREE),
    ("long_code", 500_000, 500_000),  # an operator's lower MEDIA_MAX_BYTES still holds
])
def test_the_limit_is_the_kind_within_the_deployment(kind, deployment, expected):
    limit = MediaLimit.for_sender(kind, deployment)
    assert limit.max_bytes == expected and limit.kind == kind


def test_the_limit_says_its_bytes_and_the_sender_kind():
    said = MediaLimit.for_sender("toll_free", LONG_CODE).describe()
    assert "toll-free sender" in said and "less than 614400 bytes (600 KB)" in said
    assert "long-code sender" in MediaLimit.for_sender("long_code", LONG_CODE).describe()
    assert "(1 MB)" in MediaLimit.for_sender("long_code", LONG_CODE).describe()
    assert "sender" not in MediaLimit(LONG_CODE).describe()  # inbound copies: the deployment's limit


def test_a_stored_sender_kind_wins_and_a_missing_or_unknown_one_is_inferred():
    tenant = Tenant.from_doc("t", {"senders": {
        "+18005550100": {"mms": True},
        "+14155550100": {"mms": True, "kind": "toll_free"},
        "+18885550100": {"mms": True, "kind": "long_code"},
        "+18445550100": {"mms": True, "kind": "satellite"},
    }})
    assert {n: s.kind for n, s in tenant.senders.items()} == {
        "+18005550100": "toll_free", "+14155550100": "toll_free", "+18885550100": "long_code",
        "+18445550100": "toll_free"}


def test_a_re_encoded_attachment_uses_its_original_object_too():
    from shared.rules.records import StoredMedia

    sent = StoredMedia.from_doc({"object": "media/t/jpeg", "content_type": "image/jpeg", "size": 10,
                                 "original_object": "media/t/heic", "original_content_type": "image/heic"})
    assert sent.objects == ("media/t/jpeg", "media/t/heic")
    assert StoredMedia("media/t/png", "image/png", 10).objects == ("media/t/png",)
    assert StoredMedia("", "image/png", 0).objects == ()  # an inbound attachment never copied


# --------------------------------------------------------------------------------------------- HEIC/HEIF


@pytest.mark.parametrize(("data", "content_type"), [
    (ftyp(b"heic", (b"mif1", b"heic")), "image/heic"),
    (ftyp(b"heix", (b"mif1", b"heix")), "image/heic"),
    (ftyp(b"mif1", (b"mif1", b"heic", b"miaf")), "image/heic"),  # a structural brand, HEVC coded
    (ftyp(b"mif1", (b"mif1", b"miaf")), "image/heif"),
    (ftyp(b"avif", (b"avif", b"mif1")), "image/avif"),
    (ftyp(b"mif1", (b"avif", b"mif1")), "image/avif"),
    (ftyp(b"hevc", (b"msf1", b"hevc")), "image/heic-sequence"),
    (ftyp(b"msf1", (b"msf1", b"avis")), "image/avif-sequence"),
])
def test_heif_files_are_told_apart_by_their_brands(data, content_type):
    assert media.sniff(data) == content_type


def test_a_heic_is_accepted_under_either_label_or_none_and_avif_and_sequences_are_not():
    data = heic()
    assert media.sniff(data) == "image/heic"
    for declared, stored in (("image/heic", "image/heic"), ("image/heif", "image/heif"), (None, "image/heic"),
                             ("application/octet-stream", "image/heic")):
        assert media.check_type(declared, data, label="m", generic_ok=True) == stored
    with pytest.raises(MediaError) as err:
        media.check_type("image/jpeg", data, label="m", generic_ok=True)
    assert "its content is image/heic" in err.value.message
    for other in (ftyp(b"avif", (b"avif", b"mif1")), ftyp(b"hevc", (b"msf1", b"hevc"))):
        with pytest.raises(MediaError) as err:
            media.check_type(None, other, label="m", generic_ok=True)
        assert err.value.code is ErrorCode.MEDIA_TYPE_UNSUPPORTED


def test_a_heic_may_be_read_up_to_the_source_cap_as_it_is_always_re_encoded():
    assert media.source_cap(heic()[:64], TOLL_FREE) == media.MAX_SOURCE_BYTES


def test_a_heic_becomes_a_jpeg_of_the_same_picture_without_its_metadata():
    exif = Image.Exif()
    exif[0x010F] = "Apple"  # Make
    exif[0x8825] = {2: (37.0, 46.0, 30.0)}  # GPSInfo: latitude
    data = heic((120, 80), exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as original:
        assert original.getexif().get(0x010F) == "Apple"  # the sample does carry metadata

    content_type, out = media.convert(data, "image/heic", label="media[0]")

    assert content_type == "image/jpeg"
    im = decoded(out)
    assert im.format == "JPEG" and im.size == (120, 80)
    assert dict(im.getexif()) == {}  # no camera, no GPS
    # the gradient survived: left is dark, right is light (linear_gradient runs top to bottom, resized)
    assert im.convert("L").getpixel((60, 2)) < 40 and im.convert("L").getpixel((60, 77)) > 215


def test_bytes_that_only_look_like_a_heic_are_refused_as_unsupported():
    with pytest.raises(MediaError) as err:
        media.convert(ftyp(b"heic", (b"mif1", b"heic")) + os.urandom(500), "image/heic", label="media_urls[0]")
    assert err.value.code is ErrorCode.MEDIA_TYPE_UNSUPPORTED
    assert "media_urls[0] does not decode as HEIC" in err.value.message


def test_a_heic_over_the_conversion_pixel_cap_is_too_large_before_it_is_decoded(monkeypatch):
    monkeypatch.setattr(media, "MAX_CONVERT_PIXELS", 96 * 64 - 1)
    with pytest.raises(MediaError) as err:
        media.convert(heic((96, 64)), "image/heic", label="media_urls[0]")
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert err.value.message == "media_urls[0] has 96x64 pixels; at most 6143 can be re-encoded"
    monkeypatch.setattr(media, "MAX_CONVERT_PIXELS", 96 * 64)
    assert media.convert(heic((96, 64)), "image/heic")[0] == "image/jpeg"


def test_fit_converts_a_small_heic_and_keeps_the_original():
    data = heic()
    [out] = media.fit([Item("image/heic", data, "media[0]", "beach.heic")], TOLL_FREE, "toll_free")
    assert out.content_type == "image/jpeg" and decoded(out.data).format == "JPEG"
    assert (out.original, out.original_size, out.original_content_type) == (data, len(data), "image/heic")
    assert out.filename == "beach.heic" and not out.downscaled


def test_fit_brings_a_large_heic_under_the_toll_free_limit_as_jpeg():
    data = heic((1400, 1050), noise=True, quality=95)
    assert len(data) > TOLL_FREE
    [out] = media.fit([Item("image/heif", data, "media_urls[0]")], TOLL_FREE, "toll_free")
    assert out.content_type == "image/jpeg" and len(out.data) < TOLL_FREE
    assert out.downscaled and out.original_size == len(data) and out.original_content_type == "image/heif"
    im = decoded(out.data)
    assert im.format == "JPEG" and abs(im.size[0] / im.size[1] - 4 / 3) < 0.01


# ---------------------------------------------------------------------------------------------- PNG


@pytest.mark.parametrize(("png_size", "target", "opaque", "jpeg_size", "as_jpeg"), [
    (2_000_000, 600_000, True, 300_000, True),  # photo-like, must lose half its width as PNG
    (2_000_000, 600_000, True, 1_200_000, False),  # JPEG no smaller than PNG: a drawing, stays PNG
    (2_000_000, 600_000, False, 300_000, False),  # transparency: JPEG has none
    (2_000_000, 600_000, True, None, False),  # not known to be photo-like
    (700_000, 600_000, True, 100_000, False),  # fits at 0.93 of its width as PNG: stays lossless
    (500_000, 600_000, True, 100_000, False),  # fits as it is
])
def test_png_as_jpeg_decision(png_size, target, opaque, jpeg_size, as_jpeg):
    assert media.png_as_jpeg(png_size, target, opaque, jpeg_size) is as_jpeg


def test_a_photo_like_png_over_the_limit_goes_as_a_full_size_jpeg():
    data = photo_png()
    target = len(data) // 4  # as PNG: half its width at best
    content_type, out = media.reduce(data, "image/png", target, label="media[0]")
    assert content_type == "image/jpeg" and len(out) <= target
    assert decoded(out).size == (900, 675)  # as JPEG it fits whole


def test_a_photo_like_png_only_a_little_over_stays_png():
    data = photo_png((400, 300))
    target = int(len(data) * 0.85)
    content_type, out = media.reduce(data, "image/png", target)
    assert content_type == "image/png" and len(out) <= target and decoded(out).format == "PNG"


def test_a_drawing_stays_png_however_far_it_shrinks():
    data = drawing_png()
    content_type, out = media.reduce(data, "image/png", len(data) // 4)
    assert content_type == "image/png" and decoded(out).format == "PNG"


def test_a_photo_with_transparency_stays_png():
    rgb = Image.open(io.BytesIO(photo_png((400, 300))))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((400, 300)))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    data = buf.getvalue()
    content_type, out = media.reduce(data, "image/png", len(data) // 4)
    assert content_type == "image/png" and decoded(out).mode == "RGBA"


def test_fit_records_a_png_sent_as_jpeg():
    data = photo_png()
    [out] = media.fit([Item("image/png", data, "media_urls[0]")], len(data) // 4, "toll_free")
    assert out.content_type == "image/jpeg" and out.original_content_type == "image/png"
    assert out.original == data and out.downscaled


# ----------------------------------------------------------------------------------------- refusals


def animated_gif(frames: int = 5, size=(360, 360)) -> bytes:
    images = [Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)) for _ in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def test_an_animated_gif_over_the_limit_is_refused_naming_the_limit_and_the_kind():
    data = animated_gif()
    assert len(data) >= TOLL_FREE
    with pytest.raises(MediaError) as err:
        media.fit([Item("image/gif", data, "media_urls[0]")], TOLL_FREE, "toll_free")
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    message = err.value.message
    assert message.startswith(f"media_urls[0] (animated GIF, {len(data)} bytes) cannot be downscaled")
    assert "less than 614400 bytes (600 KB)" in message and "toll-free sender" in message


def test_a_video_over_the_limit_is_refused_naming_the_limit_and_the_kind():
    video = ftyp(b"isom", (b"isom", b"avc1")) + os.urandom(LONG_CODE)
    with pytest.raises(MediaError) as err:
        media.fit([Item("video/mp4", video, "media[0]")], LONG_CODE, "long_code")
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert f"media[0] (MP4, {len(video)} bytes) cannot be downscaled" in err.value.message
    assert "long-code sender must total less than 1048576 bytes (1 MB)" in err.value.message


def test_what_cannot_shrink_together_is_refused_naming_the_limit():
    parts = [ftyp(b"isom", (b"isom",)) + os.urandom(400_000), b"%PDF-1.7\n" + os.urandom(300_000)]
    with pytest.raises(MediaError) as err:
        media.fit([Item("video/mp4", parts[0], "a"), Item("application/pdf", parts[1], "b")], TOLL_FREE,
                  "toll_free")
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert "toll-free sender must total less than 614400 bytes" in err.value.message


# ---------------------------------------------------------------------------------------- cold start


def test_a_function_that_never_converts_media_never_imports_pillow_heif():
    code = ("import sys, main\n"
            "for name in ('send', 'group', 'dispatch', 'webhook'):\n"
            "    getattr(main, name)\n"
            "import shared.rules.media, shared.rules.records\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pillow_heif', 'PIL')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
