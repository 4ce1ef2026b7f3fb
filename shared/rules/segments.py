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

Smart encoding
    :func:`smart_encode` replaces Unicode look-alikes (curly quotes, long dashes, Unicode spaces, the ellipsis,
    fullwidth forms ...) with their GSM-7 equivalents, as Twilio's and Telnyx's Smart Encoding do, and keeps
    the result only when it is all GSM-7 and no more segments than the text as written: a text that keeps an
    emoji stays UCS-2 and unchanged (replacing its quotes would save nothing), and a text of ellipses that
    would grow past a segment boundary is not made dearer. :func:`encode` adds the ``encoding: "gsm7"``
    demand: a text that is not GSM-7 even after the optional replacement raises :class:`NotGsm7` naming the
    first character at fault.
"""

from __future__ import annotations

from shared.rules.frozen import frozen

__all__ = [
    "GSM7",
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "MMS_SEGMENTS",
    "SMART_ENCODING",
    "UCS2",
    "Encoded",
    "NotGsm7",
    "TooLong",
    "count_segments",
    "encode",
    "first_non_gsm7",
    "is_gsm7",
    "smart_encode",
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


# Smart Encoding's replacements: Twilio's documented list, https://www.twilio.com/docs/messaging/services/
# smart-encoding-char-list (the same table as Twilio's own segment calculator, github.com/TwilioDevEd/
# message-segment-calculator, src/libs/SmartEncodingMap.ts), grouped by what each becomes. Where that table
# has an evident slip it is not followed: the single angle quotes keep their direction (‹ -> "<", ›
# -> ">"), every Unicode space becomes one space (the calculator writes some as two), a tab one space (not
# seven), and the C0/C1 control characters it deletes are left alone (a control character in a body is
# the sender's to fix, not ours to drop silently).
_LOOK_ALIKES: dict[str, str] = {
    '"': "\u00ab\u00bb\u201c\u201d\u02ba\u02ee\u201f\u275d\u275e\u301d\u301e\uff02\u201e",
    "'": "\u2018\u2019\u02bb\u02c8\u02bc\u02bd\u02b9\u201b\uff07\u00b4\u02ca\u0060\u02cb\u275b\u275c"
         "\u0313\u0314\ufe10\ufe11\u2017",
    "/": "\u00f7\u29f8\u0337\u0338\u2044\u2215\uff0f",
    "\\": "\u29f9\u29f5\u20e5\ufe68\uff3c",
    "_": "\u0332\uff3f",
    "|": "\u20d2\u20d3\u2223\uff5c\u23b8\u23b9\u23d0\u239c\u239f",
    "-": "\u23bc\u23bd\u2015\ufe63\uff0d\u2010\u2043\u2013\u2014\u2022",
    "@": "\ufe6b\uff20",
    "$": "\ufe69\uff04",
    "!": "\u01c3\ufe15\ufe57\uff01",
    "#": "\ufe5f\uff03",
    "%": "\ufe6a\uff05",
    "&": "\ufe60\uff06",
    ",": "\u201a\u0326\ufe50\ufe51\uff0c\uff64\u3001",
    "(": "\u2768\u276a\ufe59\uff08\u27ee\u2985",
    ")": "\u2769\u276b\ufe5a\uff09\u27ef\u2986",
    "*": "\u204e\u2217\u229b\u2722\u2723\u2724\u2725\u2731\u2732\u2733\u273a\u273b\u273c\u273d\u2743"
         "\u2749\u274a\u274b\u29c6\ufe61\uff0a",
    "+": "\u02d6\ufe62\uff0b",
    ".": "\u3002\ufe52\uff0e\uff61",
    ":": "\u02d0\u02f8\u2982\ua789\ufe13\uff1a",
    ";": "\u204f\ufe14\ufe54\uff1b",
    "<": "\ufe64\uff1c\u2039",
    "=": "\u0347\ua78a\ufe66\uff1d",
    ">": "\ufe65\uff1e\u203a",
    "?": "\ufe16\ufe56\uff1f",
    "^": "\u02c6\u0302\uff3e\u1dcd",
    "{": "\u2774\ufe5b\uff5b",
    "}": "\u2775\ufe5c\uff5d",
    "[": "\uff3b",
    "]": "\uff3d",
    "~": "\u02dc\u02f7\u0303\u0330\u0334\u223c\uff5e",
    " ": "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
         "\u2028\u2029\t",
    "": "\u200b\u2060\ufeff",  # zero-width: nothing to see, nothing to send
    "1/4": "\u00bc",
    "1/2": "\u00bd",
    "3/4": "\u00be",
    "!!": "\u203c",
    "...": "\u2026",
}
# Fullwidth digits and capitals, and the small-capital letters, become their ASCII letter or digit.
_LETTERS = {
    **{chr(0xFF10 + i): str(i) for i in range(10)},
    **{chr(0xFF21 + i): chr(ord("A") + i) for i in range(26)},
    **dict(zip("\u1d00\u0299\u1d04\u1d05\u1d07\ua730\u0262\u029c\u026a\u1d0a\u1d0b\u029f\u1d0d\u0274\u1d0f"
               "\u1d18\u0280\ua731\u1d1b\u1d1c\u1d20\u1d21\u028f\u1d22", "ABCDEFGHIJKLMNOPRSTUVWYZ", strict=True)),
}
SMART_ENCODING: dict[str, str] = {
    **{char: target for target, chars in _LOOK_ALIKES.items() for char in chars}, **_LETTERS}
_SMART_TABLE = str.maketrans(SMART_ENCODING)


def first_non_gsm7(text: str, *, smart: bool = False) -> tuple[int, str] | None:
    """The first character of ``text`` outside the GSM-7 alphabet and its position (0-based, in characters of
    ``text``), or None when ``text`` is all GSM-7. With ``smart``, a character smart encoding replaces is not
    at fault (every replacement is GSM-7)."""
    for position, char in enumerate(text):
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION and not (smart and char in SMART_ENCODING):
            return position, char
    return None


def smart_encode(text: str, max_length: int | None = None) -> tuple[str, int]:
    """``(text, segments_saved)``: the text with its look-alikes replaced when that makes it GSM-7 without
    costing more segments (see the module docstring) nor growing past ``max_length`` characters (an ellipsis
    becomes three), else ``(text, 0)`` unchanged."""
    replaced = text.translate(_SMART_TABLE)
    if replaced == text or not is_gsm7(replaced) or (max_length is not None and len(replaced) > max_length):
        return text, 0
    before, after = count_segments(text)[1], count_segments(replaced)[1]
    if after > before:
        return text, 0
    return replaced, before - after


@frozen
class Encoded:
    """An SMS text as it will be sent: the text (smart-encoded when asked and worth it), its encoding and
    segments, and the segments smart encoding saved."""

    text: str
    encoding: str
    segments: int
    segments_saved: int = 0


class TooLong(ValueError):
    """``encoding: "gsm7"`` on a text that is GSM-7 only once replaced, and then longer than allowed."""

    def __init__(self, length: int, max_length: int) -> None:
        self.length, self.max_length = length, max_length
        super().__init__(f"is {length} characters once smart encoding replaced its look-alikes; at most "
                         f"{max_length}")


class NotGsm7(ValueError):
    """``encoding: "gsm7"`` on a text that is not GSM-7: ``character`` at ``position`` (0-based) is the first
    one outside the alphabet."""

    def __init__(self, position: int, character: str) -> None:
        self.position, self.character = position, character
        super().__init__(f"{character!r} (U+{ord(character):04X}) at position {position} is not in the GSM-7 "
                         "alphabet")


def encode(text: str, *, smart: bool = False, gsm7_only: bool = False, max_length: int | None = None) -> Encoded:
    """The text as sent, under the request's ``smart_encoding`` (``smart``) and ``encoding: "gsm7"``
    (``gsm7_only``). With both, a text whose replacement is all GSM-7 is sent replaced even when that costs
    a segment more than the UCS-2 original: GSM-7 is what the request demands, and if the replaced text is then
    longer than ``max_length``, :class:`TooLong` is raised."""
    sent, saved = smart_encode(text, max_length) if smart else (text, 0)
    if gsm7_only and not is_gsm7(sent):
        found = first_non_gsm7(text, smart=smart)
        if found is not None:
            raise NotGsm7(*found)
        sent, saved = text.translate(_SMART_TABLE), 0
        if max_length is not None and len(sent) > max_length:
            raise TooLong(len(sent), max_length)
    encoding, segments = count_segments(sent)
    return Encoded(sent, encoding, segments, saved)
