"""Media rules (shared.rules.media): sniffing, allowed types, declared-type matching, the size budget and
downscaling. Pure: no stack, no network. Test images are made with Pillow."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shared.rules import media
from shared.rules.errors import ErrorCode
from shared.rules.media import ALLOWED, Item, MediaError

LIMIT = 1_048_576


def image(fmt: str, size=(64, 48), noise: bool = False, **save) -> bytes:
    w, h = size
    im = (Image.frombytes("RGB", size, os.urandom(w * h * 3)) if noise
          else Image.linear_gradient("L").resize(size).convert("RGB"))
    out = io.BytesIO()
    im.save(out, fmt, **save)
    return out.getvalue()


def same_aspect(small: tuple[int, int], large: tuple[int, int]) -> bool:
    """``small`` is ``large`` times one scale, each side rounded to whole pixels."""
    (w, h), (big_w, big_h) = small, large
    return max((w - 0.5) / big_w, (h - 0.5) / big_h) <= min((w + 0.5) / big_w, (h + 0.5) / big_h)


def animated_gif(frames: int = 3, size=(200, 200)) -> bytes:
    images = [Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)) for _ in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def ftyp(brand: bytes, compatible: tuple[bytes, ...] = ()) -> bytes:
    body = b"ftyp" + brand + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00\x00\x00\x08free" + b"\x00" * 64


MP3_FRAME = bytes([0xFF, 0xFB, 0x90, 0x64]) + b"\x00" * 400  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
SAMPLES: dict[str, bytes] = {
    "image/jpeg": image("JPEG"),
    "image/png": image("PNG"),
    "image/gif": image("GIF"),
    "image/webp": image("WEBP"),
    "image/bmp": image("BMP"),
    "video/mp4": ftyp(b"isom", (b"isom", b"iso2", b"avc1", b"mp41")),
    "video/3gpp": ftyp(b"3gp5", (b"3gp5", b"isom")),
    "audio/mpeg": MP3_FRAME,
    "audio/amr": b"#!AMR\n" + b"\x3c" * 200,
    "text/vcard": b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nTEL:+14155550101\r\nEND:VCARD\r\n",
    "text/calendar": (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:Sale\r\nEND:VEVENT\r\n"
                      b"END:VCALENDAR\r\n"),
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n",
    "text/plain": "Weekend sale — 20 % off\n".encode(),
}
UNSUPPORTED: dict[str, bytes] = {
    "image/tiff": image("TIFF"),
    "text/html": b"<!DOCTYPE html><html><body>hi</body></html>",
    "image/svg+xml": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40,
    "application/zip": b"PK\x03\x04" + b"\x00" * 40,
    "video/quicktime": ftyp(b"qt  "),
    "audio/amr-wb": b"#!AMR-WB\n" + b"\x00" * 40,
    "application/octet-stream": bytes(range(256)) * 4,
}


def test_every_allowed_type_has_a_sample():
    assert set(SAMPLES) == set(ALLOWED)


@pytest.mark.parametrize("content_type", sorted(SAMPLES))
def test_sniff_recognises_every_allowed_type(content_type):
    assert media.sniff(SAMPLES[content_type]) == content_type
    assert media.check_type(content_type, SAMPLES[content_type], label="m", generic_ok=False) == content_type


@pytest.mark.parametrize("content_type", sorted(UNSUPPORTED))
def test_other_types_are_recognised_and_refused(content_type):
    data = UNSUPPORTED[content_type]
    assert media.sniff(data) == content_type
    for declared in (content_type, None):
        with pytest.raises(MediaError) as err:
            media.check_type(declared, data, label="m", generic_ok=True)
        assert err.value.code is ErrorCode.MEDIA_TYPE_UNSUPPORTED


@pytest.mark.parametrize(("declared", "data", "stored"), [
    ("IMAGE/JPG; charset=binary", SAMPLES["image/jpeg"], "image/jpeg"),
    ("image/pjpeg", SAMPLES["image/jpeg"], "image/jpeg"),
    ("audio/mp3", SAMPLES["audio/mpeg"], "audio/mpeg"),
    ("audio/mpeg", b"ID3\x04\x00\x00\x00\x00\x00\x00" + MP3_FRAME, "audio/mpeg"),
    ("text/x-vcard", SAMPLES["text/vcard"], "text/vcard"),
    ("text/plain; charset=utf-8", SAMPLES["text/vcard"], "text/plain"),  # vCard text is text
    ("video/mp4", SAMPLES["video/3gpp"], "video/mp4"),  # both ISO media files
    ("application/x-pdf", SAMPLES["application/pdf"], "application/pdf"),
])
def test_aliases_parameters_and_families(declared, data, stored):
    assert media.check_type(declared, data, label="m", generic_ok=False) == stored


@pytest.mark.parametrize(("declared", "data"), [
    ("image/png", SAMPLES["image/jpeg"]),  # a lying Content-Type
    ("image/jpeg", UNSUPPORTED["text/html"]),  # an HTML error page served as a picture
    ("application/pdf", SAMPLES["text/plain"]),
    ("text/plain", SAMPLES["image/png"]),
    ("text/vcard", SAMPLES["text/plain"]),
    ("image/gif", b"GIF"),  # too short to be one
    ("image/bmp", b"BMW is a car brand, not a bitmap"),
    ("text/html", UNSUPPORTED["text/html"]),
    ("image/jpeg", b""),
])
def test_a_declared_type_that_is_not_what_the_bytes_are_is_refused(declared, data):
    with pytest.raises(MediaError) as err:
        media.check_type(declared, data, label="media_urls[0]", generic_ok=True)
    assert err.value.code is ErrorCode.MEDIA_TYPE_UNSUPPORTED
    assert "media_urls[0]" in err.value.message


def test_a_generic_type_takes_the_sniffed_one_for_urls_only():
    for declared in (None, "", "application/octet-stream", "binary/octet-stream"):
        assert media.check_type(declared, SAMPLES["image/png"], label="m", generic_ok=True) == "image/png"
        with pytest.raises(MediaError, match="must declare"):
            media.check_type(declared, SAMPLES["image/png"], label="m", generic_ok=False)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from([None, "application/octet-stream", *ALLOWED, "text/html"]))
def test_sniff_and_check_never_crash(data, declared):
    assert isinstance(media.sniff(data), str)
    try:
        stored = media.check_type(declared, data, label="m", generic_ok=True)
    except MediaError as exc:
        assert exc.code is ErrorCode.MEDIA_TYPE_UNSUPPORTED
    else:
        assert stored in ALLOWED


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.binary(max_size=256))
def test_a_magic_number_decides_whatever_follows(content_type, tail):
    if content_type.startswith("text/") or content_type in ("video/mp4", "video/3gpp", "image/bmp"):
        return  # text needs to stay text; ISO and BMP headers are longer than the sample prefix below
    head = SAMPLES[content_type][:16]
    assert media.sniff(head + tail) == content_type


def test_source_cap_reads_more_only_for_resizable_images():
    assert media.source_cap(SAMPLES["image/jpeg"][:64], LIMIT) == media.MAX_SOURCE_BYTES
    assert media.source_cap(SAMPLES["image/bmp"][:64], LIMIT) == LIMIT - 1
    assert media.source_cap(SAMPLES["application/pdf"][:64], LIMIT) == LIMIT - 1


# ------------------------------------------------------------------------------------------ budget


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3_000_000), st.booleans()), min_size=1, max_size=10),
       st.sampled_from([614_400, LIMIT, 100_000]))
def test_budget_keeps_the_total_under_the_limit(parts, limit):
    sizes = [s for s, _ in parts]
    resizable = [r for _, r in parts]
    try:
        shares = media.budget(sizes, resizable, limit)
    except MediaError as exc:
        assert exc.code is ErrorCode.MEDIA_TOO_LARGE
        fixed = sum(s for s, r in parts if not r)
        assert sum(sizes) >= limit
        assert not any(resizable) or fixed + media.MIN_SHARE * sum(resizable) > limit - 1
        return
    final = [s if share is None else share for s, share in zip(sizes, shares, strict=True)]
    assert sum(final) < limit
    for (size, is_resizable), share in zip(parts, shares, strict=True):
        if share is not None:
            assert is_resizable and media.MIN_SHARE <= share < size
    caps = {share for share in shares if share is not None}
    assert len(caps) <= 1  # one common cap for the largest images ...
    if caps:
        cap = caps.pop()  # ... and every image left as it is was no larger than it
        assert all(s <= cap for (s, r), share in zip(parts, shares, strict=True) if r and share is None)


def test_budget_under_the_limit_changes_nothing():
    assert media.budget([400_000, 600_000], [True, False], LIMIT) == [None, None]


def test_budget_cannot_shrink_what_is_not_an_image():
    with pytest.raises(MediaError) as err:
        media.budget([3_000_000], [False], LIMIT)
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    with pytest.raises(MediaError):
        media.budget([1_047_000, 500_000], [False, True], LIMIT)  # the PDF leaves no room for the image


# --------------------------------------------------------------------------------------- downscale


@pytest.mark.parametrize(("fmt", "content_type", "size", "save"), [
    ("JPEG", "image/jpeg", (1900, 1400), {"quality": 95}),
    ("PNG", "image/png", (900, 700), {}),
    ("GIF", "image/gif", (700, 500), {}),
    ("WEBP", "image/webp", (1400, 1000), {"quality": 100}),
])
def test_downscale_fits_keeps_format_and_aspect_ratio(fmt, content_type, size, save):
    data = image(fmt, size, noise=True, **save)
    target = min(len(data) // 3, 600_000)
    out = media.downscale(data, content_type, target)
    assert len(out) <= target
    assert len(out) >= 0.5 * target  # not needlessly small
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == fmt
        im.load()  # decodes
        assert same_aspect(im.size, size)
    assert media.sniff(out) == content_type


def test_downscale_applies_exif_orientation():
    im = Image.frombytes("RGB", (1200, 600), os.urandom(1200 * 600 * 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95, exif=exif)
    small = media.downscale(out.getvalue(), "image/jpeg", 100_000)
    with Image.open(io.BytesIO(small)) as result:
        width, height = result.size
        assert height > width  # displayed upright, as the sender saw it
        assert result.getexif().get(0x0112, 1) == 1


def test_downscale_refuses_bytes_that_do_not_decode():
    broken = SAMPLES["image/png"][:40] + b"\x00" * 2000
    with pytest.raises(MediaError) as err:
        media.downscale(broken, "image/png", 1000)
    assert err.value.code is ErrorCode.MEDIA_TYPE_UNSUPPORTED


def test_animated_images_are_never_downscaled():
    data = animated_gif()
    assert media.is_animated("image/gif", data)
    assert not media.is_animated("image/gif", SAMPLES["image/gif"])
    items = [Item("image/gif", data, "media[0]")]
    with pytest.raises(MediaError) as err:
        media.fit(items, len(data) // 2)
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE


def test_fit_under_the_limit_keeps_the_bytes():
    items = [Item(ct, data, ct) for ct, data in SAMPLES.items()]
    assert media.fit(items, LIMIT) == items


def test_fit_downscales_the_images_around_what_cannot_shrink():
    photo = image("JPEG", (1900, 1400), noise=True, quality=95)
    pdf = SAMPLES["application/pdf"] + b"%" + b"x" * 400_000
    items = [Item("image/jpeg", photo, "photo"), Item("application/pdf", pdf, "pdf"),
             Item("text/plain", SAMPLES["text/plain"], "note")]
    out = media.fit(items, 614_400)
    assert sum(len(i.data) for i in out) < 614_400
    assert out[1] == items[1] and out[2] == items[2]
    assert out[0].original_size == len(photo) and out[0].content_type == "image/jpeg"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(40, 400), st.integers(40, 400), st.sampled_from(["JPEG", "PNG", "WEBP"]),
       st.floats(0.2, 0.8))
def test_downscale_property(width, height, fmt, fraction):
    data = image(fmt, (width, height), noise=True)
    content_type = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}[fmt]
    target = max(2000, int(len(data) * fraction))
    try:
        out = media.downscale(data, content_type, target)
    except MediaError as exc:  # only when even a 16-pixel side does not fit
        assert exc.code is ErrorCode.MEDIA_TOO_LARGE
        return
    assert len(out) <= target
    with Image.open(io.BytesIO(out)) as im:
        im.load()
        assert same_aspect(im.size, (width, height))
