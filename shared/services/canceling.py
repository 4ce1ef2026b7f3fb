"""Cancel: ``DELETE /api/v1/messages/{id}`` and ``DELETE /api/v1/messages/group/{group_id}``.

A leg can be canceled while the provider does not have it: ``scheduled``, or ``queued`` (dispatch has not
claimed it; claiming moves it to ``sending``). It ends ``canceled``, is refunded in the same commit, and the
customer gets ``message.canceled``. Anything else answers 409 ``NOT_CANCELABLE`` with the current status.
Canceling a canceled leg again answers as the first cancel did (200), so a client may retry freely.

The cancel and a dispatch claiming the same leg are both conditioned writes through ``change``: whichever
commits first wins, and the other decides again on what it committed (dispatch then sees ``canceled`` and
sends nothing; the cancel sees ``sending`` and answers 409). Telnyx can cancel only its own scheduled
messages, and we hand it none early, so cancel never involves the provider.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING, Any

from shared.ports import Decision
from shared.rules.errors import ApiError, ErrorCode, message_for
from shared.rules.frozen import frozen
from shared.rules.legs import transition, view
from shared.rules.records import Leg
from shared.rules.status import Status
from shared.services.leg_changes import change

if TYPE_CHECKING:
    from shared.ports import Runtime

CANCELABLE = frozenset({Status.QUEUED, Status.SCHEDULED})


@frozen
class Canceled:
    """What one cancel decided: whether the leg is (now, or already was) canceled."""

    canceled: bool
    status: Status


def cancel_step(leg: Leg | None, *, tenant_id: str, now: dt.datetime) -> Decision[Canceled]:
    """Decide one leg's cancel (pure). No result: no such leg for this tenant."""
    if leg is None or leg.tenant_id != tenant_id:
        return Decision(result=None)
    if leg.status is Status.CANCELED:
        return Decision(result=Canceled(True, leg.status))
    if leg.status not in CANCELABLE:
        return Decision(result=Canceled(False, leg.status))
    moved = transition(leg, Status.CANCELED, cause="canceled by the customer", now=now)
    assert moved is not None  # queued and scheduled may always be canceled
    return Decision(after=moved, refund_micros=leg.price_micros, result=Canceled(True, moved.status))


def _not_found(what: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"No {what} with that id")


def cancel_message(rt: Runtime, tenant_id: str, message_id: str) -> dict[str, Any]:
    """The canceled message (as a read shows it), or 404 / 409."""
    if not message_id.startswith("msg_"):
        raise _not_found("message")
    mutation = change(rt, message_id, functools.partial(cancel_step, tenant_id=tenant_id, now=rt.now()))
    result, leg = mutation.result, mutation.current
    if result is None or leg is None:
        raise _not_found("message")
    if not result.canceled:
        raise ApiError(ErrorCode.NOT_CANCELABLE, f"The message is {result.status.value}: it can no longer be "
                       "canceled", details=[{"field": "status", "issue": result.status.value}])
    return view(leg)


def cancel_group(rt: Runtime, tenant_id: str, group_id: str) -> dict[str, Any]:
    """Cancel every cancelable leg of a group; one result per leg, in the order of the request."""
    record = rt.legs.get_group(group_id) if group_id.startswith("grp_") else None
    if record is None or record.tenant_id != tenant_id:
        raise _not_found("group")
    now = rt.now()
    decide = functools.partial(cancel_step, tenant_id=tenant_id, now=now)
    mutations = rt.concurrently(*(functools.partial(change, rt, message_id, decide)
                                  for message_id in record.message_ids))
    messages = []
    summary = {"total": 0, "canceled": 0, "not_cancelable": 0}
    for mutation in mutations:
        result, leg = mutation.result, mutation.current
        if result is None or leg is None:
            continue  # a row the accept never wrote (it failed before its pre-insert)
        item: dict[str, Any] = {"id": leg.id, "message_id": leg.id, "to": leg.to, "status": result.status.value,
                                "canceled": result.canceled}
        if not result.canceled:
            item["error_code"] = ErrorCode.NOT_CANCELABLE.value
            item["error_message"] = message_for(ErrorCode.NOT_CANCELABLE)
        summary["total"] += 1
        summary["canceled" if result.canceled else "not_cancelable"] += 1
        messages.append(item)
    return {"group_id": group_id, "messages": messages, "summary": summary}
