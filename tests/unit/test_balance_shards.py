"""Sharded balance and usage (shared/rules/balance.py): the overlay the gate sees, an accept's debit on one shard,
and the overspend bound, including a simulation of concurrent accepts under optimistic per-shard commits."""

from __future__ import annotations

import random

import pytest

from shared.rules import balance
from shared.rules.balance import Shard
from shared.rules.records import Tenant

DAY, YESTERDAY = "2026-12-01", "2026-11-30"


def test_overlay_sums_deltas_onto_the_base():
    tenant = Tenant(id="t", balance_micros=1_000_000)
    shards = [Shard(0, -20_000, DAY, 1), Shard(1, -40_000, DAY, 2), Shard(2, 5_000, DAY, 0), Shard(3)]
    seen = balance.overlay(tenant, shards)
    assert seen.balance_micros == 945_000
    assert seen.used_on(DAY) == 3


def test_overlay_counts_only_the_latest_day():
    tenant = Tenant(id="t", balance_micros=0, usage_day=YESTERDAY, usage_count=50)
    seen = balance.overlay(tenant, [Shard(0, 0, YESTERDAY, 7), Shard(1, 0, DAY, 2), Shard(2, 0, DAY, 3)])
    assert seen.used_on(DAY) == 5 and seen.used_on(YESTERDAY) == 0


def test_overlay_keeps_usage_from_the_tenant_document_of_the_same_day():
    # a tenant document written before the shards existed still counts
    tenant = Tenant(id="t", usage_day=DAY, usage_count=10)
    assert balance.overlay(tenant, [Shard(0, 0, DAY, 1)]).used_on(DAY) == 11
    assert balance.overlay(Tenant(id="t"), []).used_on(DAY) == 0


def test_debit_lands_the_difference_on_one_shard():
    seen = Tenant(id="t", balance_micros=100_000, usage_day=DAY, usage_count=4)
    after = balance.debit(seen, Shard(3, -10_000, DAY, 1), balance_micros=60_000, usage_day=DAY, usage_count=6)
    assert after == Shard(3, -50_000, DAY, 3)


def test_debit_on_a_shard_last_used_yesterday_starts_its_count_again():
    seen = Tenant(id="t", balance_micros=100_000, usage_day=YESTERDAY, usage_count=9)
    after = balance.debit(seen, Shard(1, -1, YESTERDAY, 9), balance_micros=80_000, usage_day=DAY, usage_count=1)
    assert after == Shard(1, -20_001, DAY, 1)


def test_debit_refuses_to_raise_a_balance():
    seen = Tenant(id="t", balance_micros=100)
    with pytest.raises(ValueError):
        balance.debit(seen, Shard(0), balance_micros=200, usage_day=DAY, usage_count=0)


def test_a_request_keeps_its_shard_and_requests_spread():
    assert balance.shard_for("req_abc") == balance.shard_for("req_abc")
    hits = [0] * balance.SHARDS
    for i in range(16_000):
        hits[balance.shard_for(f"req_{i}")] += 1
    assert min(hits) > 800 and max(hits) < 1200  # about 1,000 each


def test_plan_spends_on_one_shard_while_its_money_covers_it():
    base = Tenant(id="t", balance_micros=1_000_000)
    shards = [Shard(i, allot_micros=250_000) for i in range(4)]
    written = balance.plan(base, shards, 2, balance_micros=980_000, usage_day=DAY, usage_count=1)
    assert written == [Shard(2, -20_000, DAY, 1, allot_micros=250_000)]


def test_plan_deals_the_balance_again_when_the_shard_runs_short():
    base = Tenant(id="t", balance_micros=1_000_000)
    # shard 1 has 10,000 left; the others more; a 20,000 spend on shard 1 re-deals everything
    shards = [Shard(0, -100_000, DAY, 5, 250_000), Shard(1, -240_000, DAY, 12, 250_000),
              Shard(2, 0, None, 0, 250_000), Shard(3, -50_000, DAY, 2, 250_000)]
    left = 1_000_000 - 390_000 - 20_000
    written = balance.plan(base, shards, 1, balance_micros=left, usage_day=DAY, usage_count=20)
    assert [s.index for s in written] == [0, 1, 2, 3]
    assert sum(s.allot_micros for s in written) == 1_000_000  # exactly the base is assigned
    assert sum(s.available_micros for s in written) == left
    assert max(s.available_micros for s in written) - min(s.available_micros for s in written) <= 1
    assert written[1].delta_micros == -260_000 and written[1].usage_count == 13
    assert balance.overlay(base, written).balance_micros == left


