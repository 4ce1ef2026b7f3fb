"""Tests for shared.rules.segments: GSM-7 / UCS-2 detection and segment counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.rules.segments import GSM7_BASIC, GSM7_EXTENSION, MMS_SEGMENTS, count_segments, is_gsm7

# 3GPP TS 23.038 (GSM 03.38) §6.2.1, the default alphabet by code (0x00..0x7F), written out here from the
# spec's table, independently of shared/rules/segments.py. 0x1B is the escape to the extension table.
ESC = None
SPEC_DEFAULT_ALPHABET = [
    "@", "\u00a3", "$", "\u00a5", "\u00e8", "\u00e9", "\u00f9", "\u00ec",  # 0x00 @ £ $ ¥ è é ù ì
    "\u00f2", "\u00c7", "\n", "\u00d8", "\u00f8", "\r", "\u00c5", "\u00e5",  # 0x08 ò Ç LF Ø ø CR Å å
    "\u0394", "_", "\u03a6", "\u0393", "\u039b", "\u03a9", "\u03a0", "\u03a8",  # 0x10 Δ _ Φ Γ Λ Ω Π Ψ
    "\u03a3", "\u0398", "\u039e", ESC, "\u00c6", "\u00e6", "\u00df", "\u00c9",  # 0x18 Σ Θ Ξ ESC Æ æ ß É
    " ", "!", '"', "#", "\u00a4", "%", "&", "'",  # 0x20; 0x24 is the currency sign ¤, not $
    "(", ")", "*", "+", ",", "-", ".", "/",
    *"0123456789", ":", ";", "<", "=", ">", "?",  # 0x30
    "\u00a1", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "\u00c4", "\u00d6", "\u00d1", "\u00dc", "\u00a7",  # 0x40 ¡ .. Ä Ö Ñ Ü §
    "\u00bf", *"abcdefghijklmnopqrstuvwxyz", "\u00e4", "\u00f6", "\u00f1", "\u00fc", "\u00e0",  # 0x60 ¿ .. ä ö ñ ü à
]
# §6.2.1.1, the extension table: code -> character (each costs the escape plus itself, two septets).
SPEC_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
                  0x40: "|", 0x65: "\u20ac"}
# One SMS carries 140 octets: 160 septets, or 70 UCS-2 units. A concatenated part spends 6 octets on its
# header (the 8-bit reference IE), leaving 134 octets: 153 septets (1072 bits / 7) or 67 units.
GSM7_SINGLE, GSM7_PART, UCS2_SINGLE, UCS2_PART = 160, 153, 70, 67

BASIC = "".join(c for c in SPEC_DEFAULT_ALPHABET if c is not None)
EXTENSION = "".join(SPEC_EXTENSION.values())
GSM_ANY = BASIC + EXTENSION


def test_the_spec_table_is_complete():
    assert len(SPEC_DEFAULT_ALPHABET) == 128
    assert SPEC_DEFAULT_ALPHABET[0x1B] is ESC
    assert (SPEC_DEFAULT_ALPHABET[0x24], SPEC_DEFAULT_ALPHABET[0x40], SPEC_DEFAULT_ALPHABET[0x60]) == (
        "\u00a4", "\u00a1", "\u00bf")


def test_the_alphabets_are_the_specs():
    assert set(BASIC) == GSM7_BASIC
    assert set(EXTENSION) == GSM7_EXTENSION


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


@pytest.mark.parametrize(("alphabet", "single", "part", "encoding"), [
    ("a", GSM7_SINGLE, GSM7_PART, "GSM-7"), ("\u00e7", UCS2_SINGLE, UCS2_PART, "UCS-2"),  # ç is not GSM-7
])
def test_segment_sizes_at_each_boundary(alphabet: str, single: int, part: int, encoding: str) -> None:
    for parts in range(1, 8):
        capacity = single if parts == 1 else part * parts
        assert count_segments(alphabet * capacity) == (encoding, parts)
        assert count_segments(alphabet * (capacity + 1)) == (encoding, parts + 1)


def test_extension_characters_cost_two_septets() -> None:
    for ch in EXTENSION:
        assert count_segments(ch * (GSM7_SINGLE // 2)) == ("GSM-7", 1)
        assert count_segments(ch * (GSM7_SINGLE // 2) + "a") == ("GSM-7", 2)


def test_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        count_segments(None)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=BASIC, min_size=1, max_size=1600))
def test_basic_gsm_text(text: str) -> None:
    n = len(text)
    expected = 1 if n <= GSM7_SINGLE else math.ceil(n / GSM7_PART)
    assert count_segments(text) == ("GSM-7", expected)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=GSM_ANY, min_size=1, max_size=1600))
def test_gsm_text_with_extension(text: str) -> None:
    septets = len(text) + sum(ch in EXTENSION for ch in text)
    encoding, segments = count_segments(text)
    assert encoding == "GSM-7"
    if septets <= GSM7_SINGLE:
        assert segments == 1
    else:
        # Never fewer parts than the septets need, and at most one extra part per part for unsplit pairs.
        assert math.ceil(septets / GSM7_PART) <= segments <= math.ceil(septets / (GSM7_PART - 1))


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
    if units <= UCS2_SINGLE:
        assert segments == 1
    else:
        assert math.ceil(units / UCS2_PART) <= segments <= math.ceil(units / (UCS2_PART - 1))


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
    assert count_segments(text) == ("UCS-2", 1 if n <= UCS2_SINGLE else math.ceil(n / UCS2_PART))


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
