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
from shared.rules.records import Tenant

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


def test_sends_and_refunds_through_the_api_never_write_the_tenant_document(env):
    import datetime as dt

    from tests.conftest import fictional

    tenant_ref = env.store.db.collection(C.TENANTS).document(env.tenant_id)
    written_at = tenant_ref.get().update_time
    start = env.balance()
    single = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "body": "x",
                                                        "media_urls": [env.sample_media_url]})
    assert single.status_code == 200, single.text
    group = env.api.post("/api/v1/messages/group", json={"to": [fictional(2), fictional(3)], "body": "x",
                                                         "media_urls": [env.sample_media_url]})
    assert group.status_code == 200, group.text
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    scheduled = env.api.post("/api/v1/messages/sms", json={"to": fictional(4), "body": "x", "scheduled_at": later,
                                                           "media_urls": [env.sample_media_url]})
    assert scheduled.status_code == 200, scheduled.text
    assert env.balance() == start - 4 * PRICE  # four MMS legs, one US MMS price each
    canceled = env.api.delete(f"/api/v1/messages/{scheduled.json()['data']['id']}")
    assert canceled.status_code == 200 and canceled.json()["data"]["status"] == "canceled"
    assert env.balance() == start - 3 * PRICE  # the cancel refunded its leg
    env.wait_status(single.json()["data"]["id"], "delivered")
    assert tenant_ref.get().update_time == written_at  # traffic wrote shards only
    shards = list(tenant_ref.collection("balance_shards").stream())
    assert shards and sum(int((s.to_dict() or {}).get("delta_micros") or 0) for s in shards) == -3 * PRICE
