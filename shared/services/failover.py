"""SMS failover: when an MMS leg that carries ``sms_failover`` ends ``failed`` or ``undelivered`` for a carrier
reason, exactly one SMS with the failover text goes to the same recipient, as a leg of its own.

Two steps, each atomic, joined by a deterministic id (docs/decisions.md, "SMS failover"):

1. ``arm`` (pure) runs inside the very decision that fails the MMS leg (a delivery report, or dispatch's
   record of a provider refusal): it writes the link ``failover_message_id`` (derived from the MMS leg's
   id) and ``failover_due``. Only one decision can move a leg into a terminal status, so the link is
   written once, whatever reports are replayed or race.
2. ``launch`` creates the SMS leg: one commit that creates it (``create()``: fails if it exists), charges
   the tenant (conditioned on the balance read) and clears ``failover_due`` on the MMS leg (conditioned on
   its version). Whoever committed step 1 calls it at once; the sweeper calls it for any MMS leg still due
   (a crash between the steps). Two launches race at the commit: one creates, the other reads again and
   finds nothing due. Then the SMS leg's dispatch task is created (lost: the sweeper re-enqueues a queued
   leg, as for any send).

The SMS is priced as an SMS to that country at the time it is created and charged then; a balance that
cannot cover it fails the SMS leg ``INSUFFICIENT_BALANCE`` (an MMS the provider refused was refunded in the
decision that failed it, so that money counts; an undelivered MMS is not refunded: the carrier took it). An
opt-out recorded since the MMS was accepted fails it ``RECIPIENT_OPTED_OUT``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from shared.carriers.provider import OPT_OUT_CODES
from shared.ports import DispatchTask, SpawnDecision
from shared.rules import ids
from shared.rules.errors import ErrorCode, message_for
from shared.rules.legs import new_leg, transition
from shared.rules.records import Leg, Rates, Tenant
from shared.rules.segments import count_segments
from shared.rules.status import Status
from shared.services import leg_changes, observe

if TYPE_CHECKING:
    from shared.ports import Runtime

# Failures that say the carrier could not take or deliver this MMS. Not: opt-outs, our own gates, the
# provider being unreachable or unsure (PROVIDER_UNAVAILABLE, PROVIDER_OUTCOME_UNKNOWN: the MMS may still
# arrive), canceled or expired legs.
CARRIER_FAILURES = frozenset({ErrorCode.DELIVERY_FAILED.value, ErrorCode.PROVIDER_REJECTED.value})
FAILED = frozenset({Status.FAILED, Status.UNDELIVERED})


def wants_failover(leg: Leg) -> bool:
    return (bool(leg.sms_failover) and leg.channel == "mms" and leg.status in FAILED
            and leg.error_code in CARRIER_FAILURES and leg.provider_error_code not in OPT_OUT_CODES)


def arm(leg: Leg | None) -> Leg | None:
    """The MMS leg a decision is about to write, with its failover linked and due if it just failed for a
    carrier reason (pure; a leg already linked is left as it is)."""
    if leg is None or leg.failover_message_id or not wants_failover(leg):
        return leg
    return leg.with_(failover_message_id=ids.failover_message_id(leg.id),
                     failover_due=leg.status_since or leg.updated_at)


def sms_leg(parent: Leg, now: dt.datetime) -> Leg:
    """The SMS failover leg of ``parent``, ``pending`` (pure)."""
    failover = parent.sms_failover or {}
    text = failover.get("text") or ""
    encoding, segments = count_segments(text)
    leg = new_leg(message_id=ids.failover_message_id(parent.id), leg_key=ids.failover_key(parent.id),
                  tenant_id=parent.tenant_id, group_id=None, to=parent.to,
                  from_=failover.get("from") or parent.from_, body=text, subject=None, media_urls=[],
                  channel="sms", encoding=encoding, segments=segments, scheduled_at=None,
                  webhook_url=parent.webhook_url, metadata=parent.metadata, request_id=parent.request_id, now=now)
    return leg.with_(failover_of=parent.id, webhook_failover_url=parent.webhook_failover_url,
                     request_dlr=parent.request_dlr, client_ref=parent.client_ref, delete_at=parent.delete_at)


def decide_spawn(parent: Leg | None, child_exists: bool, tenant: Tenant, rates: Rates | None, opted_out: bool,
                 now: dt.datetime) -> SpawnDecision:
    """Create the SMS failover of ``parent`` if it is due (pure): queued and charged, or failed by a gate."""
    if parent is None or parent.failover_due is None:
        return SpawnDecision(result="nothing due")
    cleared = parent.with_(failover_due=None, updated_at=now)
    if child_exists:  # cannot happen with one commit per spawn; if it does, the SMS exists: done
        return SpawnDecision(parent=cleared, result="already created")
    child = sms_leg(parent, now)
    hosted = tenant.senders.get(child.from_)
    child = child.with_(carrier=hosted.carrier if hosted else parent.carrier)
    price = rates.price("sms", child.segments) if rates else None
    error = None
    if opted_out:
        error = ErrorCode.RECIPIENT_OPTED_OUT
    elif price is None:
        error = ErrorCode.PRICE_UNAVAILABLE
    elif price > tenant.balance_micros:
        error = ErrorCode.INSUFFICIENT_BALANCE
    if error is not None or price is None:
        code = error or ErrorCode.PRICE_UNAVAILABLE
        failed = transition(child, Status.FAILED, cause=f"gate {code.value}", now=now, error_code=code.value,
                            error_message=message_for(code))
        return SpawnDecision(parent=cleared, child=failed, result=f"failed {code.value}")
    queued = transition(child, Status.QUEUED, cause=f"failover of {parent.id}", now=now, price_micros=price)
    return SpawnDecision(parent=cleared, child=queued, balance_micros=tenant.balance_micros - price,
                         result="queued")


def launch(rt: Runtime, message_id: str) -> str:
    """Create the SMS failover of MMS leg ``message_id`` if it is due, and its dispatch task. Never raises:
    whatever is not done now, the sweeper finishes (``failover_due`` stays set until the SMS leg exists)."""
    try:
        parent = rt.legs.get(message_id)
        if parent is None or parent.failover_due is None:
            return "nothing due"
        from shared.rules.phone import region_of  # phonenumbers: off dispatch's cold path, needed only here

        opted, prices = rt.accounts.gate_reads(parent.tenant_id, [parent.to], [region_of(parent.to) or "ZZ"])
        rates = prices.get(region_of(parent.to) or "ZZ")
        now = rt.now()
        spawned = leg_changes.spawn(rt, parent.id, ids.failover_message_id(parent.id), parent.tenant_id,
                                    lambda leg, exists, tenant: decide_spawn(leg, exists, tenant, rates,
                                                                             parent.to in opted, now))
    except Exception as exc:  # noqa: BLE001 - see the docstring
        observe.log_error("SMS failover not created yet; the sweeper will", message_id=message_id,
                          error=type(exc).__name__)
        return "deferred"
    child = spawned.child
    if child is None:
        return spawned.result
    if child.status is Status.QUEUED:
        try:
            rt.queue.enqueue_dispatch(DispatchTask(child.id, ids.task_name(child.leg_key)))
        except Exception as exc:  # noqa: BLE001 - the sweeper re-enqueues a queued leg without a task
            observe.log_error("dispatch task not created; the sweeper will re-enqueue", message_id=child.id,
                              error=type(exc).__name__)
    return spawned.result


def launch_if_due(rt: Runtime, leg: Leg | None) -> None:
    """After a commit that may have armed a failover: launch it now rather than at the next sweep."""
    if leg is not None and leg.failover_due is not None:
        launch(rt, leg.id)
