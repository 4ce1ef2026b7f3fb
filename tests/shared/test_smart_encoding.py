"""Smart encoding and the ``encoding: "gsm7"`` demand (shared/rules/segments.py): the replacement map, what it
saves, and the first character a GSM-7-only text is refused for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.rules.segments import (
    SMART_ENCODING,
    NotGsm7,
    TooLong,
    count_segments,
    encode,
    first_non_gsm7,
    smart_encode,
)

# Written out from Twilio's list (https://www.twilio.com/docs/messaging/services/smart-encoding-char-list) and
# the look-alikes the issue names, independently of the module's table: each must be replaced as shown.
DOCUMENTED = {
    "\u201c": '"', "\u201d": '"', "\u00ab": '"', "\u00bb": '"', "\uff02": '"',
    "\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u00b4": "'", "`": "'",
    "\u2013": "-", "\u2014": "-", "\u2010": "-", "\uff0d": "-",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u202f": " ", "\u3000": " ",
    "\u2026": "...", "\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u00f7": "/", "\u2044": "/",
    "\uff3c": "\\", "\uff5b": "{", "\uff5d": "}", "\u02dc": "~", "\uff5c": "|",
    "\uff21": "A", "\uff3a": "Z", "\uff10": "0", "\uff19": "9", "\u1d00": "A",
    "\u200b": "", "\ufeff": "",
}


def _gsm7(text: str) -> bool:
    return count_segments(text)[0] == "GSM-7"


@pytest.mark.parametrize(("char", "expected"), sorted(DOCUMENTED.items()))
def test_the_documented_look_alikes_are_replaced(char, expected):
    assert SMART_ENCODING[char] == expected
    assert smart_encode(f"a{char}b") == (f"a{expected}b", 0)


@pytest.mark.parametrize("char", sorted(SMART_ENCODING))
def test_every_replacement_is_gsm7_and_replaces_a_non_gsm7_character(char):
    assert not _gsm7(char), f"U+{ord(char):04X} is GSM-7 already"
    assert _gsm7(SMART_ENCODING[char])
    assert len(SMART_ENCODING[char]) <= 3


def test_a_body_only_smart_encoding_makes_gsm7_saves_segments():
    body = "Your order \u201cA-12\u201d ships today \u2014 we\u2019ll text you when it\u2019s out\u2026 " + "x" * 60
    assert count_segments(body) == ("UCS-2", 2)
    text, saved = smart_encode(body)
    assert text.startswith('Your order "A-12" ships today - we\'ll text you when it\'s out... ')
    assert count_segments(text) == ("GSM-7", 1)
    assert saved == 1
    sent = encode(body, smart=True)
    assert (sent.text, sent.encoding, sent.segments, sent.segments_saved) == (text, "GSM-7", 1, 1)


def test_without_smart_encoding_the_body_is_untouched():
    body = "It\u2019s here"
    sent = encode(body)
    assert (sent.text, sent.encoding, sent.segments, sent.segments_saved) == (body, "UCS-2", 1, 0)


def test_a_body_that_stays_ucs2_is_left_as_written():
    body = "It\u2019s here \U0001f600"  # the emoji keeps it UCS-2: replacing the quote would save nothing
    assert smart_encode(body) == (body, 0)


def test_replacement_that_would_cost_a_segment_more_is_not_made():
    body = "\u2026" * 70  # one UCS-2 segment; as "..." x 70 it would be 210 septets: two GSM-7 segments
    assert count_segments(body) == ("UCS-2", 1)
    assert smart_encode(body) == (body, 0)


_SOURCE = sorted(set("abc XYZ 019 .,!?\n@\u00e9{}[]") | set(SMART_ENCODING) | {"\U0001f600", "\u4e2d", "\u0416"})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(_SOURCE), max_size=400))
def test_smart_encoding_never_costs_segments(body):
    text, saved = smart_encode(body)
    before, after = count_segments(body)[1], count_segments(text)[1]
    assert after <= before
    assert saved == before - after
    assert text == body or _gsm7(text)


def test_first_non_gsm7_names_the_position_and_character():
    assert first_non_gsm7("plain GSM-7 text {with} \u20ac") is None
    assert first_non_gsm7("") is None
    assert first_non_gsm7("ab\u2019c\U0001f600") == (2, "\u2019")
    assert first_non_gsm7("ab\u2019c\U0001f600", smart=True) == (4, "\U0001f600")


def test_gsm7_only_refuses_the_first_character_that_cannot_be_sent():
    with pytest.raises(NotGsm7) as caught:
        encode("Hi \u2014 \u4e2d", gsm7_only=True)
    assert (caught.value.position, caught.value.character) == (3, "\u2014")
    with pytest.raises(NotGsm7) as caught:
        encode("Hi \u2014 \u4e2d", smart=True, gsm7_only=True)
    assert (caught.value.position, caught.value.character) == (5, "\u4e2d")
    assert "U+4E2D" in str(caught.value) and "position 5" in str(caught.value)


def test_gsm7_only_accepts_what_smart_encoding_makes_gsm7():
    sent = encode("Hi \u2014 there", smart=True, gsm7_only=True)
    assert (sent.text, sent.encoding, sent.segments) == ("Hi - there", "GSM-7", 1)
    assert encode("plain", gsm7_only=True).encoding == "GSM-7"


def test_gsm7_only_prefers_gsm7_even_at_a_segment_more():
    sent = encode("\u2026" * 70, smart=True, gsm7_only=True)
    assert (sent.text, sent.encoding, sent.segments, sent.segments_saved) == ("..." * 70, "GSM-7", 2, 0)


@pytest.mark.parametrize(("text", "expected"), [
    ("hello", ("GSM-7", 1)),
    ("{" * 80, ("GSM-7", 1)),  # the extension table costs two septets each: 160
    ("{" * 81, ("GSM-7", 2)),
    ("hi \U0001f600", ("UCS-2", 1)),  # one emoji makes the whole text UCS-2
    ("\U0001f600" * 35, ("UCS-2", 1)),  # a surrogate pair is two units: 70
    ("\U0001f600" * 36, ("UCS-2", 2)),
])
def test_the_encoding_table(text, expected):
    assert count_segments(text) == expected
    assert (encode(text).encoding, encode(text).segments) == expected


def test_replacement_never_grows_a_text_past_the_limit():
    body = "x" * 200 + "\u2026" * 20 + "\u2019"  # 221 characters, UCS-2 in 4 parts; replaced, 261 GSM-7 in 2
    assert count_segments(body) == ("UCS-2", 4)
    assert smart_encode(body, max_length=261) == ("x" * 200 + "..." * 20 + "'", 2)
    assert smart_encode(body, max_length=260) == (body, 0)
    with pytest.raises(TooLong) as caught:
        encode(body, smart=True, gsm7_only=True, max_length=260)
    assert (caught.value.length, caught.value.max_length) == (261, 260)
