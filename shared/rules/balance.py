"""The tenant's balance and daily usage on shards (Firestore's distributed-counter pattern, with escrow).

Why: real Firestore sustains about one write per second on one document. While every accept writes the tenant
document (balance and usage), one tenant's throughput is capped near one accepted request per second. Here
the tenant document keeps the *base* (the prepaid amount: top-ups increment it, traffic never writes it) and
``SHARDS`` shard documents under it (``tenants/{id}/balance_shards/{n}``) carry what traffic changes:

- ``delta_micros``: what this shard's accepts spent (negative) and refunds gave back (positive);
- ``allot_micros``: the part of the base assigned to this shard (escrow); the shard may spend
  ``allot + delta`` and no more;
- the usage count of the shard's latest UTC day.

The balance is base + every shard's delta; the usage of a day is the sum over shards counting that day. One
batch get reads the tenant document and all shards (``overlay``).

An accept spends on ONE shard (``shard_for``: from the request id, so a retried commit lands on the same
shard), conditioned on that shard's version as read, as long as that shard's own money covers it (``plan``).
The shards' money is disjoint, so the balance stays exact without a common document. When the shard runs
short, the accept re-deals the whole balance evenly over every shard and spends in the same commit, conditioned
on every shard as read: exact again, and it writes all shards (that happens once per ``1/SHARDS`` of the
balance spent, on the first accept, after a top-up once a shard runs dry, and on nearly every accept of a
tenant whose balance is almost gone: exactness costs throughput only at the very end). A top-up is not
assigned until the next re-deal; the gate sees it at once (the overlay counts the whole base).

The daily quota is not escrowed: accepts on different shards may each decide on a view that lacks the others'
counts, so it can be exceeded by at most ``(SHARDS - 1) x`` the recipients of the largest request per window
of concurrent accepts (``quota_overshoot_bound``; docs/decisions.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from shared.rules.records import Tenant

SHARDS = 16
SHARD_COLLECTION = "balance_shards"  # subcollection of tenants/{tenant_id}


@dataclass(frozen=True)
class Shard:
    index: int
    delta_micros: int = 0
    usage_day: str | None = None
    usage_count: int = 0
    allot_micros: int = 0

    @property
    def available_micros(self) -> int:
        return self.allot_micros + self.delta_micros

    def to_doc(self) -> dict[str, Any]:
        return {"index": self.index, "delta_micros": self.delta_micros, "allot_micros": self.allot_micros,
                "usage_day": self.usage_day, "usage_count": self.usage_count}

    @classmethod
    def from_doc(cls, index: int, doc: dict[str, Any] | None) -> Shard:
        doc = doc or {}
        return cls(index=index, delta_micros=int(doc.get("delta_micros") or 0), usage_day=doc.get("usage_day"),
                   usage_count=int(doc.get("usage_count") or 0), allot_micros=int(doc.get("allot_micros") or 0))


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


def plan(base: Tenant, shards: list[Shard], index: int, balance_micros: int, usage_day: str | None,
         usage_count: int, *, every_shard: bool = False) -> list[Shard]:
    """The shards an accept writes, decided on ``overlay(base, shards)``: the new balance and usage it decided
    (shared.ports.AcceptDecision) land on shard ``index`` alone when that shard's money covers the spend;
    otherwise the whole balance is dealt again evenly over every shard (all of them written). Empty: nothing
    to write. ``every_shard``: deal again whatever the spend (a batch: its commit is then conditioned on every
    shard, so its quota decision is exact and every accept after it sees its count)."""
    seen = overlay(base, shards)
    spent = seen.balance_micros - balance_micros
    if balance_micros < 0:
        raise ValueError("an accept cannot spend more than the balance")
    charged = debit(seen, shards[index], balance_micros, usage_day, usage_count)
    if spent <= shards[index].available_micros and not every_shard:
        return [charged] if charged != shards[index] else []
    after = [charged if s.index == index else s for s in shards]
    # base + every delta (after the spend) is what is left: deal it out so that each shard can spend its share
    share, extra = divmod(base.balance_micros + sum(s.delta_micros for s in after), len(after))
    return [dataclasses.replace(s, allot_micros=share + (1 if s.index < extra else 0) - s.delta_micros)
            for s in after]


def quota_overshoot_bound(max_request_messages: int, shards: int = SHARDS, window_commits: int = 1) -> int:
    """The most messages a tenant can send beyond its daily quota (see the module docstring)."""
    return (shards - 1) * window_commits * max_request_messages
