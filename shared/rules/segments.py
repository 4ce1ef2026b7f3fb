"""SMS segment counting (GSM 03.38 / 3GPP TS 23.038), used for the ``segments`` field.

Encoding
    Text made only of characters from the GSM-7 default alphabet and its extension table is
    ``"GSM-7"``. A basic character costs one septet; an extension character (``^ { } \\ [ ~ ] | €``
    and form feed) costs two (escape + character). Any other character (including the bare ESC
    control, 0x1B, which is not a printable character) makes the whole message ``"UCS-2"``, where each
    UTF-16 code unit costs one unit, so a character outside the Basic Multilingual Plane (most emoji)
    costs two.

Segments
    GSM-7: up to 160 septets fit in one segment; longer text is split into parts of at most 153
    septets (7 octets go to the concatenation header). UCS-2: 70 units single, 67 per part. As real
    SMS encoders do, an escape sequence or a surrogate pair is never split across two parts, so a part
    may hold one unit less than the maximum; parts are packed greedily, which makes the count
    non-decreasing as text grows. Empty text is ``("GSM-7", 0)``; any non-empty text is at least one
    segment.

An MMS is always one message, whatever its body: :data:`MMS_SEGMENTS`.
"""

from __future__ import annotations

__all__ = [
    "GSM7",
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "MMS_SEGMENTS",
    "UCS2",
    "count_segments",
    "is_gsm7",
]

GSM7 = "GSM-7"
UCS2 = "UCS-2"

MMS_SEGMENTS = 1

# The GSM 03.38 default alphabet, in code order (0x00..0x7F), without 0x1B (escape to the extension).
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ"
    "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# The extension table: each costs two septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE, _GSM7_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67


def is_gsm7(text: str) -> bool:
    """True if every character of ``text`` can be sent in the GSM-7 alphabet (basic or extension)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _pack(costs: list[int], single: int, part: int) -> int:
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts += 1
            used = 0
        used += cost
    return parts


def count_segments(text: str) -> tuple[str, int]:
    """Return ``(encoding, segments)`` for an SMS body: ``("GSM-7" | "UCS-2", n)``."""
    if not isinstance(text, str):
        raise TypeError("text must be a string")
    if is_gsm7(text):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return GSM7, _pack(costs, _GSM7_SINGLE, _GSM7_PART)
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return UCS2, _pack(costs, _UCS2_SINGLE, _UCS2_PART)
