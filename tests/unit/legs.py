"""Legs for the unit tests, built field by field (not through the code under test where avoidable), at fixed
times: nothing here reads a clock or touches the stack."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.rules.records import HistoryEntry, Leg
from shared.rules.status import SendState, Status

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
HOOK = "https://hooks.example.com/mmsgate"


def at(seconds: float = 0.0, **delta: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds, **delta)


def leg(status: Status = Status.PENDING, *, send_state: SendState = SendState.NONE, webhook_url: str | None = None,
        **fields: Any) -> Leg:
    """A leg in ``status``, created at T0, with a history that ends in ``status``."""
    history = [HistoryEntry(at=T0, from_=None, to="pending", cause="request received")]
    if status is not Status.PENDING:
        history.append(HistoryEntry(at=T0, from_="pending", to=status.value, cause="test setup"))
    values: dict[str, Any] = dict(
        id="msg_unit0001", leg_key="single:msg_unit0001", tenant_id="tnt_unit", to="+14155550101",
        from_="+18005551234", channel="mms", encoding="GSM-7", segments=1, request_id="req_unit",
        created_at=T0, status=status, status_since=T0, updated_at=T0, body="hello", price_micros=20_000,
        send_state=send_state, webhook_url=webhook_url, history=tuple(history),
    )
    values.update(fields)
    return Leg(**values)


def claimed(*, at_: dt.datetime = T0, attempts: int = 1, **fields: Any) -> Leg:
    """A leg dispatch has claimed at ``at_`` and is talking to the provider about."""
    values: dict[str, Any] = dict(send_state=SendState.IN_FLIGHT, claimed_at=at_, first_claimed_at=at_,
                                  attempts=attempts)
    values.update(fields)
    return leg(Status.SENDING, **values)


def statuses(history: tuple[HistoryEntry, ...]) -> list[tuple[str | None, str]]:
    return [(h.from_, h.to) for h in history]
