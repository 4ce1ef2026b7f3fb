"""Which fate a recipient number selects (the Twilio simulator's outcome table).

The Telnyx simulator owns ``+1NPA55501XX``-``+1NPA55503XX``; this one uses the next two blocks, so one number
plan can drive both. Every number outside them (the Telnyx blocks included) is simply delivered.

``+1NPA55504XX``: what Twilio answers and what the carrier reports (outcome code ``XX``).

====== =====================================================================================
XX     behaviour
====== =====================================================================================
00-39  201 queued → sending → sent → delivered
40-44  … sent → undelivered, ErrorCode 30003 (unreachable handset)
45-49  … sent → undelivered, 30005 (unknown destination)
50-54  … sent → undelivered, 30006 (landline / unreachable carrier)
55-59  … sent → undelivered, 30007 (filtered as spam)
60-64  … sent → undelivered, 30008 (unknown error)
65-69  201 queued → sending → failed, 30008
70-72  201 queued → failed, 21610 (blocklisted recipient found after create, as on the service path)
73-74  400 / 21610 on every attempt: the recipient opted out; nothing created
75-76  400 / 21408 (region not enabled); 77: 400 / 21612; 78: 400 / 21614 (not a mobile number)
79-84  201 … sent, and never a DLR: the message stays ``sent``
85-86  first attempt per (To, From, Body): 500 / 20500, nothing stored; later attempts: delivered
87-88  first attempt: 503 / 20503, nothing stored; later: delivered
89-90  first attempt: 429 / 20429, nothing stored; later: delivered
91-92  first attempt: stored (it goes on to delivered, with callbacks), but the answer never comes: the
       request hangs ``hang_s`` and the connection is dropped (an ambiguous timeout); later: a new message
93-94  first attempt: stored, then the connection is dropped at once (reset, no answer); later: a new message
95-96  first attempt: stored, but answered 500 / 20500 (twilio.md §3: a 5xx does not mean "not sent")
97     first attempt: hangs ``hang_s`` then drops, nothing stored (lost before stored); later: delivered
98     first attempt: connection dropped at once, nothing stored; later: delivered
99     every attempt: stored and delivered, yet answered 500 / 20500 (each retry is one more message)
====== =====================================================================================

``+1NPA55505XX``: status callbacks misbehave (the message itself is delivered).

====== =====================================================================================
XX     behaviour
====== =====================================================================================
00-09  every callback is POSTed twice (a duplicate, same parameters and signature)
10-19  callbacks are held until the final status, then POSTed newest first (out of order)
20-29  no callback is ever POSTed (the status still moves on; only a fetch tells)
30-99  like any other number
====== =====================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DELIVERY = re.compile(r"^\+1\d{3}55504(\d{2})$")
_CALLBACKS = re.compile(r"^\+1\d{3}55505(\d{2})$")
CALLBACK_BLOCK = 100  # +1NPA55505XX is outcome 100 + XX (outside 00-99 on purpose)


def outcome_code(number: str) -> int:
    """``XX`` for ``+1NPA55504XX``, ``100 + XX`` for ``+1NPA55505XX``, 0 for every other number."""
    match = _DELIVERY.match(number or "")
    if match:
        return int(match.group(1))
    match = _CALLBACKS.match(number or "")
    if match:
        return CALLBACK_BLOCK + int(match.group(1))
    return 0


@dataclass(frozen=True)
class Fate:
    """The whole story of one send, as the outcome code decides it."""

    final: str | None = "delivered"  # delivered | undelivered | failed | None (stays sent)
    error_code: int | None = None
    via_sending: bool = True  # failed after "sending" (else straight from the queue)
    sync_error: int | None = None  # a 4xx on every attempt (HTTP 400 code), nothing created
    first_error: int | None = None  # first attempt only: 500/503/429 with nothing stored
    first_lost: str | None = None  # first attempt, nothing stored: "hang" | "reset"
    first_after_store: str | None = None  # first attempt, stored: "hang" | "reset" | "500"
    always_500_after_store: bool = False
    callbacks: str = "normal"  # normal | duplicate | reorder | drop


def fate(code: int) -> Fate:
    if code >= CALLBACK_BLOCK:
        xx = code - CALLBACK_BLOCK
        mode = "duplicate" if xx <= 9 else "reorder" if xx <= 19 else "drop" if xx <= 29 else "normal"
        return Fate(callbacks=mode)
    if code <= 39:
        return Fate()
    for low, error in ((40, 30003), (45, 30005), (50, 30006), (55, 30007), (60, 30008)):
        if low <= code <= low + 4:
            return Fate(final="undelivered", error_code=error)
    if 65 <= code <= 69:
        return Fate(final="failed", error_code=30008)
    if 70 <= code <= 72:
        return Fate(final="failed", error_code=21610, via_sending=False)
    if code in (73, 74):
        return Fate(sync_error=21610)
    if code in (75, 76):
        return Fate(sync_error=21408)
    if code == 77:
        return Fate(sync_error=21612)
    if code == 78:
        return Fate(sync_error=21614)
    if 79 <= code <= 84:
        return Fate(final=None)
    if code in (85, 86):
        return Fate(first_error=500)
    if code in (87, 88):
        return Fate(first_error=503)
    if code in (89, 90):
        return Fate(first_error=429)
    if code in (91, 92):
        return Fate(first_after_store="hang")
    if code in (93, 94):
        return Fate(first_after_store="reset")
    if code in (95, 96):
        return Fate(first_after_store="500")
    if code == 97:
        return Fate(first_lost="hang")
    if code == 98:
        return Fate(first_lost="reset")
    return Fate(always_500_after_store=True)  # 99
