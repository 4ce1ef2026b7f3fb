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
98     first attempt per (to, from, text): recorded and accepted (webhooks flow, delivered) but the
       connection is dropped without any HTTP response; a later attempt is a new send (with
       ``idempotency_replay`` on, one with the same Idempotency-Key and body gets the first answer replayed)
99     accepted, ``message.sent``, never a final report
====== =====================================================================================

A second block, ``+1NPA55502XX``, models handsets:

====== =====================================================================================
XX     behaviour
====== =====================================================================================
00-09  the handset cannot take MMS: an MMS is accepted, ``message.sent``, then finalized
       ``delivery_failed`` (error 40008); an SMS is delivered
====== =====================================================================================

A third block, ``+1NPA55503XX``, models lost answers that only the carrier's records can settle; its
outcome codes are ``300 + XX`` (outside 00-99, so the first block's codes never move):

====== =====================================================================================
XX     behaviour
====== =====================================================================================
00-49  "silent lost answer": every attempt is recorded and goes on to ``sent`` then ``delivered``,
       but none of its webhooks is ever POSTed (nothing in ``/_sim/webhooks``); the first attempt per
       (to, from, text) also loses its answer (the connection is dropped, as for 98); a later attempt
       is answered normally (a new message) and is just as silent. Only ``GET /v2/messages/{id}`` and
       the detail record (once sent and ``mdr_lag_s`` later) tell what happened.
50-99  "lost before stored": the first attempt per (to, from, text) drops the connection without an
       answer and stores nothing (no message, no record, no webhooks); a later attempt is accepted,
       delivered, with webhooks.
====== =====================================================================================

In a group MMS the harshest recipient decides the answer (a lost-before-stored recipient on a first
attempt loses the whole request); webhooks are withheld only for the silent recipients.
"""

from __future__ import annotations

import re

_MAGIC = re.compile(r"^\+1\d{3}55501(\d{2})$")
_NO_MMS = re.compile(r"^\+1\d{3}555020\d$")
_LOST = re.compile(r"^\+1\d{3}55503(\d{2})$")
NO_MMS = 100  # the outcome code of the "handset cannot take MMS" block (outside 00-99 on purpose)
LOST_BLOCK = 300  # +1NPA55503XX is outcome 300 + XX


def outcome_code(number: str) -> int:
    """The outcome selector ``XX`` of a recipient number (0 for ordinary numbers, ``NO_MMS`` for a handset
    that cannot take MMS, ``300 + XX`` for ``+1NPA55503XX``)."""
    match = _MAGIC.match(number or "")
    if match:
        return int(match.group(1))
    match = _LOST.match(number or "")
    if match:
        return LOST_BLOCK + int(match.group(1))
    return NO_MMS if _NO_MMS.match(number or "") else 0


def is_blocked(code: int) -> bool:
    return 90 <= code <= 92


def is_server_error_first(code: int) -> bool:
    return 93 <= code <= 95


def is_rate_limited_first(code: int) -> bool:
    return 96 <= code <= 97


def is_silent(code: int) -> bool:
    """No webhook of this recipient is ever delivered (+1NPA55503 00-49)."""
    return LOST_BLOCK <= code <= LOST_BLOCK + 49


def is_lost_before_stored_first(code: int) -> bool:
    """The first attempt dies before anything is stored (+1NPA55503 50-99)."""
    return LOST_BLOCK + 50 <= code <= LOST_BLOCK + 99


def is_drop_first(code: int) -> bool:
    """The first attempt is stored, but its answer is lost (98, and the silent block)."""
    return code == 98 or is_silent(code)


def final_status(code: int, message_type: str = "MMS") -> str | None:
    """The status ``message.finalized`` reports, or None when no final report is ever sent."""
    if code == NO_MMS:
        return "delivery_failed" if message_type == "MMS" else "delivered"
    if code == 99:
        return None
    if code >= LOST_BLOCK:
        return "delivered"
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
