"""Media rules: which attachments a message may carry, what their bytes really are, and how a message whose
media is too large is made to fit the sender's limit.

Pure: bytes in, decisions out; no network, no Cloud SDK (fetching, storing and signing are
``infra.media``). Pillow is imported only inside the functions that decode images (:func:`is_animated`,
:func:`downscale`, :func:`reduce`, :func:`convert`), i.e. only when a message's media is over the limit or is
a HEIC, so a send without media never loads it; pillow-heif only inside :func:`convert`. Keeping the image
work here rather than in ``infra`` keeps it testable without any stack: it is a function of bytes.

Rules (docs/media.md has the reasons):

- Allowed types (``ALLOWED``): JPEG, PNG, GIF, WebP, BMP, MP4, 3GPP, MP3, AMR, vCard, iCalendar, PDF and
  plain text; HEIC/HEIF stills are accepted and always sent as JPEG (``CONVERTIBLE``, :func:`convert`).
  Anything else is ``MEDIA_TYPE_UNSUPPORTED``.
- The declared type (a URL's ``Content-Type`` header, an upload's ``content_type``) must be what the bytes
  are, judged by their magic numbers (:func:`sniff`). Aliases (``image/jpg``, ``audio/mp3``, ...) are
  accepted, parameters (``; charset=utf-8``) ignored, and three families are lenient: ``text/plain``
  covers vCard and iCalendar text, ``video/mp4`` and ``video/3gpp`` are both ISO media files,
  ``image/heic`` and ``image/heif`` both HEIF stills. A URL answered with no type or
  ``application/octet-stream`` (a common storage default) takes the sniffed type; an upload must declare
  its type.
- The media total of a message must stay *below* its limit (:class:`MediaLimit`: the carriers' limit for the
  sender's kind, ``SENDER_KIND_LIMITS``, within the deployment's ``MEDIA_MAX_BYTES``). When it does not, an
  item that cannot shrink and alone reaches the limit is refused by name; the resizable images (JPEG, PNG,
  GIF and WebP that are not animated) share what the others leave (:func:`budget`, largest first), and each
  one over its share is downscaled, keeping its aspect ratio, in its own format (:func:`downscale`), or a
  photo-like PNG as JPEG (:func:`reduce`, :func:`png_as_jpeg`). If that cannot work: ``MEDIA_TOO_LARGE``,
  naming the limit and the sender's kind.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.rules.errors import ErrorCode
from shared.rules.frozen import frozen

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

OCTET_STREAM = "application/octet-stream"

# Canonical content type -> what we call it in messages and docs.
ALLOWED: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "image/bmp": "BMP",
    "video/mp4": "MP4",
    "video/3gpp": "3GPP",
    "audio/mpeg": "MP3",
    "audio/amr": "AMR",
    "text/vcard": "vCard",
    "text/calendar": "iCalendar",
    "application/pdf": "PDF",
    "text/plain": "plain text",
}

# Accepted but never sent as they are: each becomes the type it maps to (convert()). HEIC/HEIF is what an
# iPhone camera writes, and most Android handsets and carriers' MMS relays cannot show it.
CONVERTIBLE: dict[str, str] = {"image/heic": "image/jpeg", "image/heif": "image/jpeg"}
CONVERTIBLE_NAMES: dict[str, str] = {"image/heic": "HEIC", "image/heif": "HEIF"}

# Other spellings of allowed types, as servers and clients send them.
ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-bmp": "image/bmp",
    "image/x-ms-bmp": "image/bmp",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/x-mpeg-3": "audio/mpeg",
    "audio/3gpp": "video/3gpp",
    "text/x-vcard": "text/vcard",
    "text/directory": "text/vcard",
    "text/x-vcalendar": "text/calendar",
    "application/x-pdf": "application/pdf",
}

# A declared type also accepts these sniffed types (same kind of file, looser label).
COMPATIBLE: dict[str, frozenset[str]] = {
    "text/plain": frozenset({"text/vcard", "text/calendar"}),
    "video/mp4": frozenset({"video/3gpp"}),
    "video/3gpp": frozenset({"video/mp4"}),
    # a HEIF still is HEIC when its codec is HEVC; servers label it either way
    "image/heif": frozenset({"image/heic"}),
    "image/heic": frozenset({"image/heif"}),
}

# Declared types that say nothing: only a fetched URL may use them (its server's default).
GENERIC: frozenset[str] = frozenset({"", OCTET_STREAM, "binary/octet-stream"})

# Images Pillow can downscale and re-encode in their own format; the value is Pillow's format name.
RESIZABLE: dict[str, str] = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}

SNIFF_BYTES = 64  # enough for every magic number of sniff() (the PDF marker may sit further in; see there)
MAX_SOURCE_BYTES = 8 * 1024 * 1024  # largest resizable image read at all (a phone photo is 2-6 MB)
MAX_PIXELS = 40_000_000  # largest image decoded for downscaling (~120 MB as RGB)
# Largest HEIC/HEIF decoded: libheif holds its own copy while Pillow gets one, so a 12 MP iPhone photo peaks at
# ~150 MB in all and a 48 MP one at ~400 MB (measured with pillow-heif 1.9), too close to a 512 MiB function.
# 25 MP holds the 24 MP photos of current iPhones; a 48 MP one is also over MAX_SOURCE_BYTES as a file.
MAX_CONVERT_PIXELS = 25_000_000
MIN_SIDE = 16  # a downscaled image narrower or lower than this is no longer worth sending
MIN_SHARE = 4096  # bytes: a resizable image given less than this cannot become a useful picture


class MediaError(Exception):
    """A media rule failed. ``code`` is one of the MEDIA_* codes; ``message`` is safe to show."""

    def __init__(self, code: ErrorCode, message: str, *, url: str | None = None, reason: str | None = None,
                 redirected_to: str | None = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        # MEDIA_URL_REJECTED: the URL asked for, the check's reason, and the redirect target it was about (if
        # any), so the request can say at which position of the request the URL is (shared.rules.ssrf).
        self.url, self.reason, self.redirected_to = url, reason, redirected_to


def unsupported(message: str) -> MediaError:
    return MediaError(ErrorCode.MEDIA_TYPE_UNSUPPORTED, message)


def too_large(message: str) -> MediaError:
    return MediaError(ErrorCode.MEDIA_TOO_LARGE, message)


# ------------------------------------------------------------------------------------------- types


def normalize(content_type: str | None) -> str:
    """Lower-case, without parameters, aliases resolved: ``"Image/JPG; q=1"`` -> ``"image/jpeg"``."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


