"""The balance shards on the Firestore emulator (infra/store/balance.py): concurrent debits through the
conditioned shard writes spend exactly the balance, count every accepted request once, never write the tenant
document, and refunds add up exactly."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra import collections as C
from infra.store.balance import FirestoreBalance
from infra.store.commit import commit_if_unchanged
from shared.records import Tenant

pytestmark = pytest.mark.stack

PRICE = 20_000
DAY = "2026-12-01"


def test_concurrent_debits_spend_exactly_the_balance_and_refunds_add_up(env):
    db = env.store.db
    shards = FirestoreBalance(db, shards=4)
    tenant_id = "ten_shards_" + uuid.uuid4().hex[:8]
    tenant_ref = db.collection(C.TENANTS).document(tenant_id)
    tenant_ref.set({"balance_micros": 10 * PRICE})

    def accept(n: int) -> bool:
        key = f"req_{n}"

        def attempt() -> bool:
            snaps = {s.reference.path: s for s in db.get_all([tenant_ref, *shards.refs(tenant_id)])}
            base = Tenant.from_doc(tenant_id, snaps[tenant_ref.path].to_dict() or {})
            seen = shards.seen(base, snaps)
            tenant = seen.tenant
            if tenant.balance_micros < PRICE:
                return False
            batch = db.batch()
            shards.debit(batch, seen, key, tenant.balance_micros - PRICE, DAY, tenant.used_on(DAY) + 1)
            batch.commit()
            return True

        return commit_if_unchanged(attempt, tries=200)

    with ThreadPoolExecutor(max_workers=8) as pool:
        accepted = sum(pool.map(accept, range(30)))

    base = Tenant.from_doc(tenant_id, tenant_ref.get().to_dict() or {})
    after = shards.get(base)
    assert base.balance_micros == 10 * PRICE  # the tenant document itself is never written by an accept
    assert after.balance_micros == 10 * PRICE - accepted * PRICE
    assert after.used_on(DAY) == accepted
    assert accepted == 10  # exactly what the balance covered, whatever the interleaving

    batch = db.batch()
    for n in range(7):
        shards.refund(batch, tenant_id, f"refund_{n}", PRICE)
    batch.commit()
    assert shards.get(base).balance_micros == after.balance_micros + 7 * PRICE
