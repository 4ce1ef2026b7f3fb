"""The tenant's balance shards in Firestore (shared/rules/balance.py has the rules and the overspend bound).

The store's tenant reads and writes go through this adapter: ``refs`` joins the shards to a batch get that
already reads the tenant document (``ref``: one shard, for a single send, which reads only its own shard),
``seen`` turns what it read into the tenant as the gate sees it (with each shard as read and its version: the
opaque version an accept is conditioned on), ``debit`` adds an accept's conditioned shard writes to a commit,
``refund`` a refund's unconditioned increment.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from google.cloud import firestore

from infra import collections as C
from shared.rules import balance as rules
from shared.rules.balance import SHARD_COLLECTION, SHARDS, Shard, overlay, plan, shard_for
from shared.rules.frozen import frozen
from shared.rules.records import Leg, Tenant


@frozen
class Seen:
    """The tenant (its document plus every shard, or only shard ``only``) as one batch get read it."""

    base: Tenant  # the tenant document alone
    shards: tuple[Shard, ...]  # by index; with ``only``, the others are placeholders, never written
    versions: tuple[Any, ...]  # each shard's update time; None: not created yet (or not read)
    only: int | None = None  # the one shard read (shared/rules/balance.py ``one_shard_view``); None: every shard

    @property
    def tenant(self) -> Tenant:
        """The tenant as the gate decides on it: exact (the overlay of every shard), or with ``only`` the one
        shard's view (its own money and quota share: at most the exact figures)."""
        if self.only is not None:
            return rules.one_shard_view(self.base, self.shards[self.only])
        return overlay(self.base, list(self.shards))

    @property
    def exact(self) -> bool:
        return self.only is None

    def alone(self, legs: list[Leg], usage_day: str | None) -> bool:
        """Whether a decision on this view is the exact one (always, when every shard was read)."""
        return self.only is None or rules.decided_alone(self.base, self.shards[self.only], legs, usage_day)

    def with_shard(self, shard: Shard, version: Any) -> Seen:
        shards, versions = list(self.shards), list(self.versions)
        shards[shard.index], versions[shard.index] = shard, version
        return dataclasses.replace(self, shards=tuple(shards), versions=tuple(versions))


class FirestoreBalance:
    def __init__(self, db: firestore.Client, shards: int = SHARDS) -> None:
        self.db = db
        self.shards = shards

    def refs(self, tenant_id: str) -> list[Any]:
        shards = self.db.collection(C.TENANTS).document(tenant_id).collection(SHARD_COLLECTION)
        return [shards.document(str(i)) for i in range(self.shards)]

    def shard_of(self, key: str) -> int:
        return shard_for(key, self.shards)

    def ref(self, tenant_id: str, index: int) -> Any:
        return self.refs(tenant_id)[index]

    def seen(self, base: Tenant, snaps: dict[str, Any], only: int | None = None) -> Seen:
        """The tenant with its shards, from a batch get that included ``refs(base.id)`` (with ``only``: that one
        shard's ``ref``)."""
        shards, versions = [], []
        for i, ref in enumerate(self.refs(base.id)):
            snap = snaps.get(ref.path) if only is None or i == only else None
            if snap is not None and snap.exists:
                shards.append(Shard.from_doc(i, snap.to_dict()))
                versions.append(snap.update_time)
            else:
                shards.append(Shard(i))
                versions.append(None)
        return Seen(base=base, shards=tuple(shards), versions=tuple(versions), only=only)

    def overlay(self, base: Tenant, snaps: dict[str, Any]) -> Tenant:
        return self.seen(base, snaps).tenant

    def get(self, tenant: Tenant) -> Tenant:
        snaps = {snap.reference.path: snap for snap in self.db.get_all(self.refs(tenant.id))}
        return self.overlay(tenant, snaps)

    def debit(self, batch: Any, seen: Seen, key: str, balance_micros: int, usage_day: str | None,
              usage_count: int, *, every_shard: bool = False) -> list[Shard]:
        """The accept's shard writes (shared/rules/balance.py ``plan``: its own shard, or every shard when the money
        is dealt again), each conditioned on the version ``seen`` read: a concurrent accept that wrote one of
        them first makes the commit fail, and the caller reads and decides again. Returns the shards as
        written. A ``seen`` of one shard writes that shard alone: the decision was taken on its view, and the
        caller checked ``seen.alone`` (else it reads every shard first)."""
        index = self.shard_of(key)
        if seen.only is not None:
            if seen.only != index or every_shard:
                raise ValueError("an accept that read one shard writes that shard alone")
            shard = seen.shards[index]
            charged = rules.debit(seen.tenant, shard, balance_micros, usage_day, usage_count)
            if charged.available_micros < 0:
                raise ValueError("an accept cannot spend more than its shard holds")
            written = [charged] if charged != shard else []
        else:
            written = plan(seen.base, list(seen.shards), index, balance_micros, usage_day, usage_count,
                           every_shard=every_shard)
        refs = self.refs(seen.base.id)
        for shard in written:
            version = seen.versions[shard.index]
            if version is None:  # two first writers of one shard: one create fails, it retries
                batch.create(refs[shard.index], shard.to_doc())
            else:
                batch.update(refs[shard.index], shard.to_doc(),
                             option=self.db.write_option(last_update_time=version))
        return written

    def refund(self, batch: Any, tenant_id: str, key: str, micros: int) -> None:
        """A refund only raises the balance: an increment on one shard, no condition, no conflict."""
        index = self.shard_of(key)
        batch.set(self.refs(tenant_id)[index], {"index": index, "delta_micros": firestore.Increment(micros)},
                  merge=True)
