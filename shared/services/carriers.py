"""Which carrier carries a send, the one a failed leg moves to, and how healthy each carrier is.

- ``route`` (at accept): a request that names its sender goes through the carrier hosting that number (a number
  is hosted where it is hosted). Otherwise the carrier is drawn at random by weight (the deployment's
  ``CARRIER_WEIGHTS``, then the tenant's own, then health: shared/rules/routing.py, after GOV.UK Notify) among the
  carriers that are configured and hold a sender of the tenant for the channel, and the sender is that carrier's:
  the tenant's default sender when it is one, else the same sender per recipient (``sticky_sender``). A request
  may pin a carrier (``"carrier": "twilio"``).
- ``alternative`` (at dispatch): the carrier and sender a leg moves to after a transient or permanent carrier
  error (once per leg; never after an ambiguous attempt until absence is proven, never for an opt-out).
- ``assess`` (the sweeper, every run): each carrier's health from its last minutes of traffic; every change
  is logged with its reason and exported as the ``carrier.health`` metric.

With one carrier configured (the default: Telnyx alone) nothing here reads or writes anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import TYPE_CHECKING

from shared.rules import routing
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.frozen import frozen
from shared.rules.media import MediaLimit
from shared.services import observe

if TYPE_CHECKING:
    from shared.ports import Runtime
    from shared.rules.records import Leg, Tenant

CARRIERS = ("telnyx", "twilio")  # every carrier mmsgate has an adapter for, in the order ties fall back to
HEALTH = routing.HealthConfig()


@frozen
class Route:
    carrier: str
    sender: str


def configured(rt: Runtime) -> tuple[str, ...]:
    """The carriers this deployment has credentials for: Telnyx always, Twilio once its account SID is set."""
    return tuple(c for c in CARRIERS if c == "telnyx" or (c == "twilio" and rt.settings.twilio_account_sid))


def _senders(tenant: Tenant, carrier: str, channel: str) -> list[str]:
    return sorted(n for n, caps in tenant.senders.items() if caps.carrier == carrier and caps.allows(channel))


def _pin_error(carrier: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                    details=[{"field": "carrier", "issue": f"{carrier}: {issue}"}])


def route(rt: Runtime, tenant: Tenant, sender: str | None, pinned: str | None, channel: str,
          recipient: str | None) -> Route:
    """The carrier and sender of a request (a shape error raises 400; a sender the tenant does not hold is
    left for the sender gate to refuse, as before there were carriers)."""
    if pinned is not None and pinned not in configured(rt):
        raise _pin_error(pinned, "not a carrier of this deployment")
    if sender:
        caps = tenant.senders.get(sender)
        carrier = caps.carrier if caps else "telnyx"
        if pinned is not None and caps is not None and pinned != carrier:
            raise _pin_error(pinned, f"the sender {sender} is hosted at {carrier}")
        return Route(carrier, sender)
    available = [c for c in configured(rt) if _senders(tenant, c, channel)]
    if pinned is not None:
        if pinned not in available:
            raise _pin_error(pinned, f"this account has no {channel.upper()} sender there")
        available = [pinned]
    if not available:
        return Route("telnyx", tenant.default_from or "")
    carrier = available[0] if len(available) == 1 else _draw(rt, tenant, available)
    senders = _senders(tenant, carrier, channel)
    if tenant.default_from in senders:
        return Route(carrier, tenant.default_from or "")
    return Route(carrier, routing.sticky_sender(recipient or "", senders))


def _draw(rt: Runtime, tenant: Tenant, available: list[str]) -> str:
    health = rt.carriers.health()
    open_circuit = {c for c, h in health.items() if h.tripped}
    candidates = [c for c in available if c not in open_circuit] or available
    weights = routing.effective_weights(
        {c: rt.settings.carrier_weights.get(c, 0) for c in CARRIERS}, tenant.carrier_weights or None, health)
    try:
        return routing.choose_carrier({c: weights.get(c, 0) for c in candidates}, random.random(), pinned=None,
                                      available=candidates)
    except routing.NoCarrierAvailable:
        return candidates[0]


def alternative(rt: Runtime, leg: Leg, kind: str) -> Route | None:
    """Where ``leg`` goes after its carrier failed it with ``kind`` (a ``Kind`` value), or None: stay."""
    if leg.conversation_id or leg.direction != "outbound":
        return None
    others = [c for c in configured(rt) if c != leg.carrier]
    if not others:
        return None
    carrier = routing.failover_carrier(leg.carrier, kind, [leg.carrier, *others],
                                       failed_over=leg.carrier_failed_over_from is not None)
    if carrier is None:
        return None
    tenant = rt.accounts.get_tenant(leg.tenant_id, balance=False)
    senders = _senders(tenant, carrier, leg.channel) if tenant else []
    if tenant and leg.media:
        # the media was made to fit the first sender's kind: a sender whose kind allows less (a toll-free number
        # after a long code) would have it refused by the recipient's carrier
        total = sum(m.size for m in leg.media)
        senders = [n for n in senders if total < MediaLimit.for_sender(tenant.senders[n].kind,
                                                                        rt.settings.media_max_bytes).max_bytes]
    if not senders:
        return None
    return Route(carrier, routing.sticky_sender(leg.to, senders))


def count(rt: Runtime, carrier: str, field: str, at: dt.datetime) -> None:
    """One more message given to / delivered fast by / failed at a carrier, when health is assessed at all."""
    if len(configured(rt)) > 1:
        rt.carriers.count(carrier, field, at)


def assess(rt: Runtime) -> list[routing.Change]:
    """Every configured carrier's health from its last minutes; the changes, stored, logged and exported."""
    carriers = configured(rt)
    if len(carriers) < 2:
        return []
    now = rt.now()
    known = rt.carriers.health()
    config = health_config(rt)
    changes = []
    for carrier in carriers:
        current = known.get(carrier) or routing.CarrierHealth(carrier=carrier)
        change = routing.assess(current, sample(rt, carrier, now, config), now, config,
                                base=rt.settings.carrier_weights.get(carrier, 0))
        if change is None:
            continue
        rt.carriers.save_health(change.after)
        changes.append(change)
        observe.log_warning("carrier health changed", carrier=carrier, healthy=change.after.healthy,
            penalty=change.after.penalty, tripped=change.after.tripped, reason=change.reason)
        observe.metric("carrier.health", carrier=carrier, healthy=int(change.after.healthy),
                       penalty=change.after.penalty, tripped=int(change.after.tripped), reason=change.reason)
    return changes


def health_config(rt: Runtime) -> routing.HealthConfig:
    """Notify's rules, with the deployment's error burst (CARRIER_ERROR_BURST: 50 errors in 60 s by default)."""
    errors, seconds = rt.settings.carrier_error_burst
    return dataclasses.replace(HEALTH, burst_errors=errors, burst_window=dt.timedelta(seconds=seconds))


def sample(rt: Runtime, carrier: str, now: dt.datetime, config: routing.HealthConfig) -> routing.HealthSample:
    """Notify's sample from the counters: messages given in the last ``window``; of those old enough to have
    been slow, the ones not delivered within ``slow_after``; errors in the burst window (to ten seconds)."""
    slots = rt.carriers.slots(carrier, now - config.window, now)
    messages = sum(s.given for s in slots)
    ripe = [s for s in slots if s.start + dt.timedelta(minutes=1) + config.slow_after <= now]
    slow = sum(max(0, s.given - s.fast) for s in ripe)
    errors = rt.carriers.errors(carrier, now - config.burst_window, now)
    return routing.HealthSample(carrier=carrier, messages=messages, slow=min(slow, messages), errors=errors)