_MP4_BRANDS = (b"iso", b"mp4", b"avc", b"dash", b"M4V", b"mmp4", b"MSNV", b"f4v", b"NDSC", b"NDAS")
# HEIF brands (ISO/IEC 23008-12): HEVC-coded still images (what iPhones take), image sequences (bursts), AVIF
# (AV1-coded), and the structural brands that say only "an image file" (their compatible brands tell the codec).
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis"})
_HEIC_SEQUENCE_BRANDS = frozenset({b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = _HEIC_BRANDS | _HEIC_SEQUENCE_BRANDS | _AVIF_BRANDS | {b"mif1", b"msf1"}
_TEXT_FORBIDDEN = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")  # C0 controls but \t \n \v \f \r


def _iso_media(data: bytes) -> str:
    """An ISO base media file (``ftyp`` box): MP4, 3GPP, or something we do not send."""
    box_size = int.from_bytes(data[:4], "big")
    brands = [data[8:12]] + [data[i:i + 4] for i in range(16, min(box_size, len(data), 64) - 3, 4)]
    major = brands[0]
    if major.startswith(b"3gp"):
        return "video/3gpp"
    if major.startswith(b"3g2"):
        return "video/3gpp2"
    if major == b"qt  ":
        return "video/quicktime"
    if major in (b"M4A ", b"M4B ", b"M4P "):
        return "audio/mp4"
    if major in _HEIF_BRANDS:
        return _heif(major, set(brands[1:]))
    if any(b.startswith(_MP4_BRANDS) for b in brands):
        return "video/mp4"
    if any(b.startswith(b"3gp") for b in brands):
        return "video/3gpp"
    return "video/iso-media"


def _heif(major: bytes, compatible: set[bytes]) -> str:
    """Which HEIF file: a HEIC still (converted to JPEG), a generic HEIF still (converted if it decodes), or a
    sequence or AVIF, which we do not send."""
    if major in _HEIC_BRANDS:
        return "image/heic"
    if major in _HEIC_SEQUENCE_BRANDS or major == b"msf1":
        return "image/avif-sequence" if b"avis" in compatible else "image/heic-sequence"
    if major in _AVIF_BRANDS or b"avif" in compatible:
        return "image/avif" if major != b"avis" else "image/avif-sequence"
    return "image/heic" if compatible & _HEIC_BRANDS else "image/heif"


def _is_bmp(data: bytes) -> bool:
    # "BM" alone is two letters of text; the DIB header size that follows the file header is not.
    return (len(data) >= 18 and data[:2] == b"BM"
            and int.from_bytes(data[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124))


def _is_mpeg_audio(data: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, then a valid version, layer, bitrate and sample rate."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version, layer = (data[1] >> 3) & 3, (data[1] >> 1) & 3
    bitrate, rate = data[2] >> 4, (data[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3


def _text(data: bytes) -> str | None:
    """The text, if ``data`` is UTF-8 (a BOM allowed) with no control characters but whitespace."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if _TEXT_FORBIDDEN.search(data):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def sniff(data: bytes) -> str:
    """What the bytes are, by their magic numbers: a canonical type (allowed or not, e.g.
    ``image/tiff``, ``text/html``), or ``application/octet-stream`` when nothing is recognised."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and len(data) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(data[8:12], OCTET_STREAM)
    if _is_bmp(data):
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _iso_media(data)
    if data.startswith(b"#!AMR\n"):
        return "audio/amr"
    if data.startswith(b"#!AMR-WB\n"):
        return "audio/amr-wb"
    if data.startswith(b"ID3") or _is_mpeg_audio(data):
        return "audio/mpeg"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "application/zip"
    if data.lstrip(b" \t\r\n").startswith(b"%PDF-"):
        return "application/pdf"
    text = _text(data)
    if text is None:
        return OCTET_STREAM
    head = text[:1024].lstrip().lower()
    if head.startswith("begin:vcard"):
        return "text/vcard"
    if head.startswith("begin:vcalendar"):
        return "text/calendar"
    if head.startswith(("<!doctype html", "<html", "<head", "<body", "<script", "<iframe")):
        return "text/html"
    if head.startswith("<svg") or (head.startswith("<?xml") and "<svg" in head):
        return "image/svg+xml"
    if head.startswith("<?xml"):
        return "application/xml"
    return "text/plain"


def check_type(declared: str | None, data: bytes, *, label: str, generic_ok: bool) -> str:
    """The content type to store ``data`` under, or ``MEDIA_TYPE_UNSUPPORTED``.

    ``generic_ok``: ``declared`` may be missing or ``application/octet-stream`` (a fetched URL), and the
    sniffed type is used. The stored type is the declared one, canonical, when the two agree."""
    if not data:
        raise unsupported(f"{label} is empty")
    actual = sniff(data)
    wanted = normalize(declared)
    if wanted in GENERIC:
        if not generic_ok:
            raise unsupported(f"{label} must declare its content type")
        if actual not in ALLOWED and actual not in CONVERTIBLE:
            raise unsupported(f"{label} is {_describe(actual)}, which is not a supported type")
        return actual
    if wanted not in ALLOWED and wanted not in CONVERTIBLE:
        raise unsupported(f"{label} declares {wanted}, which is not a supported type")
    if actual != wanted and actual not in COMPATIBLE.get(wanted, ()):
        raise unsupported(f"{label} declares {wanted} but its content is {_describe(actual)}")
    return wanted


def _describe(content_type: str) -> str:
    return "unrecognised binary data" if content_type == OCTET_STREAM else content_type


def source_cap(head: bytes, limit: int) -> int:
    """How many bytes of a fetched item to read at most, once its first bytes are known: a resizable
    image may be larger than the message limit (it can be downscaled); anything else may not."""
    kind = sniff(head)
    return MAX_SOURCE_BYTES if kind in RESIZABLE or kind in CONVERTIBLE else limit - 1


# ------------------------------------------------------------------------------------------ limits

KB = 1024
SENDER_KINDS = ("long_code", "toll_free", "short_code")
# The MMS size limit of each kind of sender: the smallest US carrier limit for that kind in Telnyx's carrier
# table (https://developers.telnyx.com/docs/messaging/messages/mms-transcoding/index, copied in docs/media.md):
# long code 1 MB (AT&T and Verizon; T-Mobile takes 1.5 MB), toll-free 600 KB (every carrier), short code
# 600 KB (AT&T; T-Mobile 1 MB, Verizon 1.2 MB). The recipient's carrier is not known when a message is
# accepted, so the smallest one is the one that always holds.
SENDER_KIND_LIMITS: dict[str, int] = {"long_code": 1024 * KB, "toll_free": 600 * KB, "short_code": 600 * KB}
NANP_TOLL_FREE_AREA_CODES = frozenset({"800", "833", "844", "855", "866", "877", "888"})


def sender_kind(number: str) -> str:
    """What a sender is taken to be when nobody said: a NANP toll-free number (+1 800, 833, 844, 855, 866, 877,
    888) is ``toll_free``, a bare 5- or 6-digit number a ``short_code``, anything else a ``long_code``."""
    digits = number[1:] if number.startswith("+") else number
    if not number.startswith("+") and digits.isdigit() and 5 <= len(digits) <= 6:
        return "short_code"
    if number.startswith("+1") and len(digits) == 11 and digits[1:4] in NANP_TOLL_FREE_AREA_CODES:
        return "toll_free"
    return "long_code"


def _human(size: int) -> str:
    if size % (KB * KB) == 0:
        return f"{size // (KB * KB)} MB"
    if size % KB == 0:
        return f"{size // KB} KB"
    return f"{size} bytes"


@frozen
class MediaLimit:
    """What a message's media total must stay below (exclusive, as Telnyx's "less than 1 MB"), and why: the
    sender's kind, or ``None`` for the deployment's own ``MEDIA_MAX_BYTES`` (inbound copies)."""

    max_bytes: int
    kind: str | None = None

    @classmethod
    def for_sender(cls, kind: str, deployment_max: int) -> MediaLimit:
        """The kind's carrier limit, never above the deployment's ``MEDIA_MAX_BYTES`` (an operator may lower it)."""
        return cls(min(deployment_max, SENDER_KIND_LIMITS.get(kind, deployment_max)), kind)

    def describe(self) -> str:
        """How error messages name the limit: ``the media of a message from a toll-free sender must total less
        than 614400 bytes (600 KB)``."""
        sender = f" from a {self.kind.replace('_', '-')} sender" if self.kind else ""
        return f"the media of a message{sender} must total less than {self.max_bytes} bytes ({_human(self.max_bytes)})"


# ------------------------------------------------------------------------------------------ budget


def budget(sizes: Sequence[int], resizable: Sequence[bool], limit: int, kind: str | None = None
           ) -> list[int | None]:
    """The byte share of each item so that the total stays below ``limit``: ``None`` keeps an item as
    it is, a number is what a resizable item must shrink to. Raises ``MEDIA_TOO_LARGE`` (its message names
    the limit and ``kind``, the sender's kind).

    Water-filling: the fixed items (not resizable) are kept; the room they leave is shared so that small
    images stay untouched and the largest ones come down to one common cap."""
    total = sum(sizes)
    if total < limit:
        return [None] * len(sizes)
    fixed = sum(s for s, r in zip(sizes, resizable, strict=True) if not r)
    room = limit - 1 - fixed
    order = sorted((s, i) for i, (s, r) in enumerate(zip(sizes, resizable, strict=True)) if r)
    if not order:
        raise too_large(f"the media total {total} bytes and none of it is an image that can be downscaled: "
                        f"{MediaLimit(limit, kind).describe()}")
    if room < MIN_SHARE * len(order):
        raise too_large(f"the attachments that cannot be downscaled total {fixed} bytes, which leaves no "
                        f"room for the images: {MediaLimit(limit, kind).describe()}")
    shares: list[int | None] = [None] * len(sizes)
    for k, (size, _) in enumerate(order):
        left = len(order) - k
        if size * left <= room:
            room -= size  # fits as it is, with an equal share left for every larger one
            continue
        cap = room // left
        for _, j in order[k:]:
            shares[j] = cap
        break
    return shares


# ---------------------------------------------------------------------------------------- downscale


def is_animated(content_type: str, data: bytes) -> bool:
    """An animated GIF, WebP or PNG (APNG): more than one frame. Never downscaled (it would lose frames)."""
    if content_type not in ("image/gif", "image/webp", "image/png"):
        return False
    from PIL import Image  # noqa: PLC0415 - only when a message is over the limit

    try:
        with Image.open(io.BytesIO(data)) as im:
            return bool(getattr(im, "is_animated", False))
    except Exception:  # noqa: BLE001 - undecodable: downscale() reports it
        return False


def _orientation_swaps(im: PilImage) -> bool:
    try:
        return im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, as viewers do
        return False


def _encode(im: PilImage, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        im.save(out, "JPEG", quality=85, optimize=True)
    elif fmt == "PNG":
        im.save(out, "PNG", optimize=True)
    elif fmt == "GIF":
        im.save(out, "GIF", optimize=True)
    else:
        im.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()


def _open(data: bytes, fmt: str, what: str, label: str, max_pixels: int = MAX_PIXELS) -> PilImage:
    """The image, decoded lazily, checked to be ``fmt`` (Pillow's format name) and not over ``max_pixels``."""
    from PIL import Image  # noqa: PLC0415 - only when an image is re-encoded

    im: Image.Image = Image.open(io.BytesIO(data))
    if im.format != fmt:
        raise unsupported(f"{label} does not decode as {what}")
    width, height = im.size
    if width * height > max_pixels:
        raise too_large(f"{label} has {width}x{height} pixels; at most {max_pixels} can be re-encoded")
    return im


def _upright(im: PilImage, fmt: str) -> PilImage:
    """Rotated by its EXIF orientation (the metadata is not written again, GPS included), in a mode ``fmt``
    can encode, and decoded."""
    from PIL import ImageOps  # noqa: PLC0415 - only when an image is re-encoded

    im = ImageOps.exif_transpose(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    if fmt == "JPEG":
        im = im.convert("RGB") if im.mode not in ("RGB", "L") else im
    elif im.mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGBA" if has_alpha else "RGB")
    im.load()
    return im


def _shrink(im: PilImage, fmt: str, target: int, scale: float, base: tuple[int, int] | None = None
            ) -> tuple[bytes, float] | None:
    """The largest encoding of ``im`` (upright, decoded) in ``fmt`` that is at most ``target`` bytes, and its
    scale, searched from ``scale``; ``None`` if even ``MIN_SIDE`` pixels do not fit. Scales are of ``base``
    (the original's upright size; ``im`` may be a reduced draft decode of it), at most 1."""
    from PIL import Image  # noqa: PLC0415 - only when an image is re-encoded

    width, height = base or im.size

    def dimensions(s: float) -> tuple[int, int]:
        return max(1, round(width * s)), max(1, round(height * s))

    # Encoded size grows roughly with the pixel count: guess the scale from the last try, within the
    # bracket [largest that fitted, smallest that did not]; stop once within 15 % under the target.
    best, fits, fails = None, 0.0, math.inf
    for _ in range(10):
        size = dimensions(scale)
        if min(size) < MIN_SIDE <= min(width, height):
            break
        out = _encode(im.resize(size, Image.Resampling.LANCZOS) if size != im.size else im, fmt)
        if len(out) <= target:
            best, fits = out, scale
            if len(out) >= 0.85 * target or scale >= 1.0:
                break
        else:
            fails = scale
        guess = min(1.0, scale * math.sqrt(target / len(out)) * 0.97)
        if not fits < guess < fails:
            guess = (fits + fails) / 2 if fails < math.inf else 1.0
        if dimensions(guess) == size:
            break
        scale = guess
    return None if best is None else (best, fits)


def downscale(data: bytes, content_type: str, target: int, *, label: str = "an image") -> bytes:
    """Re-encode the image at the largest size (same format, same aspect ratio, EXIF orientation applied)
    whose encoding is at most ``target`` bytes. Raises ``MEDIA_TOO_LARGE`` or, for bytes that do not
    decode as the image they claim to be, ``MEDIA_TYPE_UNSUPPORTED``."""
    fmt = RESIZABLE[content_type]
    try:
        im = _open(data, fmt, ALLOWED[content_type], label)
        width, height = im.size
        if _orientation_swaps(im):
            width, height = height, width
        scale = min(1.0, math.sqrt(target / len(data)) * 0.95)
        if fmt == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 size when that is still larger than we need: far less memory.
            im.draft("RGB", (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))))
        im = _upright(im, fmt)
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files
        raise unsupported(f"{label} does not decode as {ALLOWED[content_type]} ({type(exc).__name__})") from None
    found = _shrink(im, fmt, target, scale, (width, height))
    if found is None:
        raise too_large(f"{label} cannot be downscaled to {target} bytes")
    return found[0]


# A PNG over its share stays a PNG (lossless: text, drawings and screenshots stay sharp) unless it is photo-like
# and would have to lose much of its size: a camera picture or a rendering saved as PNG is several times smaller
# as JPEG, so as JPEG it fits at (or near) full size instead of being shrunk to a thumbnail.
PNG_KEEP_SCALE = 0.8  # a PNG that fits at this fraction of its width (or more) stays a PNG
PHOTO_RATIO = 0.5  # photo-like: its JPEG at full size is at most this fraction of the PNG's bytes


def png_as_jpeg(png_size: int, target: int, opaque: bool, jpeg_size: int | None) -> bool:
    """Whether a PNG of ``png_size`` bytes that must come down to ``target`` is sent as JPEG: it must lose more
    than ``PNG_KEEP_SCALE`` of its width as a PNG (the size of an encoding goes with the pixel count), have no
    transparency (JPEG has none), and be photo-like (``jpeg_size``, its JPEG at full size, ``None`` when not
    encoded yet, is at most ``PHOTO_RATIO`` of the PNG)."""
    if png_size <= target or math.sqrt(target / png_size) >= PNG_KEEP_SCALE or not opaque:
        return False
    return jpeg_size is not None and jpeg_size <= PHOTO_RATIO * png_size


def _opaque(im: PilImage) -> bool:
    """No pixel is even partly transparent: as JPEG, which has no alpha, the picture looks the same."""
    if im.mode in ("RGBA", "LA"):
        low, _ = im.getchannel("A").getextrema()
        return bool(low == 255)
    return "transparency" not in im.info and im.mode != "PA"


def reduce(data: bytes, content_type: str, target: int, *, label: str = "an image") -> tuple[str, bytes]:
    """The image brought to at most ``target`` bytes: ``(content type, bytes)``. Downscaled in its own format
    (``downscale``), except a PNG that ``png_as_jpeg`` sends as JPEG (then the largest JPEG that fits).
    Raises as ``downscale``."""
    # the cheap test first: most PNGs that must shrink only a little never get decoded twice
    if content_type == "image/png" and len(data) > target and math.sqrt(target / len(data)) < PNG_KEEP_SCALE:
        try:
            im = _upright(_open(data, "PNG", "PNG", label), "PNG")
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files
            raise unsupported(f"{label} does not decode as PNG ({type(exc).__name__})") from None
        opaque = _opaque(im)
        full = _encode(im.convert("RGB"), "JPEG") if opaque else None
        if png_as_jpeg(len(data), target, opaque, None if full is None else len(full)):
            if full is not None and len(full) <= target:
                return "image/jpeg", full
            found = _shrink(im.convert("RGB"), "JPEG", target, math.sqrt(target / len(full or data)) * 0.95)
            if found is not None:
                return "image/jpeg", found[0]
    return content_type, downscale(data, content_type, target, label=label)


# ------------------------------------------------------------------------------------------ convert


@functools.cache
def _heif_opener() -> None:
    # pillow-heif (libheif) is loaded here only: a function that never converts a HEIC never imports it.
    from pillow_heif import register_heif_opener  # noqa: PLC0415

    register_heif_opener()


def convert(data: bytes, content_type: str, *, label: str = "an image") -> tuple[str, bytes]:
    """A ``CONVERTIBLE`` image re-encoded as what it becomes (HEIC/HEIF -> JPEG), at full size, upright, without
    its metadata (GPS included): ``(content type, bytes)``. ``fit`` brings it under the limit afterwards.
    Raises ``MEDIA_TYPE_UNSUPPORTED`` when it does not decode, ``MEDIA_TOO_LARGE`` over ``MAX_CONVERT_PIXELS``."""
    target = CONVERTIBLE[content_type]
    fmt = RESIZABLE[target]
    name = CONVERTIBLE_NAMES[content_type]
    _heif_opener()
    try:
        im = _upright(_open(data, "HEIF", name, label, MAX_CONVERT_PIXELS), fmt)
        return target, _encode(im, fmt)
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - libheif raises for broken or unsupported (e.g. 10-bit AV1) files
        raise unsupported(f"{label} does not decode as {name} ({type(exc).__name__})") from None


@frozen
class Upload:
    """A base64 attachment of the request (``media: [{content_type, blob, filename?}]``), decoded."""

    content_type: str
    data: bytes
    filename: str | None = None


@frozen
class Item:
    """One attachment of a message, checked: its bytes and the type they are stored under."""

    content_type: str
    data: bytes
    label: str
    filename: str | None = None
    original_size: int | None = None  # set when re-encoded (converted or downscaled)
    original_content_type: str | None = None  # set when re-encoded
    original: bytes | None = None  # the bytes as given, when re-encoded: kept in Cloud Storage too
    downscaled: bool = False


def prepared(item: Item) -> Item:
    """``item`` as it can be sent: a ``CONVERTIBLE`` one converted (its original kept on the item)."""
    if item.content_type not in CONVERTIBLE:
        return item
    content_type, data = convert(item.data, item.content_type, label=item.label)
    return Item(content_type, data, item.label, item.filename, original_size=len(item.data),
                original_content_type=item.content_type, original=item.data)


def fit(items: Sequence[Item], limit: int, kind: str | None = None) -> list[Item]:
    """The items, converted (``prepared``) and with resizable images reduced if needed so the total is below
    ``limit`` (``kind``: the sender's kind, named in errors). An item that cannot shrink and alone reaches the
    limit (a video, an animated GIF) is refused by name: ``MEDIA_TOO_LARGE``."""
    items = [prepared(item) for item in items]
    sizes = [len(item.data) for item in items]
    if sum(sizes) < limit:
        return list(items)
    resizable = []
    for item in items:
        animated = is_animated(item.content_type, item.data)
        can_shrink = item.content_type in RESIZABLE and not animated
        if not can_shrink and len(item.data) >= limit:
            name = ("animated " if animated else "") + ALLOWED.get(item.content_type, item.content_type)
            raise too_large(f"{item.label} ({name}, {len(item.data)} bytes) cannot be downscaled: "
                            f"{MediaLimit(limit, kind).describe()}")
        resizable.append(can_shrink)
    shares = budget(sizes, resizable, limit, kind)
    out = []
    for item, share in zip(items, shares, strict=True):
        if share is None:
            out.append(item)
            continue
        content_type, data = reduce(item.data, item.content_type, share, label=item.label)
        out.append(Item(content_type, data, item.label, item.filename,
                        original_size=item.original_size or len(item.data),
                        original_content_type=item.original_content_type or item.content_type,
                        original=item.original or item.data, downscaled=True))
    return out
