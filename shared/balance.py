"""The tenant's balance and daily usage as sharded counters (Firestore's distributed-counter pattern).

Why: real Firestore sustains about one write per second on one document. While every accept writes the tenant
document (balance and usage), one tenant's throughput is capped near one accepted request per second. Here
the tenant document keeps the *base* (top-ups, written rarely by an operator) and ``SHARDS`` shard documents
under it (``tenants/{id}/balance_shards/{n}``) carry what traffic changes: each shard holds a signed
``delta_micros`` (debits negative, refunds positive) and the usage count of its latest UTC day.

- The balance is base + the sum of every shard's delta; the usage of a day is the sum over shards whose day it
  is. One batch get reads the tenant document and all shards (``overlay``).
- An accept writes ONE shard (``shard_for``: picked from the request id, so a retried commit lands on the
  same shard), conditioned on the version of that shard it read, with its new delta and usage (``debit``).
- A refund adds to one shard with a server-side increment: it only raises the balance, so it needs no
  condition and never conflicts.

The bound (docs/decisions.md): two accepts on the same shard are serialized by the condition, as on the single
document before. Accepts on different shards are not: an accept may decide on a view that lacks the debits
other shards took between its read and its commit. Each of the other ``SHARDS - 1`` shards can take only
the commits that fit in that window (``window_commits``: about one at the ~1 write/s a document sustains,
since the window is one read and one commit), each at most the largest single request's cost. So a tenant
overspends by at most ``(SHARDS - 1) x window_commits x`` that cost (``overspend_bound``): for instance
15 x 1 x 20 legs x 0.02 USD = 6 USD with 16 shards and a 20-recipient MMS group. The daily quota has the same
bound in messages. With ``SHARDS = 1`` it is exact, as the single document was.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from shared.records import Tenant

SHARDS = 16
SHARD_COLLECTION = "balance_shards"  # subcollection of tenants/{tenant_id}


@dataclass(frozen=True)
class Shard:
    index: int
    delta_micros: int = 0
    usage_day: str | None = None
    usage_count: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {"index": self.index, "delta_micros": self.delta_micros, "usage_day": self.usage_day,
                "usage_count": self.usage_count}

    @classmethod
    def from_doc(cls, index: int, doc: dict[str, Any] | None) -> Shard:
        doc = doc or {}
        return cls(index=index, delta_micros=int(doc.get("delta_micros") or 0), usage_day=doc.get("usage_day"),
                   usage_count=int(doc.get("usage_count") or 0))


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


def debit(seen: Tenant, shard: Shard, balance_micros: int, usage_day: str, usage_count: int) -> Shard:
    """The shard's new state for an accept that decided, on the overlaid ``seen``, the tenant's new balance and
    usage (shared.ports.AcceptDecision): the difference lands on this one shard."""
    spent = seen.balance_micros - balance_micros
    added = usage_count - seen.used_on(usage_day)
    if spent < 0 or added < 0:
        raise ValueError("an accept only spends and counts up")
    # a shard counts one day, today's: yesterday's count on it is over
    count = (shard.usage_count if shard.usage_day == usage_day else 0) + added
    return Shard(index=shard.index, delta_micros=shard.delta_micros - spent, usage_day=usage_day, usage_count=count)


def overspend_bound(max_request_micros: int, shards: int = SHARDS, window_commits: int = 1) -> int:
    """The most a tenant can spend beyond its balance (see the module docstring)."""
    return (shards - 1) * window_commits * max_request_micros
