"""Tenants, API keys, prices and opt-out lists in Firestore."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from infra.store.commit import utcnow
from shared.ids import api_key_hash
from shared.records import Rates, Tenant


class FirestoreAccounts:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self._key_tenant: dict[str, str] = {}  # API key hash -> its tenant (a key never changes tenant)

    def tenant_for_api_key(self, api_key: str) -> Tenant | None:
        """The key's tenant, or None for an unknown or revoked key. The key document is read on every
        call (revocation takes effect at once); which tenant a key belongs to never changes, so once
        known, the tenant is read in the same round trip."""
        digest = api_key_hash(api_key)
        key_ref = self.db.collection(C.API_KEYS).document(digest)
        known = self._key_tenant.get(digest)
        refs = [key_ref] + ([self.db.collection(C.TENANTS).document(known)] if known else [])
        snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)}
        key = snaps[key_ref.path]
        if not key.exists or key.get("revoked"):
            return None
        tenant_id = key.get("tenant_id")
        if len(self._key_tenant) > 10_000:
            self._key_tenant.clear()
        self._key_tenant[digest] = tenant_id
        tenant = snaps.get(f"{C.TENANTS}/{tenant_id}")
        if tenant is None:
            return self.get_tenant(tenant_id)
        return Tenant.from_doc(tenant.id, tenant.to_dict() or {}) if tenant.exists else None

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        snap = self.db.collection(C.TENANTS).document(tenant_id).get()
        return Tenant.from_doc(snap.id, snap.to_dict() or {}) if snap.exists else None

    def tenant_doc(self, tenant_id: str) -> dict[str, Any] | None:
        """The stored document as it is (operator tools show it)."""
        snap = self.db.collection(C.TENANTS).document(tenant_id).get()
        return {"id": snap.id, **(snap.to_dict() or {})} if snap.exists else None

    def put_tenant(self, tenant_id: str, data: dict[str, Any]) -> None:
        self.db.collection(C.TENANTS).document(tenant_id).set({**data, "updated_at": utcnow()}, merge=True)

    def put_api_key(self, api_key: str, tenant_id: str) -> str:
        digest = api_key_hash(api_key)
        self.db.collection(C.API_KEYS).document(digest).set(
            {"tenant_id": tenant_id, "revoked": False, "created_at": utcnow(), "prefix": api_key[:12]}
        )
        return digest

    def revoke_api_key(self, digest: str) -> None:
        self.db.collection(C.API_KEYS).document(digest).update({"revoked": True, "revoked_at": utcnow()})

    def put_pricing(self, country: str, rates: dict[str, Any]) -> None:
        self.db.collection(C.PRICING).document(country.upper()).set(rates)

    def get_rates(self, country: str) -> Rates | None:
        snap = self.db.collection(C.PRICING).document(country.upper()).get()
        return Rates.from_doc(snap.to_dict() or {}) if snap.exists else None

    # -- opt-outs --------------------------------------------------------------------------------
    def _opt_outs(self, tenant_id: str) -> Any:
        return self.db.collection(C.TENANTS).document(tenant_id).collection(C.OPT_OUTS)

    def gate_reads(self, tenant_id: str, numbers: Iterable[str], countries: Iterable[str]
                   ) -> tuple[set[str], dict[str, Rates | None]]:
        """In one round trip: which ``numbers`` opted out of this tenant, and the prices of each country."""
        wanted, regions = list(numbers), sorted({c.upper() for c in countries})
        refs = [self._opt_outs(tenant_id).document(n) for n in wanted]
        refs += [self.db.collection(C.PRICING).document(c) for c in regions]
        snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)} if refs else {}
        opted = {n for n in wanted if snaps[self._opt_outs(tenant_id).document(n).path].exists}
        prices: dict[str, Rates | None] = {}
        for country in regions:
            snap = snaps[f"{C.PRICING}/{country}"]
            prices[country] = Rates.from_doc(snap.to_dict() or {}) if snap.exists else None
        return opted, prices

    def add_opt_out(self, tenant_id: str, number: str, source: str) -> None:
        self._opt_outs(tenant_id).document(number).set({"source": source, "at": utcnow()})

    def remove_opt_out(self, tenant_id: str, number: str) -> None:
        self._opt_outs(tenant_id).document(number).delete()

    def tenants_owning(self, number: str) -> list[str]:
        """Tenants for which ``number`` is a sender (an inbound STOP is addressed to it)."""
        query = self.db.collection(C.TENANTS).where(filter=FieldFilter("sender_numbers", "array_contains", number))
        return [snap.id for snap in query.stream()]
