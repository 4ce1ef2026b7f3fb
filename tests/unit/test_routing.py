"""Carrier routing and health (pure): shared/rules/routing.py.

The rules, after GOV.UK Notify (alphagov/notifications-api), with this gateway's error burst:
- a leg goes to a carrier chosen at random weighted by the carriers' weights (send_to_providers.provider_to_use);
  a pin wins when the pinned carrier is available, else the choice fails; weight 0 is never chosen unless
  every available carrier weighs 0 (then the first declared);
- a carrier is slow when 15 % or more of the messages it was given in the last 15 minutes took 5 minutes or
  more to deliver, or are still undelivered 5 minutes or more after sending (scheduled_tasks /
  notifications_dao.is_delivery_slow_for_providers, ``slow_ratio >= 0.15``); it has an error burst with more
  than 50 errors in 60 s;
- a troubled carrier turns unhealthy and loses 10 points to the healthy carriers (provider_details_dao
  dao_reduce_sms_provider_priority), again at most every 10 minutes while the trouble lasts; after a quiet
  period it regains 10 points per quiet period up to its configured weight; the sum of weights never changes;
- a leg failed with a transient or permanent carrier error is retried once on another carrier; ambiguous and
  opt-out never are;
- a recipient always hears from the same sender among a carrier's numbers.

Expected numbers below are written from those rules, not read from the module's constants.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random

import pytest

from shared.rules.routing import (
    CarrierHealth,
    CarrierWeights,
    Change,
    HealthConfig,
    HealthSample,
    NoCarrierAvailable,
    PinnedCarrierUnavailable,
    Sent,
    assess,
    choose_carrier,
    effective_weights,
    failover_carrier,
    rebalance,
    sample,
    sticky_sender,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
BASE = {"telnyx": 70, "twilio": 30}
BOTH = frozenset(BASE)
NOTIFY = HealthConfig()  # the defaults are Notify's numbers (and the burst); min_messages is set where it matters
NO_FLOOR = HealthConfig(min_messages=1)  # Notify asks for no minimum number of messages


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


# -- choosing ------------------------------------------------------------------------------------------------
def test_weighted_choice_follows_70_30_within_2_points_over_10000_decisions():
    rng = random.Random(20260301)
    picks = [choose_carrier(BASE, rng.random(), pinned=None, available=BOTH) for _ in range(10_000)]
    share = picks.count("telnyx") / len(picks) * 100
    assert 68 <= share <= 72
    assert picks.count("telnyx") + picks.count("twilio") == 10_000


@pytest.mark.parametrize(("rand", "carrier"), [(0.0, "telnyx"), (0.699, "telnyx"), (0.7, "twilio"),
                                               (0.999999, "twilio")])
def test_the_random_number_falls_in_bands_laid_out_in_declared_order(rand, carrier):
    assert choose_carrier(BASE, rand, pinned=None, available=BOTH) == carrier
    # same bands from the validated record
    assert choose_carrier(CarrierWeights.of(BASE), rand, pinned=None, available=BOTH) == carrier


@pytest.mark.parametrize("rand", [-0.1, 1.0, 1.5])
def test_the_random_number_must_be_in_0_1(rand):
    with pytest.raises(ValueError, match="rand"):
        choose_carrier(BASE, rand, pinned=None, available=BOTH)


def test_a_pin_wins_when_available_whatever_its_weight():
    assert choose_carrier({"telnyx": 100, "twilio": 0}, 0.1, pinned="twilio", available=BOTH) == "twilio"
    assert choose_carrier(BASE, 0.99, pinned="telnyx", available=BOTH) == "telnyx"


def test_a_pin_to_an_unavailable_carrier_is_an_error_not_a_silent_move():
    with pytest.raises(PinnedCarrierUnavailable) as raised:
        choose_carrier(BASE, 0.1, pinned="twilio", available={"telnyx"})
    assert raised.value.carrier == "twilio"
    with pytest.raises(PinnedCarrierUnavailable):
        choose_carrier(BASE, 0.1, pinned="bandwidth", available=BOTH)


def test_a_carrier_of_weight_0_is_never_chosen():
    weights = {"telnyx": 100, "twilio": 0}
    rng = random.Random(7)
    assert {choose_carrier(weights, rng.random(), pinned=None, available=BOTH) for _ in range(2_000)} == {"telnyx"}
    assert {choose_carrier({"telnyx": 0, "twilio": 5}, r / 10, pinned=None, available=BOTH)
            for r in range(10)} == {"twilio"}


def test_all_weights_0_send_to_the_first_declared_available_carrier():
    assert choose_carrier({"telnyx": 0, "twilio": 0}, 0.9, pinned=None, available=BOTH) == "telnyx"
    assert choose_carrier({"twilio": 0, "telnyx": 0}, 0.1, pinned=None, available=BOTH) == "twilio"
    assert choose_carrier({"telnyx": 0, "twilio": 0}, 0.1, pinned=None, available={"twilio"}) == "twilio"


def test_only_available_carriers_are_chosen_and_none_available_is_an_error():
    assert {choose_carrier(BASE, r / 100, pinned=None, available={"twilio"}) for r in range(100)} == {"twilio"}
    # the weight 0 of the only available carrier: it is the first available, so it is the one
    assert choose_carrier({"telnyx": 100, "twilio": 0}, 0.5, pinned=None, available={"twilio"}) == "twilio"
    with pytest.raises(NoCarrierAvailable):
        choose_carrier(BASE, 0.5, pinned=None, available=set())
    with pytest.raises(NoCarrierAvailable):
        choose_carrier(BASE, 0.5, pinned=None, available={"bandwidth"})


@pytest.mark.parametrize("weight", [-1, 101, True, 1.5, "70"])
def test_a_weight_is_a_whole_number_from_0_to_100(weight):
    with pytest.raises(ValueError, match="weight"):
        choose_carrier({"telnyx": weight, "twilio": 30}, 0.5, pinned=None, available=BOTH)
    with pytest.raises(ValueError, match="weight"):
        CarrierWeights.of({"telnyx": weight})


def test_carrier_weights_is_an_ordered_validated_mapping():
    weights = CarrierWeights.of({"twilio": 30, "telnyx": 70})
    assert list(weights) == ["twilio", "telnyx"] and weights["telnyx"] == 70 and len(weights) == 2
    assert dict(weights) == {"twilio": 30, "telnyx": 70}
    with pytest.raises(KeyError):
        weights["bandwidth"]
    with pytest.raises(ValueError, match="twice"):
        CarrierWeights((("telnyx", 70), ("telnyx", 30)))


# -- moving weight -------------------------------------------------------------------------------------------
def test_rebalance_moves_points_and_keeps_the_sum():
    assert rebalance(BASE, "telnyx", 10, ["twilio"]) == {"telnyx": 60, "twilio": 40}
    three = {"a": 50, "b": 30, "c": 20}
    assert rebalance(three, "a", 11, ["b", "c"]) == {"a": 39, "b": 36, "c": 25}  # even split, remainder first
    assert rebalance(three, "c", 50, ["a"]) == {"a": 70, "b": 30, "c": 0}  # no more than it has
    assert rebalance({"a": 95, "b": 5}, "b", 5, ["a"]) == {"a": 100, "b": 0}
    assert rebalance({"a": 98, "b": 10, "c": 99}, "b", 10, ["a", "c"]) == {"a": 100, "b": 7, "c": 100}  # room
    assert rebalance(BASE, "telnyx", 10, []) == BASE  # nobody to take them
    assert rebalance(BASE, "telnyx", 10, ["telnyx"]) == BASE


def test_rebalance_refuses_nonsense():
    with pytest.raises(ValueError):
        rebalance(BASE, "telnyx", -10, ["twilio"])
    with pytest.raises(KeyError):
        rebalance(BASE, "bandwidth", 10, ["twilio"])
    with pytest.raises(KeyError):
        rebalance(BASE, "telnyx", 10, ["bandwidth"])


def test_effective_weights_apply_overrides_then_health():
    assert effective_weights(BASE, None, {}) == BASE
    assert effective_weights(BASE, {"twilio": 50}, {}) == {"telnyx": 70, "twilio": 50}
    assert effective_weights(BASE, {"bandwidth": 50}, {}) == BASE  # not deployed: cannot be used
    slow_telnyx = {"telnyx": CarrierHealth("telnyx", healthy=False, penalty=10)}
    assert effective_weights(BASE, None, slow_telnyx) == {"telnyx": 60, "twilio": 40}
    assert effective_weights(BASE, {"telnyx": 50, "twilio": 50}, slow_telnyx) == {"telnyx": 40, "twilio": 60}
    # the order of the deployment's weights is kept (it lays out the bands)
    assert list(effective_weights(BASE, {"twilio": 10}, slow_telnyx)) == ["telnyx", "twilio"]


def test_when_no_carrier_is_healthy_the_configured_weights_stand():
    # Notify: "If both providers are slow, don't do anything"
    both_bad = {c: CarrierHealth(c, healthy=False, penalty=10) for c in BASE}
    assert effective_weights(BASE, None, both_bad) == BASE


def test_a_penalty_moves_only_what_the_carrier_has_and_no_carrier_goes_past_100():
    health = {"twilio": CarrierHealth("twilio", healthy=False, penalty=30)}
    assert effective_weights(BASE, {"twilio": 20}, health) == {"telnyx": 90, "twilio": 0}
    assert effective_weights({"telnyx": 95, "twilio": 30}, None, health) == {"telnyx": 100, "twilio": 25}


def test_a_penalty_is_shared_by_the_healthy_carriers_only():
    base = {"telnyx": 50, "twilio": 30, "bandwidth": 20}
    health = {"telnyx": CarrierHealth("telnyx", healthy=False, penalty=20),
              "bandwidth": CarrierHealth("bandwidth", healthy=False, penalty=0)}
    assert effective_weights(base, None, health) == {"telnyx": 30, "twilio": 50, "bandwidth": 20}


# -- samples from delivery times and error instants ----------------------------------------------------------
def test_sample_counts_slow_deliveries_as_notify_does():
    now = T0
    sent = [
        Sent(now - minutes(15), now - minutes(14)),  # window start included: fast
        Sent(now - minutes(15) - seconds(1), now - minutes(5)),  # before the window: not counted
        Sent(now - minutes(10), now - minutes(10) + seconds(300)),  # exactly 5 min: slow
        Sent(now - minutes(10), now - minutes(10) + seconds(299)),  # fast
        Sent(now - minutes(5)),  # undelivered, 5 min since sent: slow
        Sent(now - minutes(4)),  # undelivered, 4 min: not (yet) slow
    ]
    got = sample("telnyx", sent, [], now, NOTIFY)
    assert got == HealthSample("telnyx", messages=5, slow=2, errors=0)


def test_sample_counts_errors_of_the_last_60_seconds():
    errors = [T0 - seconds(60)] + [T0 - seconds(s) for s in range(50)] + [T0 - seconds(61)]
    assert sample("twilio", [], errors, T0, NOTIFY).errors == 51


def test_an_impossible_sample_is_refused():
    with pytest.raises(ValueError):
        HealthSample("telnyx", messages=3, slow=4)


# -- health: slow ------------------------------------------------------------------------------------------
def _deliveries(total: int, slow: int, now: dt.datetime) -> list[Sent]:
    """``total`` messages sent in the last 15 min, ``slow`` of them took 6 min, the rest 1 min."""
    sent_at = now - minutes(12)
    return ([Sent(sent_at, sent_at + minutes(6)) for _ in range(slow)]
            + [Sent(sent_at, sent_at + minutes(1)) for _ in range(total - slow)])


def test_a_slow_carrier_turns_unhealthy_and_loses_10_points_with_a_reason():
    healthy = CarrierHealth("telnyx")
    seen = sample("telnyx", _deliveries(130, 30, T0), [], T0, NOTIFY)
    change = assess(healthy, seen, T0, NOTIFY, base=70)
    assert change == Change(
        after=CarrierHealth("telnyx", healthy=False, penalty=10, changed_at=T0, quiet_since=None,
                            reason="slow: 23 % of 130 messages took 300 s or more in 15 min"),
        points=-10, reason="slow: 23 % of 130 messages took 300 s or more in 15 min")
    assert change.carrier == "telnyx"
    assert effective_weights(BASE, None, {"telnyx": change.after}) == {"telnyx": 60, "twilio": 40}


@pytest.mark.parametrize(("total", "slow", "unhealthy"), [
    (100, 15, True),  # exactly 15 % counts (slow_ratio >= 0.15)
    (100, 14, False),
    (20, 3, True),  # 15 % again
    (1000, 149, False),  # 14.9 %
    (7, 7, True),  # no floor: every message slow
])
def test_the_slow_threshold_is_15_percent_inclusive(total, slow, unhealthy):
    change = assess(CarrierHealth("telnyx"), HealthSample("telnyx", total, slow), T0, NO_FLOOR, base=70)
    assert (change is not None and not change.after.healthy) is unhealthy


def test_a_floor_of_messages_keeps_a_thin_sample_from_moving_traffic():
    floor = HealthConfig(min_messages=20)
    assert assess(CarrierHealth("telnyx"), HealthSample("telnyx", 19, 19), T0, floor, base=70) is None
    change = assess(CarrierHealth("telnyx"), HealthSample("telnyx", 20, 3), T0, floor, base=70)
    assert change is not None and change.points == -10


# -- health: error bursts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("errors", "unhealthy"), [(50, False), (51, True)])
def test_an_error_burst_is_more_than_50_errors_in_60_seconds(errors, unhealthy):
    stamps = [T0 - seconds(i % 60) for i in range(errors)]
    change = assess(CarrierHealth("twilio"), sample("twilio", [], stamps, T0, NOTIFY), T0, NOTIFY, base=30)
    if not unhealthy:
        assert change is None
        return
    assert change is not None
    assert change.after.healthy is False and change.points == -10 and change.after.penalty == 10
    assert change.reason == "errors: 51 in 60 s"


def test_slow_and_burst_together_are_one_step_with_both_reasons():
    change = assess(CarrierHealth("telnyx"), HealthSample("telnyx", 100, 50, errors=57), T0, NO_FLOOR, base=70)
    assert change is not None and change.points == -10
    assert change.reason == "slow: 50 % of 100 messages took 300 s or more in 15 min; errors: 57 in 60 s"


# -- health: over time -----------------------------------------------------------------------------------------
SLOW = HealthSample("telnyx", 100, 40)
CLEAN = HealthSample("telnyx", 100, 0)


def test_continued_trouble_costs_10_more_points_every_10_minutes_never_beyond_the_weight():
    state = assess(CarrierHealth("telnyx"), SLOW, T0, NOTIFY, base=30)
    assert state is not None and state.after.penalty == 10
    assert assess(state.after, SLOW, T0 + minutes(9), NOTIFY, base=30) is None
    second = assess(state.after, SLOW, T0 + minutes(10), NOTIFY, base=30)
    assert second is not None and second.after.penalty == 20 and second.points == -10
    third = assess(second.after, SLOW, T0 + minutes(20), NOTIFY, base=25)
    assert third is not None and third.after.penalty == 25 and third.points == -5
    assert assess(third.after, SLOW, T0 + minutes(40), NOTIFY, base=25) is None


def test_recovery_needs_a_quiet_period_then_regains_10_points_per_period_up_to_the_weight():
    unhealthy = CarrierHealth("telnyx", healthy=False, penalty=20, reason="slow", changed_at=T0)
    quiet = assess(unhealthy, CLEAN, T0 + minutes(1), NOTIFY, base=70)
    assert quiet is not None and quiet.points == 0 and quiet.after.quiet_since == T0 + minutes(1)
    assert quiet.after.healthy is False and quiet.after.penalty == 20
    state = quiet.after
    assert assess(state, CLEAN, T0 + minutes(10), NOTIFY, base=70) is None  # quiet for 540 s only
    step1 = assess(state, CLEAN, T0 + minutes(11), NOTIFY, base=70)
    assert step1 is not None and step1.points == 10 and step1.reason == "recovered: quiet for 600 s"
    assert step1.after.healthy is True and step1.after.penalty == 10 and step1.after.changed_at == T0 + minutes(11)
    assert assess(step1.after, CLEAN, T0 + minutes(20), NOTIFY, base=70) is None  # 9 min since the last step
    step2 = assess(step1.after, CLEAN, T0 + minutes(21), NOTIFY, base=70)
    assert step2 is not None and step2.points == 10 and step2.reason == "recovered: quiet for 1200 s"
    assert step2.after.penalty == 0
    assert assess(step2.after, CLEAN, T0 + minutes(40), NOTIFY, base=70) is None  # back at its weight


def test_trouble_during_the_quiet_period_starts_it_again():
    state = CarrierHealth("telnyx", healthy=False, penalty=10, changed_at=T0, quiet_since=T0 + minutes(2))
    change = assess(state, SLOW, T0 + minutes(5), NOTIFY, base=70)
    assert change is not None and change.points == 0 and change.after.quiet_since is None
    assert change.reason.startswith("not quiet: slow: 40 %")
    # a carrier recovering (healthy, still penalised) that is troubled again turns unhealthy at once
    recovering = CarrierHealth("telnyx", healthy=True, penalty=10, changed_at=T0, quiet_since=T0)
    again = assess(recovering, SLOW, T0 + minutes(1), NOTIFY, base=70)
    assert again is not None and again.after.healthy is False and again.after.penalty == 20


def test_a_healthy_carrier_at_its_weight_has_nothing_to_store():
    assert assess(CarrierHealth("telnyx"), CLEAN, T0, NOTIFY, base=70) is None
    assert assess(CarrierHealth("telnyx"), HealthSample("telnyx"), T0, NOTIFY, base=70) is None  # no traffic


def test_the_sample_must_be_the_carriers_own():
    with pytest.raises(ValueError):
        assess(CarrierHealth("telnyx"), HealthSample("twilio"), T0, NOTIFY, base=70)


def test_weights_sum_stays_constant_through_trouble_and_recovery():
    health = {c: CarrierHealth(c) for c in BASE}
    telnyx_seen = []
    timeline = [(0, SLOW), (5, SLOW), (10, SLOW), (12, CLEAN), (20, CLEAN), (22, CLEAN), (30, CLEAN), (32, CLEAN),
                (45, CLEAN)]
    for minute, seen in timeline:
        now = T0 + minutes(minute)
        for carrier, base in BASE.items():
            this = seen if carrier == "telnyx" else HealthSample(carrier, 50, 0)
            change = assess(health[carrier], this, now, NOTIFY, base=base)
            if change is not None:
                health[carrier] = change.after
        weights = effective_weights(BASE, None, health)
        assert sum(weights.values()) == 100
        telnyx_seen.append(weights["telnyx"])
    assert telnyx_seen == [60, 60, 50, 50, 50, 60, 60, 70, 70]
    # and with a tenant's overrides the tenant's sum holds
    assert sum(effective_weights(BASE, {"telnyx": 20, "twilio": 20}, health).values()) == 40


# -- failover ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "failed_over", "available", "expected"), [
    ("transient", False, ["telnyx", "twilio"], "twilio"),
    ("permanent", False, ["telnyx", "twilio"], "twilio"),
    ("ambiguous", False, ["telnyx", "twilio"], None),  # the first carrier may have it: no double send
    ("opt_out", False, ["telnyx", "twilio"], None),  # the recipient said STOP
    ("accepted", False, ["telnyx", "twilio"], None),
    ("transient", True, ["telnyx", "twilio"], None),  # once only
    ("permanent", True, ["telnyx", "twilio"], None),
    ("transient", False, ["telnyx"], None),  # nowhere else to go
    ("transient", False, [], None),
    ("transient", False, ["twilio", "telnyx"], "twilio"),
])
def test_failover_rule_table(kind, failed_over, available, expected):
    assert failover_carrier("telnyx", kind, available, failed_over=failed_over) == expected


def test_failover_goes_to_the_first_other_available_carrier_and_knows_its_kinds():
    assert failover_carrier("twilio", "transient", ["telnyx", "twilio"], failed_over=False) == "telnyx"
    assert failover_carrier("a", "permanent", ["a", "c", "b"], failed_over=False) == "c"
    with pytest.raises(ValueError, match="kind"):
        failover_carrier("telnyx", "retry", ["twilio"], failed_over=False)


# -- sticky sender -------------------------------------------------------------------------------------------
SENDERS = ["+18005550001", "+18005550002", "+18005550003"]


def test_sticky_sender_is_the_same_every_time_and_whatever_the_order_of_senders():
    recipients = [f"+1415555{n:04d}" for n in range(300)]
    first = [sticky_sender(r, SENDERS) for r in recipients]
    assert first == [sticky_sender(r, list(reversed(SENDERS))) for r in recipients]
    assert first == [sticky_sender(r, SENDERS) for r in recipients]
    counts = {s: first.count(s) for s in SENDERS}
    assert all(60 <= n <= 140 for n in counts.values()), counts  # spread, not all on one number


def test_sticky_sender_is_a_sha256_rendezvous_so_stable_across_processes():
    # independent of Python's per-process hash(): written here from the rule, and one pinned value
    def expected(recipient: str) -> str:
        return max(SENDERS, key=lambda s: hashlib.sha256(f"{s}\x00{recipient}".encode()).digest())

    for n in range(50):
        recipient = f"+1212555{n:04d}"
        assert sticky_sender(recipient, SENDERS) == expected(recipient)
    assert sticky_sender("+14155550101", SENDERS) == "+18005550001"


def test_adding_a_sender_moves_only_recipients_to_the_new_one():
    recipients = [f"+1415555{n:04d}" for n in range(300)]
    before = {r: sticky_sender(r, SENDERS) for r in recipients}
    after = {r: sticky_sender(r, [*SENDERS, "+18005550004"]) for r in recipients}
    moved = [r for r in recipients if before[r] != after[r]]
    assert all(after[r] == "+18005550004" for r in moved)
    assert 0 < len(moved) < 150


def test_sticky_sender_needs_a_sender():
    with pytest.raises(ValueError):
        sticky_sender("+14155550101", [])
    assert sticky_sender("+14155550101", ["+18005550009"]) == "+18005550009"
