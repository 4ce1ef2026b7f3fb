"""Validity: how long a leg may wait before it is handed to the provider, and what happens when it can wait
no more (pure rules).

A send carries ``validity_period`` (seconds, Infobip's name) or ``expires_at`` (an instant, the queue-MMS
API's name). The period counts from when the message is due: its ``scheduled_at``, or acceptance. Either
way the validity ends at most 48 hours after the message is due (Infobip's cap). A leg the provider does not
have by then ends ``expired``, refunded, with the ``message.expired`` event. A leg the provider may have
(``sending`` with an attempt in flight or unanswered, ``sent`` and after) never expires: a message already
on its way cannot be called back, and marking it expired would contradict the carrier's report.

Combined with a delivery window (shared/rules/windows.py) and a schedule at accept: when the window does not open
before the validity ends, no recipient of the request could ever be sent, so the request is refused (400,
nothing written or charged) rather than accepted only to expire.
"""

from __future__ import annotations

import datetime as dt

from shared.rules.decisions import Decision
from shared.rules.errors import ErrorCode, message_for
from shared.rules.frozen import frozen
from shared.rules.legs import transition, with_send_state
from shared.rules.records import Leg
from shared.rules.status import SendState, Status
from shared.rules.windows import Window, next_opening

MAX_VALIDITY = dt.timedelta(hours=48)
# Statuses in which the provider does not have the leg: the only ones it may expire from.
UNSENT = frozenset({Status.QUEUED, Status.SCHEDULED})


class FieldError(ValueError):
    """A request field that breaks a timing rule; the accept answers 400 naming ``field``."""

    def __init__(self, field: str, issue: str) -> None:
        super().__init__(f"{field}: {issue}")
        self.field = field
        self.issue = issue


@frozen
class Timing:
    """When an accepted leg is due (None: now) and until when it is valid (None: no limit)."""

    scheduled_at: dt.datetime | None
    valid_until: dt.datetime | None


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def plan(now: dt.datetime, *, scheduled_at: dt.datetime | None, validity_period: int | None,
         expires_at: dt.datetime | None, window: Window | None) -> Timing:
    """The timing of a request's legs, or ``FieldError``. ``scheduled_at`` has passed its own checks (in the
    future, within 180 days)."""
    due = scheduled_at or now
    valid_until: dt.datetime | None = None
    if expires_at is not None:
        if expires_at <= now:
            raise FieldError("expires_at", "must be in the future")
        if scheduled_at is not None and expires_at <= scheduled_at:
            raise FieldError("expires_at", "must be after scheduled_at: the message would expire before it is due")
        if expires_at > due + MAX_VALIDITY:
            raise FieldError("expires_at", "must be at most 48 hours after the message is due (scheduled_at, or "
                             "now)")
        valid_until = expires_at
    elif validity_period is not None:
        valid_until = due + dt.timedelta(seconds=validity_period)
    opening = next_opening(window, due) if window is not None else due
    if valid_until is not None and opening >= valid_until:
        raise FieldError("delivery_window", f"does not open before the message expires at {_iso(valid_until)} "
                         f"(it opens next at {_iso(opening)})")
    return Timing(scheduled_at=opening if opening > due else scheduled_at, valid_until=valid_until)


def past(leg: Leg, now: dt.datetime) -> bool:
    """The leg's validity has ended."""
    return leg.valid_until is not None and now >= leg.valid_until


def may_expire(leg: Leg) -> bool:
    """The provider does not have the leg: queued or scheduled, or ``sending`` whose last attempt the
    provider refused for now (a 5xx or a refused connection: nothing reached it)."""
    return leg.status in UNSENT or (leg.status is Status.SENDING and leg.send_state is SendState.RETRYABLE
                                    and not leg.provider_id)


def expired(leg: Leg, now: dt.datetime, cause: str) -> Leg | None:
    """``leg`` moved to ``expired`` (None when it may not expire)."""
    if not may_expire(leg):
        return None
    moved = transition(leg, Status.EXPIRED, cause=cause, now=now, error_code=ErrorCode.VALIDITY_EXPIRED.value,
                       error_message=message_for(ErrorCode.VALIDITY_EXPIRED))
    if moved is not None and moved.send_state is SendState.RETRYABLE:
        moved = with_send_state(moved, SendState.FAILED, now=now)
    return moved


def expire(leg: Leg | None, *, now: dt.datetime) -> Decision[bool]:
    """The sweeper's rule: a leg past its validity that the provider does not have ends ``expired`` and is
    refunded (its task may be lost, or due only later)."""
    if leg is None or not past(leg, now):
        return Decision(result=False)
    moved = expired(leg, now, "validity ended before it was sent")
    if moved is None:
        return Decision(result=False)
    return Decision(after=moved, refund_micros=leg.price_micros, result=True)
