"""The tenant's balance shards in Firestore (shared/balance.py has the rules and the overspend bound).

The store's tenant reads and writes go through this adapter: ``refs`` joins the shards to a batch get that
already reads the tenant document, ``overlay`` turns what it read into the tenant as the gate sees it (with
the version of each shard), ``debit`` adds an accept's one conditioned shard write to a commit, ``refund``
a refund's unconditioned increment.
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from infra import collections as C
from shared.balance import SHARD_COLLECTION, SHARDS, Shard, debit, overlay, shard_for
from shared.records import Tenant


class FirestoreBalance:
    def __init__(self, db: firestore.Client, shards: int = SHARDS) -> None:
        self.db = db
        self.shards = shards

    def refs(self, tenant_id: str) -> list[Any]:
        shards = self.db.collection(C.TENANTS).document(tenant_id).collection(SHARD_COLLECTION)
        return [shards.document(str(i)) for i in range(self.shards)]

    def overlay(self, tenant: Tenant, snaps: dict[str, Any]) -> tuple[Tenant, dict[int, Any]]:
        """The tenant with its shards, and each shard's version (None: the shard does not exist yet)."""
        found, versions = [], {}
        for i, ref in enumerate(self.refs(tenant.id)):
            snap = snaps.get(ref.path)
            if snap is not None and snap.exists:
                found.append(Shard.from_doc(i, snap.to_dict()))
                versions[i] = snap.update_time
            else:
                found.append(Shard(i))
                versions[i] = None
        return overlay(tenant, found), versions

    def get(self, tenant: Tenant) -> Tenant:
        snaps = {snap.reference.path: snap for snap in self.db.get_all(self.refs(tenant.id))}
        return self.overlay(tenant, snaps)[0]

    def debit(self, batch: Any, seen: Tenant, versions: dict[int, Any], snaps: dict[str, Any], key: str,
              balance_micros: int, usage_day: str, usage_count: int) -> None:
        """The accept's one shard write, conditioned on the version ``seen`` was decided on: a concurrent accept
        that wrote the same shard first makes the commit fail, and the caller reads and decides again."""
        index = shard_for(key, self.shards)
        ref = self.refs(seen.id)[index]
        snap = snaps.get(ref.path)
        current = Shard.from_doc(index, snap.to_dict() if snap is not None and snap.exists else None)
        after = debit(seen, current, balance_micros, usage_day, usage_count)
        if after == current:
            return
        if versions.get(index) is None:
            batch.create(ref, after.to_doc())  # two first writers of one shard: one create fails, it retries
        else:
            batch.update(ref, after.to_doc(), option=self.db.write_option(last_update_time=versions[index]))

    def refund(self, batch: Any, tenant_id: str, key: str, micros: int) -> None:
        """A refund only raises the balance: an increment on one shard, no condition, no conflict."""
        index = shard_for(key, self.shards)
        batch.set(self.refs(tenant_id)[index], {"index": index, "delta_micros": firestore.Increment(micros)},
                  merge=True)
