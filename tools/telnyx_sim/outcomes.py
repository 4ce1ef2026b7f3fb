"""Which fate a recipient number selects (the simulator's outcome table).

Numbers of the form ``+1NPA55501XX`` select outcome ``XX``; every other number behaves like ``00``.

====== =====================================================================================
XX     behaviour
====== =====================================================================================
00-79  accepted, ``message.sent``, ``message.finalized`` delivered
80-84  accepted, ``message.sent``, finalized ``delivery_failed`` (error 40008 Undeliverable)
85-89  accepted, ``message.sent``, finalized ``delivery_unconfirmed``
90-92  HTTP 409 / 40300 "Blocked due to STOP message", nothing recorded
93-95  first attempt per (to, from, text): HTTP 500 / 10007, nothing recorded; later: delivered
96-97  first attempt: HTTP 429 / 10011 with rate-limit headers, nothing recorded; later: delivered
98     first attempt: recorded and accepted (webhooks flow, delivered) but the connection is dropped
       without any HTTP response; a later attempt with the same Idempotency-Key and body gets the
       first answer replayed, any other later attempt is a new send
99     accepted, ``message.sent``, never a final report
====== =====================================================================================

A second block, ``+1NPA55502XX``, models handsets:

====== =====================================================================================
XX     behaviour
====== =====================================================================================
00-09  the handset cannot take MMS: an MMS is accepted, ``message.sent``, then finalized
       ``delivery_failed`` (error 40008); an SMS is delivered
====== =====================================================================================
"""

from __future__ import annotations

import re

_MAGIC = re.compile(r"^\+1\d{3}55501(\d{2})$")
_NO_MMS = re.compile(r"^\+1\d{3}555020\d$")
NO_MMS = 100  # the outcome code of the "handset cannot take MMS" block (outside 00-99 on purpose)


def outcome_code(number: str) -> int:
    """The outcome selector ``XX`` of a recipient number (0 for ordinary numbers, ``NO_MMS`` for a handset
    that cannot take MMS)."""
    match = _MAGIC.match(number or "")
    if match:
        return int(match.group(1))
    return NO_MMS if _NO_MMS.match(number or "") else 0


def is_blocked(code: int) -> bool:
    return 90 <= code <= 92


def is_server_error_first(code: int) -> bool:
    return 93 <= code <= 95


def is_rate_limited_first(code: int) -> bool:
    return 96 <= code <= 97


def is_drop_first(code: int) -> bool:
    return code == 98


def final_status(code: int, message_type: str = "MMS") -> str | None:
    """The status ``message.finalized`` reports, or None when no final report is ever sent."""
    if code == NO_MMS:
        return "delivery_failed" if message_type == "MMS" else "delivered"
    if code == 99:
        return None
    if 80 <= code <= 84:
        return "delivery_failed"
    if 85 <= code <= 89:
        return "delivery_unconfirmed"
    return "delivered"


UNDELIVERABLE_ERROR = {
    "code": "40008",
    "title": "Undeliverable",
    "detail": "The message was not delivered to the recipient's handset. "
    "Check the number's validity or try again later.",
    "meta": {"url": "https://developers.telnyx.com/docs/overview/errors/40008"},
}
