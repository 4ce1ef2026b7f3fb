"""Tests for shared.rules.phone: strict E.164 parsing and the NANP (US/Canada) gate."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.rules.phone import InvalidNumber, is_nanp, parse_e164, region_of

FORMAT = "phone number must be in E.164 format (+ and 8 to 15 digits)"


def example_e164(region: str, kind=phonenumbers.PhoneNumberType.MOBILE) -> str | None:
    number = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    return None if number is None else phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@pytest.mark.parametrize(
    "raw",
    [
        "+14155550101",
        "+14155550198",
        "+18005551234",
        "+442071838750",
        "+14155552671",
        "+16505553000",
        "+16135550101",
        "+17875550101",
        "+33612345678",
        "+4915123456789",
        "+61412345678",
    ],
)
def test_valid_numbers_round_trip(raw: str) -> None:
    assert parse_e164(raw) == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", FORMAT),
        ("14155550101", FORMAT),
        ("+1 415 555 0101", FORMAT),
        ("+1-415-555-0101", FORMAT),
        ("+1(415)5550101", FORMAT),
        ("+1.415.555.0101", FORMAT),
        ("(415) 555-0101", FORMAT),
        ("+14155550101 ", FORMAT),
        (" +14155550101", FORMAT),
        ("+14155550101\n", FORMAT),
        ("++14155550101", FORMAT),
        ("+014155550101", FORMAT),
        ("+1234567", FORMAT),  # 7 digits
        ("+1234567890123456", FORMAT),  # 16 digits
        ("+\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff10\uff11", FORMAT),  # full-width digits
        (
            "+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0661",
            FORMAT,
        ),  # Arabic-Indic digits
        ("+14155550101;ext=1", FORMAT),
        ("tel:+14155550101", FORMAT),
        ("+1415555010", "phone number is not valid"),  # too short for NANP
        ("+141555501011", "phone number is not valid"),  # too long for NANP
        ("+11155550101", "phone number is not valid"),  # area codes never start with 1
        ("+99912345678", "unknown country calling code"),
        ("+80012345", "phone number is not valid"),  # +800 needs 8 digits after the code
    ],
)
def test_invalid_numbers(raw: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        parse_e164(raw)
    assert info.value.reason == reason
    assert str(info.value) == reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("raw", [None, 14155550101, b"+14155550101", ["+14155550101"]])
def test_non_strings_are_invalid(raw: object) -> None:
    with pytest.raises(InvalidNumber) as info:
        parse_e164(raw)  # type: ignore[arg-type]
    assert info.value.reason == "phone number must be a string"
    assert is_nanp(raw) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550101", True),  # US (fictional 555-01XX)
        ("+18005551234", True),  # US toll free
        ("+16135550101", True),  # Canada
        ("+14165550101", True),  # Canada (Toronto)
        ("+17875550101", True),  # Puerto Rico
        ("+13405550101", True),  # US Virgin Islands
        ("+16715550101", True),  # Guam
        ("+16705550101", True),  # Northern Mariana Islands
        ("+18765550101", False),  # Jamaica
        ("+12425550101", False),  # Bahamas
        ("+14415550101", False),  # Bermuda
        ("+18095550101", False),  # Dominican Republic
        ("+442071838750", False),  # United Kingdom
        ("+33612345678", False),  # France
        ("+1 415 555 0101", False),  # not strict E.164
        ("+1415555010", False),  # not valid
        ("", False),
    ],
)
def test_is_nanp(raw: str, expected: bool) -> None:
    assert is_nanp(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550101", "US"),
        ("+16135550101", "CA"),
        ("+17875550101", "PR"),
        ("+442071838750", "GB"),
        ("+80012345678", None),  # international freephone: no country
        ("not a number", None),
    ],
)
def test_region_of(raw: str, expected: str | None) -> None:
    assert region_of(raw) == expected


def test_american_samoa_is_allowed() -> None:
    e164 = example_e164("AS")
    assert e164 is not None and e164.startswith("+1684")
    assert is_nanp(e164)


def test_fictional_fallback_when_metadata_calls_555_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a future phonenumbers release called 555-01XX invalid, the examples still work."""
    from shared.rules import phone

    phone._parse_text.cache_clear()  # valid numbers parsed before are remembered; parse these anew
    monkeypatch.setattr(phonenumbers, "is_valid_number", lambda number: False)
    monkeypatch.setattr(phone, "_parse_text", phone._parse_text.__wrapped__)  # and nothing from this test is kept
    for raw in ("+14155550101", "+14155550198", "+18005550100", "+16135550199"):
        assert parse_e164(raw) == raw
        assert is_nanp(raw)
    assert not is_nanp("+18765550101")  # still Jamaica
    for raw in ("+14155550200", "+14155551234", "+18005551234", "+19115550101", "+442071838750"):
        with pytest.raises(InvalidNumber):
            parse_e164(raw)


# ------------------------------------------------------------------------------------------ properties

