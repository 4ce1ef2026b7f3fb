"""Carrier routing and carrier health (pure rules): which carrier a leg is sent through, how a slow or erroring
carrier loses weight and regains it, which carrier a failed leg is retried on, and which of a carrier's
numbers a recipient hears from.

Modelled on GOV.UK Notify (alphagov/notifications-api):

- choice: ``app/delivery/send_to_providers.py`` ``provider_to_use`` picks an active provider at random,
  weighted by its priority (``random.choices(active_providers, weights=[p.priority ...])``); a requested
  provider wins when it is allowed, else the send fails. Here the random number is the caller's (a uniform
  float in [0, 1)), so a choice is deterministic for a given number.
- slowness: ``app/celery/scheduled_tasks.py`` ``switch_current_sms_provider_on_slow_delivery`` asks
  ``is_delivery_slow_for_providers(created_within_minutes=15, delivered_within_minutes=5, threshold=0.15)``
  (``app/dao/notifications_dao.py``): of the messages a provider was given in the last 15 minutes (delivered,
  or still sending/pending), those that took 5 minutes or more to deliver (``>= delivery_time``), or are still
  undelivered 5 minutes or more after they were sent, are slow; the provider is slow when
  ``slow_ratio >= threshold``. Notify asks for no minimum number of messages; ``HealthConfig.min_messages``
  is this gateway's floor, so that one slow MMS out of three does not move traffic.
- errors: Notify lowers a provider whose send errors exceed a rate limit (``send_to_providers``:
  ``redis_store.exceeded_rate_limit(f"{provider.name}-error-rate", SMS_PROVIDER_ERROR_THRESHOLD,
  SMS_PROVIDER_ERROR_INTERVAL)``); here the burst is more than 50 carrier errors in 60 s.
- weight: ``app/dao/provider_details_dao.py`` ``dao_reduce_sms_provider_priority`` takes 10 points from the
  provider and gives them to the other ("always keep values between 0 and 100"), at most once per
  ``time_threshold`` (10 minutes for slowness); ``dao_adjust_provider_priority_back_to_resting_points``
  moves priorities back by 10 towards their resting points when nothing changed for a while (an hour there;
  ``HealthConfig.quiet_period`` here). Notify does nothing when every provider is slow; here the points of
  an unhealthy carrier go only to healthy ones, so with none healthy the weights stay as configured.

The state kept per carrier is a ``CarrierHealth``: healthy or not, and the ``penalty`` (points moved away
from it). The weights a send uses are derived: ``effective_weights`` applies a tenant's overrides to the
deployment's weights, then moves each carrier's penalty to the healthy carriers, keeping the sum. Storing the
penalty rather than a weight keeps the state right when the deployment's weights or a tenant's overrides
change.

Kinds of carrier outcome are compared on their string values (``shared/carriers/provider.py`` ``Kind``; the
rules room does not import carriers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace

from shared.rules.frozen import frozen

MAX_WEIGHT = 100

# shared/carriers/provider.py Kind values
ACCEPTED, TRANSIENT, PERMANENT, OPT_OUT, AMBIGUOUS = "accepted", "transient", "permanent", "opt_out", "ambiguous"
KINDS = frozenset({ACCEPTED, TRANSIENT, PERMANENT, OPT_OUT, AMBIGUOUS})
# A leg failed with one of these is retried once on another carrier. Not ambiguous (the first carrier may
# have the message: a second send could deliver it twice), not opt_out (the recipient said STOP), not accepted.
FAILS_OVER = frozenset({TRANSIENT, PERMANENT})


class NoCarrierAvailable(LookupError):
    """No carrier with a weight is available for the leg."""


class PinnedCarrierUnavailable(LookupError):
    """The leg is pinned to a carrier that is not available; a pin is never silently moved."""

    def __init__(self, carrier: str) -> None:
        super().__init__(f"pinned carrier {carrier!r} is not available")
        self.carrier = carrier


def _check_weight(carrier: str, weight: object) -> int:
    if not isinstance(carrier, str) or not carrier:
        raise ValueError(f"carrier name must be a non-empty string, got {carrier!r}")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight of {carrier!r} must be a whole number from 0 to {MAX_WEIGHT}, got {weight!r}")
    return weight


def _checked(weights: Mapping[str, int]) -> dict[str, int]:
    return {carrier: _check_weight(carrier, weight) for carrier, weight in weights.items()}


@frozen
class CarrierWeights(Mapping[str, int]):
    """Weights by carrier name, each 0..100, in a declared order (the first is the primary: it takes the
    traffic when every weight is 0). Validated once; a plain mapping works wherever one is taken."""

    pairs: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        names = [carrier for carrier, _ in self.pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"carrier named twice in {names}")
        for carrier, weight in self.pairs:
            _check_weight(carrier, weight)

    @classmethod
    def of(cls, weights: Mapping[str, int]) -> CarrierWeights:
        return cls(tuple(weights.items()))

    def __getitem__(self, carrier: str) -> int:
        for name, weight in self.pairs:
            if name == carrier:
                return weight
        raise KeyError(carrier)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


@frozen
class CarrierHealth:
    """One carrier's health as last assessed. ``penalty``: points moved away from its configured weight
    (0..100, steps of ``HealthConfig.step``). ``changed_at``: when its health or penalty last changed (None:
    never). ``quiet_since``: since when its samples show neither slowness nor an error burst (None: not
    quiet now, or nothing to recover from)."""

    carrier: str
    healthy: bool = True
    penalty: int = 0
    reason: str = ""
    changed_at: dt.datetime | None = None
    quiet_since: dt.datetime | None = None
    # an error burst opens the carrier's circuit: no new send is routed to it (weight aside) until its samples
    # are quiet again. Slowness only moves weight; an outage must stop traffic within one assessment.
    tripped: bool = False


@frozen
class Sent:
    """One message a carrier accepted: when, and when its delivery report said delivered (None: not yet).
    Messages that failed are left out, as Notify counts only delivered, sending and pending ones."""

    sent_at: dt.datetime
    delivered_at: dt.datetime | None = None


@frozen
class HealthSample:
    """What the last windows show for one carrier: ``messages`` it was given in the slow window, how many of
    them were ``slow``, and its ``errors`` in the burst window."""

    carrier: str
    messages: int = 0
    slow: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.slow <= self.messages or self.errors < 0:
            raise ValueError(f"impossible sample {self}")


@frozen
class HealthConfig:
    """The thresholds (defaults: Notify's numbers, and the error burst)."""

    window: dt.timedelta = dt.timedelta(minutes=15)  # created_within_minutes=15
    slow_after: dt.timedelta = dt.timedelta(minutes=5)  # delivered_within_minutes=5 (>=)
    slow_percent: int = 15  # threshold=0.15 (slow_ratio >= threshold)
    min_messages: int = 20  # this gateway's floor; Notify has none
    burst_window: dt.timedelta = dt.timedelta(seconds=60)
    burst_errors: int = 50  # a burst is MORE than this many errors in burst_window
    step: int = 10  # amount_to_reduce_by
    restep_after: dt.timedelta = dt.timedelta(minutes=10)  # time_threshold of the slow-delivery task
    quiet_period: dt.timedelta = dt.timedelta(minutes=10)  # between recovery steps (Notify: an hour)


@frozen
class Change:
    """What ``assess`` asks to store for one carrier (``after``), the weight points it lost (< 0) or
    regained (> 0) in doing so (0: only its state changed), and why, for logs and metrics."""

    after: CarrierHealth
    points: int
    reason: str

    @property
    def carrier(self) -> str:
        return self.after.carrier


# -- choosing -------------------------------------------------------------------------------------------------
def choose_carrier(weights: Mapping[str, int], rand: float, *, pinned: str | None,
                   available: Collection[str]) -> str:
    """The carrier for one leg. A pin wins when the pinned carrier is available (whatever its weight), else
    ``PinnedCarrierUnavailable``. Otherwise a weighted choice among the carriers of ``weights`` that are
    available: ``rand`` (uniform in [0, 1)) falls in one carrier's band, bands laid out in the order of
    ``weights``; a carrier of weight 0 is never chosen, unless every available one weighs 0, when the first
    available in that order is. ``NoCarrierAvailable`` when no carrier of ``weights`` is available."""
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand!r}")
    if pinned is not None:
        if pinned in available:
            return pinned
        raise PinnedCarrierUnavailable(pinned)
    candidates = [(carrier, weight) for carrier, weight in _checked(weights).items() if carrier in available]
    if not candidates:
        raise NoCarrierAvailable(f"none of {sorted(weights)} is available (available: {sorted(available)})")
    total = sum(weight for _, weight in candidates)
    if total == 0:
        return candidates[0][0]
    point = min(int(rand * total), total - 1)
    upto = 0
    for carrier, weight in candidates:
        upto += weight
        if point < upto:
            return carrier
    raise AssertionError("unreachable: point < total")  # pragma: no cover


