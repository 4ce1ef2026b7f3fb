"""A single send reads one balance shard (shared/rules/balance.py ``one_shard_view``, ``decided_alone``) and the daily
quota is dealt to the shards like the money (``deal``): what the one shard allows the exact balance and quota
allow, a decision that refuses for the account's limits is taken again on every shard, and under concurrent
accepts that each read only their own shard the balance is never overspent and the quota never exceeded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from shared.rules import balance
from shared.rules.balance import Shard
from shared.rules.errors import ErrorCode
from shared.rules.records import Leg, Tenant

DAY, TOMORROW = "2026-12-01", "2026-12-02"


def _leg(error: str | None = None) -> Leg:
    return Leg(id="msg_1", leg_key="single:msg_1", tenant_id="t", to="+15550100", from_="+15550199", channel="sms",
               encoding="GSM-7", segments=1, request_id="req_1", created_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
               error_code=error)


# -- the view of one shard ---------------------------------------------------------------------------
def test_the_view_of_one_shard_is_its_own_money():
    base = Tenant(id="t", balance_micros=1_000_000)
    view = balance.one_shard_view(base, Shard(3, -20_000, DAY, 4, allot_micros=62_500))
    assert (view.balance_micros, view.daily_quota, view.used_on(DAY)) == (42_500, None, 4)


def test_under_a_quota_the_view_is_the_shards_share_of_it():
    base = Tenant(id="t", balance_micros=1_000_000, daily_quota=160)
    shard = Shard(1, 0, DAY, 7, 62_500, quota_day=DAY, quota_allot=10, quota_of=160)
    view = balance.one_shard_view(base, shard)
    assert (view.daily_quota, view.used_on(DAY)) == (10, 7)
    # dealt from another quota (the operator changed it since): the shard has no share of this one
    assert balance.one_shard_view(dataclasses.replace(base, daily_quota=500), shard).daily_quota == 0


def test_a_decision_that_accepts_on_the_shard_alone_stands():
    base = Tenant(id="t", balance_micros=1_000_000)
    assert balance.decided_alone(base, Shard(0, allot_micros=10), [_leg()], DAY)
    # a refusal the account's limits did not cause stands too (the other shards change nothing for it)
    assert balance.decided_alone(base, Shard(0), [_leg(ErrorCode.RECIPIENT_OPTED_OUT.value)], DAY)


@pytest.mark.parametrize("code", [ErrorCode.INSUFFICIENT_BALANCE, ErrorCode.QUOTA_EXCEEDED])
def test_a_refusal_for_the_balance_or_the_quota_is_taken_again_on_every_shard(code):
    base = Tenant(id="t", balance_micros=1_000_000, daily_quota=100)
    shard = Shard(0, quota_day=DAY, quota_allot=6, quota_of=100)
    assert not balance.decided_alone(base, shard, [_leg(code.value)], DAY)


def test_a_quota_share_of_another_day_or_quota_cannot_decide():
    base = Tenant(id="t", balance_micros=1_000_000, daily_quota=100)
    shard = Shard(0, quota_day=DAY, quota_allot=6, quota_of=100)
    assert balance.decided_alone(base, shard, [_leg()], DAY)
    assert not balance.decided_alone(base, shard, [_leg()], TOMORROW)
    assert not balance.decided_alone(dataclasses.replace(base, daily_quota=50), shard, [_leg()], DAY)
    assert not balance.decided_alone(base, Shard(0), [_leg()], DAY)  # never dealt a share
    assert balance.decided_alone(base, Shard(0), [_leg()], None)  # a charge that counts nothing


# -- the quota dealt out -----------------------------------------------------------------------------
def test_a_deal_shares_out_what_is_left_of_the_days_quota():
    base = Tenant(id="t", balance_micros=1_000, daily_quota=100, usage_day=DAY, usage_count=4)  # 4: the document's
    shards = [Shard(0, 0, DAY, 10), Shard(1, 0, DAY, 6), Shard(2, 0, "2026-11-30", 50), Shard(3)]
    dealt = balance.deal(base, shards, DAY)
    left = 100 - 4 - 16
    assert [s.quota_allot - s.used_on(DAY) for s in dealt] == [20, 20, 20, 20] and left == 80
    assert sum(s.quota_allot for s in dealt) == 100 - 4  # the shares and the counts: the quota less the document's
    assert all((s.quota_day, s.quota_of) == (DAY, 100) for s in dealt)


def test_a_deal_without_a_quota_deals_none():
    dealt = balance.deal(Tenant(id="t", balance_micros=40), [Shard(i) for i in range(4)], DAY)
    assert all(s.quota_day is None and s.quota_allot == 0 for s in dealt)


def test_a_deal_gives_no_room_beyond_the_quota():
    base = Tenant(id="t", daily_quota=10)
    dealt = balance.deal(base, [Shard(0, 0, DAY, 8), Shard(1, 0, DAY, 5)], DAY)
    assert [s.quota_allot for s in dealt] == [8, 5]  # 13 used already: nobody may count more


def test_plan_counts_on_one_shard_while_its_quota_share_covers_it():
    base = Tenant(id="t", balance_micros=1_000_000, daily_quota=100)
    shards = [Shard(i, 0, DAY, 2, 250_000, DAY, 25, 100) for i in range(4)]
    written = balance.plan(base, shards, 1, balance_micros=990_000, usage_day=DAY, usage_count=9)
    assert [s.index for s in written] == [1] and written[0].usage_count == 3


def test_plan_deals_again_when_the_quota_share_runs_out_or_is_of_another_day():
    base = Tenant(id="t", balance_micros=1_000_000, daily_quota=100)
    full = [Shard(i, 0, DAY, 25 if i == 1 else 2, 250_000, DAY, 25, 100) for i in range(4)]
    written = balance.plan(base, full, 1, balance_micros=990_000, usage_day=DAY, usage_count=32)
    assert len(written) == 4 and sum(s.quota_allot for s in written) == 100
    stale = [dataclasses.replace(s, quota_day=DAY) for s in full]
    written = balance.plan(base, stale, 0, balance_micros=990_000, usage_day=TOMORROW, usage_count=1)
    assert len(written) == 4 and {s.quota_day for s in written} == {TOMORROW}
    assert sum(s.quota_allot for s in written) == 100


def test_every_shard_money_stays_at_or_above_zero_and_within_the_balance():
    base = Tenant(id="t", balance_micros=1_000)
    shards = balance.deal(base, [Shard(i) for i in range(4)], DAY)
    for s in shards:
        assert 0 <= balance.one_shard_view(base, s).balance_micros <= balance.overlay(base, shards).balance_micros


# -- concurrent accepts, each reading its own shard ---------------------------------------------------
def _gate(view: Tenant, price: int) -> tuple[str | None, int, int]:
    """The accept's gate (shared/services/sending.gate) for one recipient: its refusal, the balance and usage after."""
    used = view.used_on(DAY)
    if view.daily_quota is not None and used + 1 > view.daily_quota:
        return ErrorCode.QUOTA_EXCEEDED.value, view.balance_micros, used
    if price > view.balance_micros:
        return ErrorCode.INSUFFICIENT_BALANCE.value, view.balance_micros, used
    return None, view.balance_micros - price, used + 1


