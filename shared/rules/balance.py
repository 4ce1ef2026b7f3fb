"""The tenant's balance and daily usage on shards (Firestore's distributed-counter pattern, with escrow).

Why: real Firestore sustains about one write per second on one document. While every accept writes the tenant
document (balance and usage), one tenant's throughput is capped near one accepted request per second. Here
the tenant document keeps the *base* (the prepaid amount: top-ups increment it, traffic never writes it) and
``SHARDS`` shard documents under it (``tenants/{id}/balance_shards/{n}``) carry what traffic changes:

- ``delta_micros``: what this shard's accepts spent (negative) and refunds gave back (positive);
- ``allot_micros``: the part of the base assigned to this shard (escrow); the shard may spend
  ``allot + delta`` and no more;
- the usage count of the shard's latest UTC day;
- under a daily quota, ``quota_allot``: the count this shard may reach on ``quota_day`` (escrow of the quota,
  dealt from the quota ``quota_of``).

The balance is base + every shard's delta; the usage of a day is the sum over shards counting that day
(``overlay``, over a batch get of the tenant document and every shard).

An accept spends on ONE shard (``shard_for``: from the request id, so a retried commit lands on the same
shard), conditioned on that shard's version as read, as long as that shard's own money covers it and, under a
daily quota, its own share of the day's quota covers its count (``plan``). The shards' money and quota shares
are disjoint, so the balance and the quota stay exact without a common document. When the shard runs short,
the accept deals the whole balance (and the rest of the day's quota) again evenly over every shard and spends
in the same commit, conditioned on every shard as read: exact again, and it writes all shards (that happens
once per ``1/SHARDS`` of the balance spent, on the first accept, on the first accept of a UTC day under a quota,
after a top-up once a shard runs dry, and on nearly every accept of a tenant whose balance or quota is almost
gone: exactness costs throughput only at the very end). A top-up is not assigned until the next deal; the gate
sees it at once (the overlay counts the whole base).

Reading one shard is enough to accept (``one_shard_view``, ``decided_alone``): every shard's own money is never
negative (an accept spends a shard's money only while it covers the spend; a deal leaves each shard its share
of what is left; a refund only adds) and the allotments never sum above the base, so a shard's own money is at
most the balance; likewise its quota share is at most what is left of the day's quota. A decision made on the
shard alone that accepts every recipient the account's limits could refuse is therefore the exact decision. A
single send reads only its own shard (docs/decisions.md); when that shard cannot cover it, it reads them all and
decides on the overlay, as a group, a batch and an SMS failover charge always do.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from shared.rules.errors import ErrorCode
from shared.rules.frozen import frozen
from shared.rules.records import Leg, Tenant

SHARDS = 16
SHARD_COLLECTION = "balance_shards"  # subcollection of tenants/{tenant_id}


@frozen
class Shard:
    index: int
    delta_micros: int = 0
    usage_day: str | None = None
    usage_count: int = 0
    allot_micros: int = 0
    quota_day: str | None = None  # the UTC day of quota_allot (None: no quota dealt to this shard)
    quota_allot: int = 0  # the usage count this shard may reach on quota_day
    quota_of: int | None = None  # the tenant's daily quota the share was dealt from

    @property
    def available_micros(self) -> int:
        return self.allot_micros + self.delta_micros

    def used_on(self, day: str | None) -> int:
        return self.usage_count if day is not None and self.usage_day == day else 0

    def to_doc(self) -> dict[str, Any]:
        return {"index": self.index, "delta_micros": self.delta_micros, "allot_micros": self.allot_micros,
                "usage_day": self.usage_day, "usage_count": self.usage_count, "quota_day": self.quota_day,
                "quota_allot": self.quota_allot, "quota_of": self.quota_of}

    @classmethod
    def from_doc(cls, index: int, doc: dict[str, Any] | None) -> Shard:
        doc = doc or {}
        quota_of = doc.get("quota_of")
        return cls(index=index, delta_micros=int(doc.get("delta_micros") or 0), usage_day=doc.get("usage_day"),
                   usage_count=int(doc.get("usage_count") or 0), allot_micros=int(doc.get("allot_micros") or 0),
                   quota_day=doc.get("quota_day"), quota_allot=int(doc.get("quota_allot") or 0),
                   quota_of=int(quota_of) if quota_of is not None else None)


def shard_for(key: str, shards: int = SHARDS) -> int:
    """The shard a request writes: spread evenly, and the same for every retry of one request's commit."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % shards


def overlay(tenant: Tenant, shards: list[Shard]) -> Tenant:
    """The tenant as the gate sees it: the base balance plus every shard's delta, and the usage of the latest
    day any of them counted (the tenant document's own usage fields still count: documents written before the
    shards existed)."""
    days = [d for d in [tenant.usage_day, *(s.usage_day for s in shards)] if d]
    day = max(days) if days else None
    used = tenant.used_on(day) + sum(s.usage_count for s in shards if s.usage_day == day) if day else 0
    return dataclasses.replace(tenant, balance_micros=tenant.balance_micros + sum(s.delta_micros for s in shards),
                               usage_day=day, usage_count=used)