def rebalance(weights: Mapping[str, int], source: str, points: int, recipients: Sequence[str]) -> dict[str, int]:
    """``weights`` with up to ``points`` moved from ``source`` to ``recipients``, one point at a time round the
    recipients in their order (an even split, the remainder to the first), none above 100. What ``source``
    does not have, or no recipient has room for, stays where it is: the sum never changes."""
    moved = _checked(weights)
    if source not in moved:
        raise KeyError(source)
    if points < 0:
        raise ValueError(f"points must not be negative, got {points}")
    takers = list(dict.fromkeys(r for r in recipients if r != source))
    unknown = [r for r in takers if r not in moved]
    if unknown:
        raise KeyError(unknown[0])
    left = min(points, moved[source])
    while left:
        open_ = [r for r in takers if moved[r] < MAX_WEIGHT]
        if not open_:
            break
        for taker in open_:
            if not left:
                break
            moved[taker] += 1
            moved[source] -= 1
            left -= 1
    return moved


def effective_weights(base: Mapping[str, int], overrides: Mapping[str, int] | None,
                      health: Mapping[str, CarrierHealth]) -> dict[str, int]:
    """The weights a send uses, in the order of ``base`` (the deployment's): a tenant's ``overrides`` replace
    the deployment's weight of the carriers they name (a carrier the deployment does not have is ignored: it
    cannot be sent through), then each carrier's penalty, in that order, moves to the carriers that are
    healthy (``rebalance``). A carrier with no health record is healthy with no penalty. The sum of the
    weights is that of the deployment's with the tenant's overrides. Weights are preferences: a carrier a
    tenant must never use is kept out of ``available`` (``choose_carrier``), not given weight 0."""
    weights = _checked(base)
    for carrier, weight in _checked(overrides or {}).items():
        if carrier in weights:
            weights[carrier] = weight
    healthy = [carrier for carrier in weights if carrier not in health or health[carrier].healthy]
    for carrier in list(weights):
        record = health.get(carrier)
        if record is not None and record.penalty > 0:
            weights = rebalance(weights, carrier, record.penalty, healthy)
    return weights


