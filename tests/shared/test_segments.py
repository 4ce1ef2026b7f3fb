"""Tests for shared.segments: GSM-7 / UCS-2 detection and segment counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.segments import GSM7_BASIC, GSM7_EXTENSION, MMS_SEGMENTS, count_segments, is_gsm7

BASIC = "".join(sorted(GSM7_BASIC))
EXTENSION = "".join(sorted(GSM7_EXTENSION))
GSM_ANY = BASIC + EXTENSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 0)),
        ("a", ("GSM-7", 1)),
        ("Check out our new store!", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("a" * 1600, ("GSM-7", 11)),
        ("€" * 80, ("GSM-7", 1)),  # 160 septets
        ("€" * 81, ("GSM-7", 2)),  # 162 septets
        ("a" * 159 + "{", ("GSM-7", 2)),  # 161 septets
        ("a" * 152 + "€" + "a" * 152, ("GSM-7", 3)),  # the escape pair is not split across parts
        ("\f", ("GSM-7", 1)),
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ ¡ÄÖÑÜ§¿äöñüà", ("GSM-7", 1)),
        ("ç", ("UCS-2", 1)),  # lower-case c cedilla is not in GSM-7 (only Ç is)
        ("Weekend sale — 20% off everything!", ("UCS-2", 1)),  # em dash
        ("\x1b", ("UCS-2", 1)),  # a bare escape is not text
        ("`", ("UCS-2", 1)),
        ("Привет", ("UCS-2", 1)),
        ("ç" * 70, ("UCS-2", 1)),
        ("ç" * 71, ("UCS-2", 2)),
        ("ç" * 134, ("UCS-2", 2)),
        ("ç" * 135, ("UCS-2", 3)),
        ("😀" * 35, ("UCS-2", 1)),  # 70 UTF-16 units
        ("😀" * 36, ("UCS-2", 2)),  # 72 units
        ("ç" + "😀" * 33, ("UCS-2", 1)),  # 67 units
        ("ç" * 66 + "😀" + "ç" * 4, ("UCS-2", 2)),  # pair not split: 66 | 2+4
        ("ç" * 66 + "😀" + "ç" * 66, ("UCS-2", 3)),  # 66 | 2+65 | 1
    ],
)
def test_examples(text: str, expected: tuple[str, int]) -> None:
    assert count_segments(text) == expected


def test_mms_is_one_segment() -> None:
    assert MMS_SEGMENTS == 1


def test_alphabet_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points less the escape
    assert set("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        count_segments(None)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=BASIC, min_size=1, max_size=1600))
def test_basic_gsm_text(text: str) -> None:
    n = len(text)
    expected = 1 if n <= 160 else math.ceil(n / 153)
    assert count_segments(text) == ("GSM-7", expected)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=GSM_ANY, min_size=1, max_size=1600))
def test_gsm_text_with_extension(text: str) -> None:
    septets = len(text) + sum(ch in GSM7_EXTENSION for ch in text)
    encoding, segments = count_segments(text)
    assert encoding == "GSM-7"
    if septets <= 160:
        assert segments == 1
    else:
        # Never fewer parts than the septets need, and at most one extra part per part for unsplit pairs.
        assert math.ceil(septets / 153) <= segments <= math.ceil(septets / 152)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=GSM_ANY, max_size=400),
    other=st.characters(exclude_characters=GSM_ANY, exclude_categories=("Cs",)),
    position=st.integers(0, 400),
)
def test_any_non_gsm_character_switches_to_ucs2(text: str, other: str, position: int) -> None:
    mixed = text[:position] + other + text[position:]
    assert not is_gsm7(mixed)
    encoding, segments = count_segments(mixed)
    assert encoding == "UCS-2"
    units = len(mixed.encode("utf-16-le")) // 2
    if units <= 70:
        assert segments == 1
    else:
        assert math.ceil(units / 67) <= segments <= math.ceil(units / 66)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), min_size=1, max_size=700
    )
)
def test_bmp_ucs2_text(text: str) -> None:
    if is_gsm7(text):
        return
    n = len(text)
    assert count_segments(text) == ("UCS-2", 1 if n <= 70 else math.ceil(n / 67))


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(
        alphabet=st.one_of(st.sampled_from(GSM_ANY), st.characters(exclude_categories=("Cs",))), max_size=250
    ),
    more=st.text(max_size=80),
)
def test_segments_are_monotonic_in_length(text: str, more: str) -> None:
    assert count_segments(text + more)[1] >= count_segments(text)[1]
    for i in range(len(text)):
        assert count_segments(text[: i + 1])[1] >= count_segments(text[:i])[1]


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_nonempty_text_is_at_least_one_segment(text: str) -> None:
    encoding, segments = count_segments(text)
    assert encoding in ("GSM-7", "UCS-2")
    assert (segments == 0) == (text == "")