def test_a_batch_deals_again_even_when_its_shard_could_pay():
    base = Tenant(id="t", balance_micros=1_000_000)
    shards = [Shard(i, allot_micros=250_000) for i in range(4)]
    written = balance.plan(base, shards, 2, balance_micros=980_000, usage_day=DAY, usage_count=1, every_shard=True)
    # every shard written (its commit conditioned on all of them), the spend and the count still exact
    assert [s.index for s in written] == [0, 1, 2, 3]
    overlaid = balance.overlay(base, written)
    assert (overlaid.balance_micros, overlaid.used_on(DAY)) == (980_000, 1)


def test_the_first_accept_deals_a_fresh_balance():
    base = Tenant(id="t", balance_micros=160)
    written = balance.plan(base, [Shard(i) for i in range(16)], 5, balance_micros=150, usage_day=DAY, usage_count=1)
    assert len(written) == 16 and sorted(s.available_micros for s in written) == [9] * 10 + [10] * 6


def test_a_top_up_is_dealt_at_the_next_re_deal():
    shards = [Shard(i, -10, DAY, 1, 10) for i in range(4)]  # all spent
    topped = Tenant(id="t", balance_micros=40 + 1_000)  # base raised by 1,000
    assert balance.overlay(topped, shards).balance_micros == 1_000
    written = balance.plan(topped, shards, 0, balance_micros=990, usage_day=DAY, usage_count=5)
    assert sum(s.available_micros for s in written) == 990


def test_plan_refuses_a_spend_beyond_the_balance():
    with pytest.raises(ValueError):
        balance.plan(Tenant(id="t", balance_micros=10), [Shard(0)], 0, balance_micros=-5, usage_day=DAY,
                     usage_count=1)


def test_quota_overshoot_bound():
    assert balance.quota_overshoot_bound(20, shards=16) == 300
    assert balance.quota_overshoot_bound(20, shards=1) == 0


def _simulate(shards: int, base: int, prices: list[int], rounds: int, seed: int) -> tuple[int, int]:
    """Waves of concurrent accepts: each decides on a snapshot of all shards (the gate refuses when the seen
    balance cannot cover the price) and commits only if every shard it writes is unchanged since it read (the
    conditioned writes); a conflict retries in a later wave with a fresh read. Returns the final balance and
    the amount accepted."""
    rng = random.Random(seed)
    state = [Shard(i) for i in range(shards)]
    versions = [0] * shards
    tenant = Tenant(id="t", balance_micros=base)
    spent = 0
    for _ in range(rounds):
        wave = [(rng.randrange(10**9), rng.choice(prices), list(state), list(versions))
                for _ in range(rng.randint(1, 3 * shards))]
        for key, price, snapshot, seen_versions in wave:
            seen = balance.overlay(tenant, snapshot)
            if seen.balance_micros < price:
                continue
            written = balance.plan(tenant, snapshot, balance.shard_for(f"req_{key}", shards),
                                   seen.balance_micros - price, DAY, seen.used_on(DAY) + 1)
            if any(versions[s.index] != seen_versions[s.index] for s in written):
                continue
            for s in written:
                state[s.index] = s
                versions[s.index] += 1
            spent += price
    return balance.overlay(tenant, state).balance_micros, spent


@pytest.mark.parametrize("seed", range(25))
def test_concurrent_accepts_never_spend_more_than_the_balance(seed):
    final, spent = _simulate(shards=8, base=1_000_000, prices=[20_000, 40_000, 7_000, 400_000], rounds=150,
                             seed=seed)
    assert final >= 0
    assert final == 1_000_000 - spent
    assert final < 7_000  # nothing is left unspendable: each price the gate saw fit was taken in the end


def test_a_charge_that_counts_no_message_leaves_the_usage_alone():
    seen = Tenant(id="t", balance_micros=100_000, usage_day=DAY, usage_count=4)
    assert balance.debit(seen, Shard(2, 0, YESTERDAY, 3), balance_micros=95_000, usage_day=None,
                         usage_count=0) == Shard(2, -5_000, YESTERDAY, 3)