def debit(seen: Tenant, shard: Shard, balance_micros: int, usage_day: str | None, usage_count: int) -> Shard:
    """The shard's new state for an accept that decided, on the overlaid ``seen``, the tenant's new balance and
    usage (shared.ports.AcceptDecision): the difference lands on this one shard. A charge that counts no
    message (an SMS failover's) passes ``usage_day`` None and leaves the usage as it is."""
    spent = seen.balance_micros - balance_micros
    added = usage_count - seen.used_on(usage_day) if usage_day is not None else 0
    if spent < 0 or added < 0:
        raise ValueError("an accept only spends and counts up")
    if usage_day is None or (added == 0 and shard.usage_day != usage_day):
        return dataclasses.replace(shard, delta_micros=shard.delta_micros - spent)
    # a shard counts one day, today's: yesterday's count on it is over
    count = (shard.usage_count if shard.usage_day == usage_day else 0) + added
    return dataclasses.replace(shard, delta_micros=shard.delta_micros - spent, usage_day=usage_day, usage_count=count)


def quota_share_covers(base: Tenant, before: Shard, after: Shard, usage_day: str | None) -> bool:
    """Whether the shard's own share of the day's quota covers its count after an accept (``after``). True without
    a daily quota, and for a write that counts nothing more (an SMS failover's charge, a refusal)."""
    if base.daily_quota is None or usage_day is None or after.used_on(usage_day) <= before.used_on(usage_day):
        return True
    return (before.quota_day == usage_day and before.quota_of == base.daily_quota
            and after.used_on(usage_day) <= before.quota_allot)


def plan(base: Tenant, shards: list[Shard], index: int, balance_micros: int, usage_day: str | None,
         usage_count: int, *, every_shard: bool = False) -> list[Shard]:
    """The shards an accept writes, decided on ``overlay(base, shards)``: the new balance and usage it decided
    (shared.ports.AcceptDecision) land on shard ``index`` alone when that shard's money (and, under a daily
    quota, its share of the day's quota) covers the spend; otherwise the whole balance and the rest of the day's
    quota are dealt again evenly over every shard (all of them written). Empty: nothing to write.
    ``every_shard``: deal again whatever the spend (a batch: its commit is then conditioned on every shard)."""
    seen = overlay(base, shards)
    spent = seen.balance_micros - balance_micros
    if balance_micros < 0:
        raise ValueError("an accept cannot spend more than the balance")
    charged = debit(seen, shards[index], balance_micros, usage_day, usage_count)
    if (spent <= shards[index].available_micros and quota_share_covers(base, shards[index], charged, usage_day)
            and not every_shard):
        return [charged] if charged != shards[index] else []
    after = [charged if s.index == index else s for s in shards]
    return deal(base, after, usage_day)


def deal(base: Tenant, shards: list[Shard], usage_day: str | None) -> list[Shard]:
    """Every shard with its even share of what is left: base + every delta of the money, and (under a daily
    quota, for the day ``usage_day``) of the quota less the day's usage. The allotments then sum to the base
    and the day's quota shares to the quota less the usage the tenant document itself counts."""
    share, extra = divmod(base.balance_micros + sum(s.delta_micros for s in shards), len(shards))
    dealt = [dataclasses.replace(s, allot_micros=share + (1 if s.index < extra else 0) - s.delta_micros)
             for s in shards]
    if base.daily_quota is None or usage_day is None:
        return dealt
    left = max(base.daily_quota - overlay(base, shards).used_on(usage_day), 0)
    room, more = divmod(left, len(shards))
    return [dataclasses.replace(s, quota_day=usage_day, quota_of=base.daily_quota,
                                quota_allot=s.used_on(usage_day) + room + (1 if s.index < more else 0))
            for s in dealt]


# The refusals a decision on one shard alone may make wrongly (the account's own limits; the other shards may
# still hold money or quota): such a decision is taken again on every shard.
ACCOUNT_REFUSALS = frozenset({ErrorCode.INSUFFICIENT_BALANCE.value, ErrorCode.QUOTA_EXCEEDED.value})


def one_shard_view(base: Tenant, shard: Shard) -> Tenant:
    """The tenant as an accept that read only ``shard`` may decide on: the shard's own money as the balance, and
    under a daily quota the shard's share of the quota (of the day it was dealt; none if it was dealt from
    another quota) as the quota, with the shard's own count as the usage. Each is at most the exact figure, so
    an accept this view allows the exact view allows too (``decided_alone``)."""
    quota = None if base.daily_quota is None else shard.quota_allot if shard.quota_of == base.daily_quota else 0
    return dataclasses.replace(base, balance_micros=shard.available_micros, daily_quota=quota,
                               usage_day=shard.usage_day, usage_count=shard.usage_count)


def decided_alone(base: Tenant, shard: Shard, legs: list[Leg], usage_day: str | None) -> bool:
    """Whether a decision taken on ``one_shard_view(base, shard)`` is the exact one, to be written on that shard
    alone: it refused no recipient for the balance or the quota, and under a daily quota the shard's share is
    of the decision's day and of the quota as it is now. Otherwise every shard is read and it decides again."""
    if any(leg.error_code in ACCOUNT_REFUSALS for leg in legs):
        return False
    if base.daily_quota is None or usage_day is None:
        return True
    return shard.quota_day == usage_day and shard.quota_of == base.daily_quota


def quota_overshoot_bound(max_request_messages: int, shards: int = SHARDS, window_commits: int = 1) -> int:
    """The most messages a tenant could send beyond its daily quota if the quota were not dealt out to the shards
    (each accept deciding on counts read before concurrent accepts on other shards wrote theirs). Since the
    quota is dealt like the money (``deal``) the overshoot is 0; kept for the comparison in docs/decisions.md."""
    return (shards - 1) * window_commits * max_request_messages
