"""Phone numbers: strict E.164 parsing and the NANP (US/Canada) gate for MMS.

Parsing
    ``parse_e164`` accepts only strict E.164 text: ``+`` followed by 8 to 15 ASCII digits, the first
    of which is not ``0``; no spaces, dashes, brackets, dots, extensions or national formats. The
    number must also be one that ``phonenumbers`` considers valid. The canonical E.164 string is
    returned; anything else raises :class:`InvalidNumber` with a short, stable reason. A +1 number of ten
    digits whose area code or exchange code starts with 0 or 1 is never a number (the NANP plan is NXX-NXX-XXXX,
    N = 2-9), even where ``phonenumbers``' metadata is looser (the Dominican Republic's). ``is_nanp``,
    ``region_of`` and ``describe`` go through the same parse, so no number is NANP that ``parse_e164`` refuses.

    Fictional numbers: NANP reserves 555-0100 through 555-0199 for fiction, and the API's own
    examples use them (``+14155550101``, ``+18005551234``...). Current ``phonenumbers`` metadata
    already treats them as valid for real area codes. So that tests and examples keep working if a
    future metadata release tightens that, a +1 number that ``phonenumbers`` calls *possible* (but not
    valid) is still accepted when its area code is well formed (``[2-9][0-8][0-9]``, not ``N11``) and
    its subscriber part is ``555-01XX``.

NANP gate
    The contract says MMS goes to "NANP (US/Canada, E.164 +1)" only. ``is_nanp`` is true for numbers
    with country calling code 1 whose region is the United States or Canada, or one of the US
    territories served by US carriers under US numbering administration: Puerto Rico (PR), the US
    Virgin Islands (VI), Guam (GU), the Northern Mariana Islands (MP) and American Samoa (AS). The
    other +1 countries (Jamaica, the Bahamas, Bermuda, the Dominican Republic, Trinidad and Tobago and
    the rest of the Caribbean) are NANP members but not "US/Canada", so they are not allowed. A +1
    number whose region ``phonenumbers`` cannot name is a US or Canadian area code (every other +1
    region is identified by its area code) and is allowed if it parses.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

__all__ = ["MMS_REGIONS", "InvalidNumber", "describe", "is_nanp", "parse_e164", "region_of"]

# Regions counted as "US/Canada" for the MMS gate (see the module docstring).
MMS_REGIONS: frozenset[str] = frozenset({"US", "CA", "PR", "VI", "GU", "MP", "AS"})

_E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")
FORMAT_REASON = "phone number must be in E.164 format (+ and 8 to 15 digits)"
_FICTIONAL_NANP_RE = re.compile(r"[2-9](?!11)[0-8][0-9]55501[0-9]{2}")


class InvalidNumber(ValueError):
    """Raised for anything that is not a valid E.164 number. ``reason`` is short and stable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_fictional_nanp(number: phonenumbers.PhoneNumber) -> bool:
    return number.country_code == 1 and bool(_FICTIONAL_NANP_RE.fullmatch(str(number.national_number)))


def _parse(raw: object) -> phonenumbers.PhoneNumber:
    if not isinstance(raw, str):
        raise InvalidNumber("phone number must be a string")
    return _parse_text(raw)