def _simulate(shards: int, base: Tenant, prices: list[int], rounds: int, seed: int) -> tuple[Tenant, int, int, int]:
    """Waves of concurrent single sends. Each reads only its own shard (a snapshot of it and its version) and
    decides on its view; if the view cannot decide alone it reads every shard (a later snapshot) and decides on
    the overlay, as infra/store/legs.py ``accept_one`` does. It commits only if every shard it writes is unchanged
    since it read it; a conflict is dropped (its retry is just another accept). Returns the tenant as the
    overlay sees it at the end, the money and the messages accepted, and the number of full reads."""
    rng = random.Random(seed)
    state, versions = [Shard(i) for i in range(shards)], [0] * shards
    spent = accepted = full_reads = 0
    for _ in range(rounds):
        wave = []
        for _ in range(rng.randint(1, 3 * shards)):
            key = f"msg_{rng.randrange(10**9)}"
            index = balance.shard_for(key, shards)
            wave.append((index, rng.choice(prices), state[index], versions[index], list(state), list(versions)))
        for index, price, own, own_version, snapshot, seen_versions in wave:
            refusal, left, used = _gate(balance.one_shard_view(base, own), price)
            leg = _leg(refusal)
            if balance.decided_alone(base, own, [leg], DAY):
                if refusal is not None:
                    continue
                written = [balance.debit(balance.one_shard_view(base, own), own, left, DAY, used)]
                read = {index: own_version}
            else:
                full_reads += 1
                refusal, left, used = _gate(balance.overlay(base, snapshot), price)
                if refusal is not None:
                    continue
                written = balance.plan(base, snapshot, index, left, DAY, used)
                read = dict(enumerate(seen_versions))
            if any(versions[s.index] != read[s.index] for s in written):
                continue
            for s in written:
                state[s.index] = s
                versions[s.index] += 1
            spent += price
            accepted += 1
        for s in state:  # the invariants the one-shard read stands on
            assert s.available_micros >= 0
            assert sum(x.allot_micros for x in state) <= base.balance_micros
    return balance.overlay(base, state), spent, accepted, full_reads


@pytest.mark.parametrize("seed", range(20))
def test_one_shard_reads_never_overspend_and_spend_everything(seed):
    base = Tenant(id="t", balance_micros=1_000_000)
    final, spent, _, full_reads = _simulate(8, base, [20_000, 40_000, 7_000, 400_000], rounds=150, seed=seed)
    assert final.balance_micros == 1_000_000 - spent >= 0
    assert final.balance_micros < 7_000  # nothing left unspendable


@pytest.mark.parametrize("seed", range(20))
def test_one_shard_reads_keep_the_daily_quota_exact(seed):
    base = Tenant(id="t", balance_micros=10**9, daily_quota=97)
    final, _, accepted, _ = _simulate(8, base, [1_000], rounds=60, seed=seed)
    assert accepted == final.used_on(DAY) == 97  # exactly the quota: no overshoot, nothing withheld


def test_most_accepts_read_one_shard():
    base = Tenant(id="t", balance_micros=10**9)
    _, _, accepted, full_reads = _simulate(16, base, [1_000], rounds=100, seed=7)
    assert accepted > 1_000 and full_reads <= 0.05 * accepted  # the first deal, then one shard each
