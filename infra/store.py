"""All Firestore access. Rules stay in ``shared``: a transaction here reads, asks a pure ``decide``
function what to write, and writes it, so a rule is never split between the domain and the store."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from shared.ids import api_key_hash
from shared.legs import Change

Doc = dict[str, Any]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Concurrent round trips of one request (the client is thread-safe; gRPC waits release the GIL).
_io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="firestore")


class Contended(Exception):
    """Optimistic retries ran out: too many concurrent writers. The caller should retry shortly."""


class PreInsertFailed(Exception):
    """The recipients could not be recorded: nothing was written, nothing will be sent."""


class Store:
    PreInsertFailed = PreInsertFailed
    Contended = Contended
    DUPLICATE: Any = object()  # what mutate_leg answers for a provider event it has applied before

    def __init__(self, client: firestore.Client) -> None:
        self.db = client
        self._next_slot: dict[str, int] = {}  # rate-limit window -> first slot not known to be taken
        self._key_tenant: dict[str, str] = {}  # API key hash -> its tenant (a key never changes tenant)

    # -- tenants, keys, pricing -----------------------------------------------------------------
    def tenant_for_api_key(self, api_key: str) -> Doc | None:
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
        return {"id": tenant.id, **tenant.to_dict()} if tenant.exists else None

    def get_tenant(self, tenant_id: str) -> Doc | None:
        snap = self.db.collection(C.TENANTS).document(tenant_id).get()
        return {"id": snap.id, **snap.to_dict()} if snap.exists else None

    def put_tenant(self, tenant_id: str, data: Doc) -> None:
        self.db.collection(C.TENANTS).document(tenant_id).set({**data, "updated_at": utcnow()}, merge=True)

    def put_api_key(self, api_key: str, tenant_id: str) -> str:
        digest = api_key_hash(api_key)
        self.db.collection(C.API_KEYS).document(digest).set(
            {"tenant_id": tenant_id, "revoked": False, "created_at": utcnow(), "prefix": api_key[:12]}
        )
        return digest

    def revoke_api_key(self, digest: str) -> None:
        self.db.collection(C.API_KEYS).document(digest).update({"revoked": True, "revoked_at": utcnow()})

    def put_pricing(self, country: str, rates: Doc) -> None:
        self.db.collection(C.PRICING).document(country.upper()).set(rates)

    def get_pricing(self, country: str) -> Doc | None:
        snap = self.db.collection(C.PRICING).document(country.upper()).get()
        return snap.to_dict() if snap.exists else None

    # -- opt-outs --------------------------------------------------------------------------------
    def _opt_outs(self, tenant_id: str):
        return self.db.collection(C.TENANTS).document(tenant_id).collection(C.OPT_OUTS)

    def gate_reads(self, tenant_id: str, numbers: Iterable[str], countries: Iterable[str]
                   ) -> tuple[set[str], dict[str, Doc | None]]:
        """In one round trip: which ``numbers`` opted out of this tenant, and the price row of each country."""
        numbers, countries = list(numbers), sorted({c.upper() for c in countries})
        refs = [self._opt_outs(tenant_id).document(n) for n in numbers]
        refs += [self.db.collection(C.PRICING).document(c) for c in countries]
        snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)} if refs else {}
        opted = {n for n in numbers if snaps[self._opt_outs(tenant_id).document(n).path].exists}
        prices = {}
        for country in countries:
            snap = snaps[f"{C.PRICING}/{country}"]
            prices[country] = snap.to_dict() if snap.exists else None
        return opted, prices

    def add_opt_out(self, tenant_id: str, number: str, source: str) -> None:
        self._opt_outs(tenant_id).document(number).set({"source": source, "at": utcnow()})

    def remove_opt_out(self, tenant_id: str, number: str) -> None:
        self._opt_outs(tenant_id).document(number).delete()

    def tenants_owning(self, number: str) -> list[str]:
        """Tenants for which ``number`` is a sender (an inbound STOP is addressed to it)."""
        query = self.db.collection(C.TENANTS).where(filter=FieldFilter("sender_numbers", "array_contains", number))
        return [snap.id for snap in query.stream()]

    # -- legs and groups -------------------------------------------------------------------------
    def get_leg(self, message_id: str) -> Doc | None:
        snap = self.db.collection(C.MESSAGES).document(message_id).get()
        return snap.to_dict() if snap.exists else None

    def get_group(self, group_id: str) -> Doc | None:
        snap = self.db.collection(C.GROUPS).document(group_id).get()
        return snap.to_dict() if snap.exists else None

    def legs_of_group(self, group_id: str) -> list[Doc]:
        query = self.db.collection(C.MESSAGES).where(filter=FieldFilter("group_id", "==", group_id))
        return [snap.to_dict() for snap in query.stream()]

    def leg_id_by_provider_id(self, provider_id: str) -> str | None:
        query = (
            self.db.collection(C.MESSAGES).where(filter=FieldFilter("provider_id", "==", provider_id)).limit(1)
        )
        return next((snap.id for snap in query.stream()), None)

    def legs_in_status(self, status: str, since_before: dt.datetime, limit: int = 200) -> list[Doc]:
        """Non-final legs that entered ``status`` before ``since_before`` (see COMPOSITE_INDEXES)."""
        query = (
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("status", "==", status))
            .where(filter=FieldFilter("final", "==", False))
            .where(filter=FieldFilter("status_since", "<", since_before))
            .order_by("status_since")
            .limit(limit)
        )
        return [snap.to_dict() for snap in query.stream()]

    def _commit_if_unchanged(self, attempt: Callable[[], Any]) -> Any:
        """Optimistic concurrency: ``attempt`` reads, decides and commits one batch whose writes are
        conditioned on the versions it read (``last_update_time``) or on absence (``create``). A
        conflict means someone else wrote first: read again and decide again. No lock is held, so
        concurrent requests never wait on each other's transactions."""
        for n in range(40):
            try:
                return attempt()
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted, gexc.NotFound):
                time.sleep(random.uniform(0, min(0.2, 0.005 * 2**n)))
        raise Contended("too many concurrent writes to the same records")

    def _unchanged(self, snap) -> Any:
        return self.db.write_option(last_update_time=snap.update_time)

    def legs_with_events_due(self, due_before: dt.datetime, limit: int = 200) -> list[Doc]:
        """Legs whose outbox has waited for delivery since before ``due_before``."""
        query = (
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("notify_due", "<", due_before))
            .order_by("notify_due")
            .limit(limit)
        )
        return [snap.to_dict() for snap in query.stream()]

    def due_scheduled_legs(self, due_before: dt.datetime, limit: int = 200) -> list[Doc]:
        """Legs still ``scheduled`` whose time is before ``due_before`` (see COMPOSITE_INDEXES)."""
        query = (
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("status", "==", "scheduled"))
            .where(filter=FieldFilter("scheduled_at", "<", due_before))
            .order_by("scheduled_at")
            .limit(limit)
        )
        return [snap.to_dict() for snap in query.stream()]

    def record_and_accept(self, group: Doc | None, legs: list[Doc],
                          decide: Callable[[Doc, list[Doc]], tuple[Doc, dict[str, Doc], Any]]) -> Any:
        """Two commits. First every recipient row, ``pending``, in one batch (``PreInsertFailed`` if that
        fails: nothing was written). Then, atomically, ``decide`` says which legs are accepted and what the
        tenant is debited, and it is all written, conditioned on the versions decided upon: a concurrent
        request of the same tenant makes us read again and decide again, so a balance is never spent
        twice. The tenant is read while the rows are being written."""
        tenant_ref = self.db.collection(C.TENANTS).document(legs[0]["tenant_id"])
        leg_refs = [self.db.collection(C.MESSAGES).document(leg["id"]) for leg in legs]
        batch = self.db.batch()
        if group is not None:
            batch.create(self.db.collection(C.GROUPS).document(group["id"]), group)
        for ref, leg in zip(leg_refs, legs, strict=True):
            batch.create(ref, leg)
        tenant_read = _io.submit(tenant_ref.get)
        try:
            results = batch.commit()
        except Exception as exc:
            raise PreInsertFailed(str(exc)) from exc
        versions = {ref.id: result.update_time for ref, result in zip(leg_refs, results[-len(legs):], strict=True)}
        first = {"tenant": tenant_read.result(), "legs": legs, "versions": versions}

        def attempt():
            if first:
                tenant_snap, current, leg_versions = first.pop("tenant"), first.pop("legs"), first.pop("versions")
            else:
                snaps = {snap.id: snap for snap in self.db.get_all([tenant_ref, *leg_refs])}
                tenant_snap = snaps[tenant_ref.id]
                current = [snaps[ref.id].to_dict() for ref in leg_refs]
                leg_versions = {ref.id: snaps[ref.id].update_time for ref in leg_refs}
            tenant_updates, leg_updates, result = decide(tenant_snap.to_dict() or {}, current)
            batch = self.db.batch()
            if tenant_updates:
                batch.update(tenant_ref, tenant_updates, option=self._unchanged(tenant_snap))
            for leg_id, updates in leg_updates.items():
                batch.update(self.db.collection(C.MESSAGES).document(leg_id), updates,
                             option=self.db.write_option(last_update_time=leg_versions[leg_id]))
            batch.commit()
            return result

        return self._commit_if_unchanged(attempt)

    def mutate_leg(self, message_id: str, decide: Callable[[Doc | None], Change],
                   *, event_id: str | None = None, event: Doc | None = None) -> Any:
        """Read-decide-write one leg atomically. With ``event_id``, the provider event is recorded in the
        same commit, and a replay of it returns ``Store.DUPLICATE`` without calling ``decide``."""
        ref = self.db.collection(C.MESSAGES).document(message_id)
        event_ref = self.db.collection(C.PROVIDER_EVENTS).document(event_id) if event_id else None

        def attempt():
            if event_ref is not None:  # one read for the event record and the leg
                snaps = {s.reference.path: s for s in self.db.get_all([event_ref, ref])}
                if snaps[event_ref.path].exists:
                    return self.DUPLICATE
                snap = snaps[ref.path]
            else:
                snap = ref.get()
            leg = snap.to_dict() if snap.exists else None
            change = decide(leg)
            batch = self.db.batch()
            if change.updates:
                batch.update(ref, change.updates, option=self._unchanged(snap))
            if leg and change.refund_micros:
                batch.update(self.db.collection(C.TENANTS).document(leg["tenant_id"]),
                             {"balance_micros": firestore.Increment(change.refund_micros)})
            if leg and change.opt_out:
                batch.set(self._opt_outs(leg["tenant_id"]).document(change.opt_out),
                          {"source": "provider 40300", "at": utcnow()})
            if event_ref is not None:
                batch.create(event_ref, {**(event or {}), "message_id": message_id, "recorded_at": utcnow(),
                                         "expires_at": utcnow() + dt.timedelta(days=30)})
            if len(batch):
                batch.commit()
            return change.result

        try:
            return self._commit_if_unchanged(attempt)
        except gexc.AlreadyExists:  # pragma: no cover - the retry above turns this into DUPLICATE
            return self.DUPLICATE

    def record_event_only(self, event_id: str, event: Doc) -> bool:
        """Record an event that touches no leg (unknown message, inbound). False if seen before."""
        try:
            self.db.collection(C.PROVIDER_EVENTS).document(event_id).create(
                {**event, "recorded_at": utcnow(), "expires_at": utcnow() + dt.timedelta(days=30)}
            )
            return True
        except gexc.AlreadyExists:
            return False

    # -- counters --------------------------------------------------------------------------------
    def hit_window(self, key: str, limit: int, window_seconds: int, now: dt.datetime) -> tuple[bool, int]:
        """Fixed-window limit: True if one more request fits in the current window. Returns (allowed,
        seconds until the window ends).

        Each admitted request claims its own slot document ``{key}:{window}:{n}`` with ``create()``,
        which fails if the slot is taken. Admission is exact under any concurrency, and no document
        takes more than one write (no hot counter, no transaction contention). The first slot worth
        trying comes from this instance's last claim in the window, or else a count query."""
        start = int(now.timestamp()) // window_seconds * window_seconds
        retry_after = max(1, start + window_seconds - int(now.timestamp()))
        window = f"{key}:{start}"
        slots = self.db.collection(C.RATE_LIMITS)
        expires = dt.datetime.fromtimestamp(start + window_seconds, dt.UTC) + dt.timedelta(hours=1)
        hint = self._next_slot.get(window)
        for slot in ([hint] if hint is not None and hint < limit else []) + [None]:
            if slot is None:  # no usable hint, or it ran into the limit: count what is really taken
                slot = slots.where(filter=FieldFilter("window", "==", window)).count().get()[0][0].value
            while slot < limit:
                try:
                    slots.document(f"{window}:{slot}").create({"window": window, "expires_at": expires})
                    self._remember_slot(window, slot + 1)
                    return True, retry_after
                except gexc.AlreadyExists:
                    slot += 1
        self._next_slot.pop(window, None)
        return False, retry_after

    def _remember_slot(self, window: str, slot: int) -> None:
        if len(self._next_slot) > 1000:  # windows pass; forget the old ones
            self._next_slot.clear()
        self._next_slot[window] = slot

    # -- idempotency records ---------------------------------------------------------------------
    def idempotency_begin(self, record_id: str, payload_hash: str, now: dt.datetime,
                          lease_seconds: int, ttl_seconds: int) -> tuple[str, Doc | None]:
        """Claim a key. Returns ("new", None), ("completed", record), ("in_progress", record) or
        ("mismatch", record). Claiming is one atomic ``create()``; only an expired record (or an
        abandoned claim whose lease ran out) is taken over, with an update conditioned on the exact
        version we read, so concurrent duplicates never both win."""
        ref = self.db.collection(C.IDEMPOTENCY).document(record_id)
        fresh = {
            "state": "in_progress", "payload_hash": payload_hash, "created_at": now,
            "lease_until": now + dt.timedelta(seconds=lease_seconds),
            "expires_at": now + dt.timedelta(seconds=ttl_seconds),
        }
        for _ in range(5):
            try:
                ref.create(fresh)
                return "new", None
            except gexc.AlreadyExists:
                pass
            snap = ref.get()
            if not snap.exists:
                continue  # released between our create and our read
            record = snap.to_dict()
            expired = record["expires_at"] <= now
            if not expired and record["payload_hash"] != payload_hash:
                return "mismatch", record
            if not expired and record["state"] == "completed":
                return "completed", record
            if not expired and record["lease_until"] > now:
                return "in_progress", record
            try:
                ref.update(fresh, option=self.db.write_option(last_update_time=snap.update_time))
                return "new", None
            except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
                continue
        return "in_progress", None

    def idempotency_complete(self, record_id: str, status: int, body: Doc, headers: dict[str, str]) -> None:
        self.db.collection(C.IDEMPOTENCY).document(record_id).update(
            {"state": "completed", "response_status": status, "response_body": body, "response_headers": headers}
        )

    def idempotency_release(self, record_id: str) -> None:
        self.db.collection(C.IDEMPOTENCY).document(record_id).delete()

