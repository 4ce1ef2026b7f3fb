"""The recipient gates every accept applies (single, group and batch alike), pure and in the contract's order:
the number, MMS to US/Canada only (or the request's own failure, for every valid number), the opt-out list,
a price for the destination's country. The first that fails names the recipient's error; a recipient that
passes carries its price.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from shared.rules.errors import ErrorCode
from shared.rules.records import Rates

# (canonical E.164, region, whether MMS may go to it), as shared.rules.phone.describe gives it.
Number = tuple[str, str | None, bool]


def parse(raw: str) -> Number | None:
    """One recipient's number, parsed once (None: not a valid number)."""
    # phonenumbers costs a cold start ~40 ms: loaded by the accepts that parse, not by dispatch, which only
    # needs this module's types through the batch rules.
    from shared.rules.phone import InvalidNumber, describe  # noqa: PLC0415

    try:
        return describe(raw)
    except InvalidNumber:
        return None


E164_EXAMPLE = "+14155552671"


def invalid_number_message(raw: object, field: str) -> str:
    """What an ``INVALID_PHONE_NUMBER`` says: the field (``to``, ``to[3]``), why the value is not a number, and the
    form expected (E.164: ``+``, the country code and the number, nothing else)."""
    from shared.rules.phone import InvalidNumber, parse_e164  # noqa: PLC0415 - see parse()

    try:
        parse_e164(raw)  # type: ignore[arg-type]
        reason = "phone number is not valid"
    except InvalidNumber as exc:
        reason = exc.reason
    return (f"{field} is not a valid phone number ({reason}): expected E.164, a + followed by the country code "
            f"and the number, digits only, e.g. {E164_EXAMPLE}")


def number_gate(number: Number | None, channel: str, request_error: ErrorCode | None = None) -> ErrorCode | None:
    """The gates that need no read: a valid number; then the request's own failure (its sender, its media
    URLs), which fails every valid recipient; then MMS to US/Canada only."""
    if number is None:
        return ErrorCode.INVALID_PHONE_NUMBER
    if request_error is not None:
        return request_error
    if channel == "mms" and not number[2]:
        return ErrorCode.MMS_NANP_ONLY
    return None


def list_gate(number: Number, opted_out: Collection[str], prices: Mapping[str, Rates | None], channel: str,
              segments: int) -> tuple[int, ErrorCode | None]:
    """The gates read from the tenant's lists: not opted out, and priced for its country. (price, error)."""
    if number[0] in opted_out:
        return 0, ErrorCode.RECIPIENT_OPTED_OUT
    rates = prices.get(number[1] or "ZZ")
    price = rates.price(channel, segments) if rates else None
    if price is None:
        return 0, ErrorCode.PRICE_UNAVAILABLE
    return price, None


def country(number: Number) -> str:
    return number[1] or "ZZ"
