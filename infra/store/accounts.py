"""Tenants, API keys, prices and opt-out lists in Firestore."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from infra import collections as C
from infra.store.balance import FirestoreBalance
from infra.store.commit import commit_if_unchanged, utcnow
from shared.ports import Caller, Contended, FirstRound
from shared.rules.api_keys import ApiKeyRecord, KeyCheck, KeyVerdict, check_key
from shared.rules.ids import api_key_hash, tenant_named_by
from shared.rules.records import OptOut, Rates, Tenant

IMPORT_BATCH = 500  # Firestore's limit of writes per commit


class FirestoreAccounts:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self.balance = FirestoreBalance(db)  # balance and usage live on shards (shared/rules/balance.py)
        self._key_tenant: dict[str, str] = {}  # API key hash -> its tenant (a key never changes tenant)
        self._known: dict[str, Tenant] = {}  # API key hash -> its tenant as last read, the key found valid

    def tenant_for_api_key(self, api_key: str, *, balance: bool = True) -> Tenant | None:
        """The key's tenant, or None for an unknown or revoked key. The key document is read on every
        call (revocation takes effect at once); which tenant a key belongs to never changes, so once
        known (or named by the key itself), the tenant is read in the same round trip. ``balance=False``
        reads the tenant document without its balance shards (its balance and usage hold only the base):
        for authenticating a request that never looks at them, 16 reads fewer."""
        digest = api_key_hash(api_key)
        key_ref = self.db.collection(C.API_KEYS).document(digest)
        known = self._key_tenant.get(digest) or tenant_named_by(api_key)
        shards = self.balance.refs(known) if known and balance else []
        refs = [key_ref] + ([self.db.collection(C.TENANTS).document(known), *shards] if known else [])
        snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)}
        check = check_key(api_key, _key_record(snaps[key_ref.path]))
        if not check.valid or check.owner is None:
            self._forget(digest)
            return None
        tenant_id = check.owner
        tenant = snaps.get(f"{C.TENANTS}/{tenant_id}")
        if tenant is None:  # read beside another tenant's documents (a stale note): read its own now
            found = self.get_tenant(tenant_id, balance=balance)
        elif not tenant.exists:
            found = None
        else:
            found = Tenant.from_doc(tenant.id, tenant.to_dict() or {})
            found = self.balance.overlay(found, snaps) if balance else found
        self._remember(digest, tenant_id, found)
        return found

    def caller(self, api_key: str) -> Caller:
        """What this instance knows of a key before reading anything (shared.ports.Caller)."""
        digest = api_key_hash(api_key)
        known = self._known.get(digest)
        return Caller(api_key=api_key, tenant_id=self._key_tenant.get(digest) or tenant_named_by(api_key),
                      known=known)

    def first_round(self, tenant_id: str, api_key: str | None, numbers: Iterable[str], countries: Iterable[str],
                    shard_key: str | None = None) -> FirstRound:
        """One batch get: the key (when given: it must exist, be unrevoked and belong to ``tenant_id``, else
        ``tenant`` is None), the tenant and the version of its document, which of ``numbers`` opted out of
        the tenant, and the prices of ``countries``. With ``shard_key`` only the balance shard that key writes is
        read (a single send: the tenant is then that shard's view, ``FirstRound.exact`` False); without it,
        every shard. A key this instance had noted under another tenant (shared/rules/api_keys.py
        ``STALE_NOTE``) costs one more batch get, under the key's own tenant."""
        wanted, regions = list(numbers), sorted({c.upper() for c in countries})
        digest = api_key_hash(api_key) if api_key is not None else None
        only = self.balance.shard_of(shard_key) if shard_key is not None else None
        snaps, seen, check = self._first_reads(tenant_id, api_key, wanted, regions, only)
        if digest is not None and check is not None and check.verdict is KeyVerdict.STALE_NOTE and check.owner:
            tenant_id = self._key_tenant[digest] = check.owner
            snaps, seen, check = self._first_reads(tenant_id, api_key, wanted, regions, only)
        tenant = seen.tenant if seen is not None else None
        if digest is not None:
            if check is not None and check.valid:
                self._remember(digest, tenant_id, tenant)
            else:  # unknown, revoked, another tenant's, or found stale twice running: refused
                self._forget(digest)
                tenant = None
        opt_outs = self._opt_outs(tenant_id)
        opted = {n for n in wanted if snaps[opt_outs.document(n).path].exists}
        prices: dict[str, Rates | None] = {}
        for country in regions:
            snap = snaps[f"{C.PRICING}/{country}"]
            prices[country] = Rates.from_doc(snap.to_dict() or {}) if snap.exists else None
        return FirstRound(tenant=tenant, version=seen if tenant is not None else None,
                          opted_out=opted, prices=prices, exact=seen.exact if seen is not None else True)

    def _first_reads(self, tenant_id: str, api_key: str | None, wanted: list[str], regions: list[str],
                     only: int | None = None) -> tuple[dict[str, Any], Any, KeyCheck | None]:
        """The first round's batch get, read as ``tenant_id``'s: the snapshots by path, the tenant's version (its
        shards as read, or shard ``only`` alone: infra/store/balance.py ``Seen``; None: no such tenant) and the
        key's check (None: no key given)."""
        tenant_ref = self.db.collection(C.TENANTS).document(tenant_id)
        key_ref = self.db.collection(C.API_KEYS).document(api_key_hash(api_key)) if api_key is not None else None
        shards = self.balance.refs(tenant_id) if only is None else [self.balance.ref(tenant_id, only)]
        refs = ([key_ref] if key_ref is not None else []) + [tenant_ref, *shards]
        refs += [self._opt_outs(tenant_id).document(n) for n in wanted]
        refs += [self.db.collection(C.PRICING).document(c) for c in regions]
        snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)}
        tenant_snap = snaps[tenant_ref.path]
        seen = self.balance.seen(Tenant.from_doc(tenant_id, tenant_snap.to_dict() or {}), snaps, only) \
            if tenant_snap.exists else None
        check = check_key(api_key, _key_record(snaps[key_ref.path]), read_for=tenant_id) \
            if api_key is not None and key_ref is not None else None
        return snaps, seen, check

    def _remember(self, digest: str, tenant_id: str, tenant: Tenant | None) -> None:
        if len(self._key_tenant) > 10_000:
            self._key_tenant.clear()
            self._known.clear()
        self._key_tenant[digest] = tenant_id
        if tenant is not None:
            self._known[digest] = tenant

    def _forget(self, digest: str) -> None:
        """A key found unknown or revoked: its next request is checked before it may claim anything."""
        self._known.pop(digest, None)

    def get_tenant(self, tenant_id: str, *, balance: bool = True) -> Tenant | None:
        """The tenant with its balance and usage (the document's base plus its shards), in one batch get.
        ``balance=False`` reads the document alone (its balance and usage then hold only the base): for readers
        that never look at them, 16 reads fewer."""
        ref = self.db.collection(C.TENANTS).document(tenant_id)
        refs = [ref, *self.balance.refs(tenant_id)] if balance else [ref]
        snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)}
        snap = snaps[ref.path]
        return self.balance.overlay(Tenant.from_doc(snap.id, snap.to_dict() or {}), snaps) if snap.exists else None

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

    # -- the opt-out API (shared/services/optouts.py) ----------------------------------------------------------
    def get_opt_out(self, tenant_id: str, number: str) -> OptOut | None:
        snap = self._opt_outs(tenant_id).document(number).get()
        return OptOut.from_doc(snap.id, snap.to_dict() or {}) if snap.exists else None

    def list_opt_outs(self, tenant_id: str, after: str | None, limit: int) -> list[OptOut]:
        """One page of the list in number order (the document id), after the number ``after``."""
        query = self._opt_outs(tenant_id).order_by(FieldPath.document_id())
        if after:
            query = query.start_after({FieldPath.document_id(): self._opt_outs(tenant_id).document(after)})
        return [OptOut.from_doc(snap.id, snap.to_dict() or {}) for snap in query.limit(limit).stream()]

    def put_opt_out(self, tenant_id: str, entry: OptOut) -> tuple[OptOut, bool]:
        """The entry created (True), or the one already there, kept as it is: its source and time are the first
        opt-out's (False)."""
        ref = self._opt_outs(tenant_id).document(entry.number)
        for _ in range(3):
            try:
                ref.create(entry.to_doc())
                return entry, True
            except gexc.AlreadyExists:
                snap = ref.get()
                if snap.exists:
                    return OptOut.from_doc(snap.id, snap.to_dict() or {}), False
        raise Contended("the opt-out entry keeps changing")

    def delete_opt_out(self, tenant_id: str, number: str) -> bool:
        """Whether the number was on the list (it is not, afterwards)."""
        ref = self._opt_outs(tenant_id).document(number)
        snap = ref.get()
        if not snap.exists:
            return False
        ref.delete()
        return True

    def import_opt_outs(self, tenant_id: str, entries: Sequence[OptOut]) -> int:
        """Add every entry not on the list yet (one already there keeps its source and time), ``IMPORT_BATCH`` per
        commit, each conditioned on absence; how many were added."""
        added = 0
        for start in range(0, len(entries), IMPORT_BATCH):
            chunk = {entry.number: entry for entry in entries[start:start + IMPORT_BATCH]}
            refs = {number: self._opt_outs(tenant_id).document(number) for number in chunk}

            def attempt(chunk: dict[str, OptOut] = chunk, refs: dict[str, Any] = refs) -> int:
                present = {snap.id for snap in self.db.get_all(list(refs.values())) if snap.exists}
                batch = self.db.batch()
                for number, entry in chunk.items():
                    if number not in present:
                        batch.create(refs[number], entry.to_doc())
                if len(batch):
                    batch.commit()
                return len(chunk) - len(present)

            added += commit_if_unchanged(attempt)
        return added

    def tenants_owning(self, number: str) -> list[str]:
        """Tenants for which ``number`` is a sender (an inbound STOP is addressed to it)."""
        query = self.db.collection(C.TENANTS).where(filter=FieldFilter("sender_numbers", "array_contains", number))
        return [snap.id for snap in query.stream()]


def _key_record(snap: Any) -> ApiKeyRecord | None:
    return ApiKeyRecord.from_doc(snap.to_dict() or {}) if snap.exists else None