ALL_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
# The members of the North American Numbering Plan (country code +1), as NANPA lists them: the United
# States and Canada; the US territories American Samoa, Guam, the Northern Mariana Islands, Puerto Rico
# and the US Virgin Islands; and the Caribbean countries and territories.
NANP_REGIONS = sorted({
    "US", "CA",
    "AS", "GU", "MP", "PR", "VI",
    "AG", "AI", "BB", "BM", "BS", "DM", "DO", "GD", "JM", "KN", "KY", "LC", "MS", "SX", "TC", "TT", "VC", "VG",
})
# The contract's "NANP (US/Canada, E.164 +1)": the US and Canada, and the US territories served under US
# numbering administration (shared/rules/phone.py's docstring). Not the Caribbean countries.
MMS_ALLOWED = frozenset({"US", "CA", "AS", "GU", "MP", "PR", "VI"})


def test_our_nanp_list_is_the_metadatas():
    # If a phonenumbers release adds or moves a +1 region, the gate's answer for it must be decided here.
    assert sorted(phonenumbers.region_codes_for_country_code(1)) == NANP_REGIONS


@settings(max_examples=150, deadline=None)
@given(
    raw=st.one_of(
        st.text(max_size=25), st.from_regex(r"\A\+[0-9]{0,17}\Z"), st.from_regex(r"\A\+1[0-9]{10}\Z")
    )
)
def test_parse_only_ever_raises_invalid_number(raw: str) -> None:
    try:
        result = parse_e164(raw)
    except InvalidNumber as exc:
        assert exc.reason
        assert not is_nanp(raw)
        return
    assert result == raw  # strict input is already canonical
    assert parse_e164(result) == result


@settings(max_examples=200, deadline=None)
@given(
    region=st.sampled_from(ALL_REGIONS),
    kind=st.sampled_from([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]),
)
def test_example_numbers_round_trip(region: str, kind: int) -> None:
    e164 = example_e164(region, kind)
    assume(e164 is not None and 9 <= len(e164) <= 16)
    assert parse_e164(e164) == e164
    assert parse_e164(parse_e164(e164)) == e164


@pytest.mark.parametrize("region", NANP_REGIONS)
def test_nanp_gate_follows_region(region: str) -> None:
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
        e164 = example_e164(region, kind)
        assert e164 is not None and e164.startswith("+1")
        assert is_nanp(e164) is (region in MMS_ALLOWED), (region, e164)


@settings(max_examples=100, deadline=None)
@given(region=st.sampled_from([r for r in ALL_REGIONS if r not in NANP_REGIONS]))
def test_non_nanp_countries_are_not_nanp(region: str) -> None:
    e164 = example_e164(region)
    assume(e164 is not None)
    assert not is_nanp(e164)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(1, 11), junk=st.sampled_from([" ", "-", ".", "(", ")", "/", "\t", "\u00a0", "x"]))
def test_any_punctuation_is_rejected(position: int, junk: str) -> None:
    raw = "+14155550101"
    mutated = raw[:position] + junk + raw[position:]
    with pytest.raises(InvalidNumber) as info:
        parse_e164(mutated)
    assert info.value.reason == FORMAT


@pytest.mark.parametrize("raw", [
    "+10003100000",  # found by the property below: int("0003100000") dropped the zeros and built +1 310-0000
    "+10002345678", "+10123456789", "+11234567890",  # area code starting 0 or 1
    "+14150550101", "+14151550101",  # exchange code starting 0 or 1
    "+18090123456", "+18291123456",  # even where phonenumbers' Dominican Republic pattern is looser than the plan
])
def test_nanp_area_and_exchange_codes_never_start_with_0_or_1(raw: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        parse_e164(raw)
    assert info.value.reason == "phone number is not valid"
    assert is_nanp(raw) is False
    assert region_of(raw) is None or len(region_of(raw) or "") == 2  # never raises


_DIGIT = st.sampled_from("0123456789")
_TEN_DIGITS = st.tuples(*[_DIGIT] * 10).map("".join)
# Zero-padded short national numbers: the ones phonenumbers calls valid under +1 (Canada's 7-digit 310-xxxx) are
# what a parser that reads the ten digits as an integer turns a +1 000... number into.
_PADDED = st.one_of(st.integers(3_100_000, 3_109_999), st.integers(0, 10**10 - 1)).map(lambda n: f"{n:010d}")


@settings(max_examples=300, deadline=None)
@given(national=st.one_of(_TEN_DIGITS, _PADDED))
def test_is_nanp_and_parse_e164_agree_on_every_ten_digit_plus_one_number(national: str) -> None:
    """Every +1 number of ten digits (the first digits of its area and exchange codes drawn uniformly, so 0 and 1
    come up in every run; or a short national number padded with zeros): is_nanp implies parse_e164 accepts it
    unchanged, and an area or exchange code starting with 0 or 1 is never a number."""
    raw = "+1" + national
    try:
        parsed: str | None = parse_e164(raw)
    except InvalidNumber:
        parsed = None
    if is_nanp(raw):
        assert parsed == raw
    if national[0] in "01" or national[3] in "01":
        assert parsed is None and not is_nanp(raw)
    if parsed is not None:
        assert parse_e164(parsed) == parsed


@pytest.mark.parametrize("raw", ["+49030000", "+4403069990000"])
def test_a_national_trunk_prefix_is_not_e164(raw: str) -> None:
    with pytest.raises(InvalidNumber, match="canonical"):
        parse_e164(raw)