# -- health ---------------------------------------------------------------------------------------------------
def sample(carrier: str, sent: Iterable[Sent], error_times: Iterable[dt.datetime], now: dt.datetime,
           config: HealthConfig) -> HealthSample:
    """Count a carrier's sample from its messages and error instants. A message counts when sent within
    ``config.window`` of ``now`` (the start included, as Notify's ``created_at >= created_since``); it is
    slow when delivered ``slow_after`` or more after it was sent, or not delivered and sent ``slow_after``
    or more ago. An error counts when at most ``burst_window`` old (a clock a little ahead counts too)."""
    messages = slow = 0
    for message in sent:
        if now - message.sent_at > config.window:
            continue
        messages += 1
        end = message.delivered_at if message.delivered_at is not None else now
        if end - message.sent_at >= config.slow_after:
            slow += 1
    errors = sum(1 for at in error_times if now - at <= config.burst_window)
    return HealthSample(carrier=carrier, messages=messages, slow=slow, errors=errors)


def _seconds(span: dt.timedelta) -> str:
    return f"{int(span.total_seconds())} s"


def _minutes(span: dt.timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{int(minutes)} min" if minutes == int(minutes) else _seconds(span)


def troubles(sample: HealthSample, config: HealthConfig) -> list[str]:
    """Why the sample shows the carrier unhealthy (empty: it does not). Slow: ``slow_percent`` % or more of at
    least ``min_messages`` messages were slow (exactly 15 % counts). Burst: more than ``burst_errors``
    errors (exactly 50 does not)."""
    found = []
    if sample.messages >= max(config.min_messages, 1) and sample.slow * 100 >= config.slow_percent * sample.messages:
        found.append(f"slow: {sample.slow * 100 // sample.messages} % of {sample.messages} messages took "
                     f"{_seconds(config.slow_after)} or more in {_minutes(config.window)}")
    if sample.errors > config.burst_errors:
        found.append(f"errors: {sample.errors} in {_seconds(config.burst_window)}")
    return found


def assess(current: CarrierHealth, sample: HealthSample, now: dt.datetime, config: HealthConfig, *,
           base: int) -> Change | None:
    """One carrier's next health from its latest sample (None: nothing to store). ``base`` is its configured
    weight, the most it can lose and what it recovers to.

    - troubled (``troubles``): a healthy carrier turns unhealthy and loses ``step`` points; an unhealthy one
      loses ``step`` more once ``restep_after`` has passed since its last change, never beyond ``base``;
      either way its quiet period is over;
    - quiet: an unhealthy carrier, or one still below its weight, is quiet from the first clean sample on;
      after ``quiet_period`` of quiet (and as long since its last change) it is healthy again and regains
      ``step`` points, one step per ``quiet_period``, up to its weight."""
    if sample.carrier != current.carrier:
        raise ValueError(f"sample of {sample.carrier!r} assessed for {current.carrier!r}")
    _check_weight(current.carrier, base)
    found = troubles(sample, config)
    if found:
        reason = "; ".join(found)
        due = current.changed_at is None or now - current.changed_at >= config.restep_after
        points = min(config.step, max(base - current.penalty, 0))
        burst = sample.errors > config.burst_errors
        if current.healthy or (due and points > 0):
            after = replace(current, healthy=False, penalty=current.penalty + points, reason=reason,
                            changed_at=now, quiet_since=None, tripped=burst)
            return Change(after=after, points=-points, reason=reason)
        if current.quiet_since is not None or current.tripped != burst:
            return Change(after=replace(current, quiet_since=None, tripped=burst), points=0,
                          reason=f"not quiet: {reason}")
        return None
    if current.healthy and current.penalty == 0:
        return None
    if current.quiet_since is None:
        return Change(after=replace(current, quiet_since=now, tripped=False), points=0,
                      reason="quiet: no slowness and no error burst")
    since_change = now - current.changed_at if current.changed_at is not None else now - current.quiet_since
    quiet_for = now - current.quiet_since
    if min(quiet_for, since_change) < config.quiet_period:
        return None
    points = min(config.step, current.penalty)
    reason = f"recovered: quiet for {_seconds(quiet_for)}"
    after = replace(current, healthy=True, penalty=current.penalty - points, reason=reason, changed_at=now)
    return Change(after=after, points=points, reason=reason)


# -- failover and senders -----------------------------------------------------------------------------------
def failover_carrier(first: str, kind: str, available: Sequence[str], *, failed_over: bool) -> str | None:
    """The carrier a leg that failed on ``first`` with ``kind`` is retried on, once: the first of
    ``available`` that is not ``first``. None when the kind does not fail over (ambiguous, opt_out,
    accepted), when the leg has already failed over, or when no other carrier is available."""
    if kind not in KINDS:
        raise ValueError(f"unknown outcome kind {kind!r} (one of {sorted(KINDS)})")
    if kind not in FAILS_OVER or failed_over:
        return None
    return next((carrier for carrier in available if carrier != first), None)


def _score(sender: str, recipient: str) -> bytes:
    return hashlib.sha256(f"{sender}\x00{recipient}".encode()).digest()


def sticky_sender(recipient: str, senders: Sequence[str]) -> str:
    """The sender a recipient always hears from among a carrier's ``senders``: the one whose SHA-256 with the
    recipient scores highest (rendezvous hashing). The same in every process and whatever the order of
    ``senders``; adding or removing a sender moves only the recipients that gain or lose it."""
    if not senders:
        raise ValueError("no sender to choose from")
    return max(senders, key=lambda sender: (_score(sender, recipient), sender))