# An accept asks about each recipient several times (E.164, NANP, region), and phonenumbers' parse is the
# most expensive step of a group's checks (~0.15 ms a number). Valid numbers are remembered (the result is
# never modified); an invalid one raises, and is parsed again next time.
@functools.lru_cache(maxsize=4096)
def _parse_text(raw: str) -> phonenumbers.PhoneNumber:
    if not _E164_RE.fullmatch(raw):
        raise InvalidNumber(FORMAT_REASON)
    nanp_ten = len(raw) == 12 and raw[1] == "1"
    if nanp_ten and (raw[2] in "01" or raw[5] in "01"):
        # NANP area codes and exchange codes never start with 0 or 1. Refused here, before the fast path
        # below: int("0003100000") would drop the leading zeros and build another, valid, number.
        raise InvalidNumber("phone number is not valid")
    try:
        # A strict +1 number of ten digits (area and exchange code starting 2-9, so no leading zero) is the object
        # phonenumbers' parse would build (equal, field for field), without its text normalisation: half the
        # cost, which a 10,000-recipient batch pays per number.
        number = (phonenumbers.PhoneNumber(country_code=1, national_number=int(raw[2:]))
                  if nanp_ten else phonenumbers.parse(raw, None))
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidNumber("unknown country calling code") from None
        raise InvalidNumber("phone number is not valid") from None
    if not (phonenumbers.is_valid_number(number)
            or (phonenumbers.is_possible_number(number) and _is_fictional_nanp(number))):
        if not number.country_code or not phonenumbers.region_codes_for_country_code(number.country_code):
            raise InvalidNumber("unknown country calling code")
        raise InvalidNumber("phone number is not valid")
    if phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != raw:
        # phonenumbers forgives a trunk prefix and rewrites the number; strict E.164 never has one, and we
        # must not send to a number other than the one the caller wrote. Checked here, where every question
        # (parse_e164, is_nanp, region_of, describe) parses, so they all agree on what a number is.
        raise InvalidNumber("phone number is not in canonical E.164 form")
    return number


def parse_e164(raw: str) -> str:
    """Return the canonical E.164 form of ``raw`` or raise :class:`InvalidNumber`.

    Reasons: ``"phone number must be a string"``,
    ``"phone number must be in E.164 format (+ and 8 to 15 digits)"``,
    ``"unknown country calling code"``, ``"phone number is not valid"``,
    ``"phone number is not in canonical E.164 form"`` (e.g. a national trunk prefix: ``+49030...``).
    """
    _parse(raw)  # raises unless raw is valid and already canonical
    return raw


def is_nanp(e164: str) -> bool:
    """True if ``e164`` is a valid number that MMS may be sent to (US, Canada, US territories).

    Never raises: input that ``parse_e164`` would reject gives ``False``.
    """
    try:
        number = _parse(e164)
    except InvalidNumber:
        return False
    if number.country_code != 1:
        return False
    region = _region(number, e164)
    if region is None:
        # Every +1 region other than US and CA is identified by its area code, so an unnamed +1
        # number is a US or Canadian area code (this only happens for the fictional fallback).
        return True
    return region in MMS_REGIONS


# +1 area code -> region: in the NANP the area code alone names the country (checked over every area code),
# and phonenumbers' region lookup tries each +1 region's patterns in turn. Learnt from valid numbers only.
_NANP_REGIONS: dict[str, str | None] = {}


def _region(number: phonenumbers.PhoneNumber, e164: str) -> str | None:
    if number.country_code != 1 or len(e164) != 12:
        return phonenumbers.region_code_for_number(number)
    area = e164[2:5]
    if area in _NANP_REGIONS:
        return _NANP_REGIONS[area]
    region = phonenumbers.region_code_for_number(number)
    if phonenumbers.is_valid_number(number):
        _NANP_REGIONS[area] = region
    return region


@functools.lru_cache(maxsize=4096)
def region_of(e164: str) -> str | None:
    """ISO 3166-1 alpha-2 region of a canonical E.164 number (prices are per destination country)."""
    try:
        region = _region(_parse(e164), e164)
    except InvalidNumber:
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
        except phonenumbers.NumberParseException:
            return None
    return None if region in (None, "ZZ", "001") else region


def describe(raw: str) -> tuple[str, str | None, bool]:
    """``parse_e164``, ``region_of`` and ``is_nanp`` of one number from a single parse (a batch asks all three
    of up to 10,000 numbers, more than the parse cache holds). Raises :class:`InvalidNumber` as parse_e164."""
    e164 = parse_e164(raw)
    number = _parse(e164)
    region = _region(number, e164)
    nanp = number.country_code == 1 and (region is None or region in MMS_REGIONS)
    return e164, (None if region in (None, "ZZ", "001") else region), nanp
