"""Legs and groups in Firestore: reads, the one read-decide-write of a leg, provider event records, and
the accept's two commits. Rules stay in ``shared``: this module reads, asks a pure ``decide`` function
what to write, and writes it."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from infra.store import fastwrite
from infra.store.balance import FirestoreBalance, Seen
from infra.store.commit import changed_fields, commit_if_unchanged, io, utcnow
from infra.store.idempotency import keep_answer
from infra.store.linked import LinkedWrites
from shared.ports import (
    AcceptDecision,
    Decision,
    IdempotentAnswer,
    InboundDecision,
    InboundWrite,
    Mutation,
    PreInsertFailed,
)
from shared.rules.balance import Shard
from shared.rules.records import Group, Leg, OptOut, ProviderEventRecord, Tenant
from shared.rules.searching import Query as SearchQuery

T = TypeVar("T")
EVENT_TTL = dt.timedelta(days=30)
_locks_guard = threading.Lock()
_tenant_locks: dict[str, threading.Lock] = {}
# (tenant id, shard) -> (version, shard) of a balance shard as this instance's last single-send accept wrote it.
# Concurrent accepts of one tenant read the same versions in their first round; the one that takes its turn
# second on a shard starts from what the first wrote (read under the shard's lock), not from a version it
# knows is gone.
_committed: dict[tuple[str, int], tuple[Any, Shard]] = {}


def _tenant_lock(tenant_id: str) -> threading.Lock:
    with _locks_guard:
        if len(_tenant_locks) > 10_000:
            _tenant_locks.clear()
        return _tenant_locks.setdefault(tenant_id, threading.Lock())


class FirestoreLegs(LinkedWrites):
    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self.balance = FirestoreBalance(db)

    def _ref(self, message_id: str) -> Any:
        return self.db.collection(C.MESSAGES).document(message_id)

    def _legs(self, query: Any) -> list[Leg]:
        return [Leg.from_doc(snap.to_dict() or {}) for snap in query.stream()]

    # -- reads -----------------------------------------------------------------------------------
    def get(self, message_id: str) -> Leg | None:
        snap = self._ref(message_id).get()
        return Leg.from_doc(snap.to_dict() or {}) if snap.exists else None

    def get_group(self, group_id: str) -> Group | None:
        snap = self.db.collection(C.GROUPS).document(group_id).get()
        return Group.from_doc(snap.to_dict() or {}) if snap.exists else None

    def of_group(self, group_id: str) -> list[Leg]:
        return self._legs(self.db.collection(C.MESSAGES).where(filter=FieldFilter("group_id", "==", group_id)))

    def id_by_provider_id(self, provider_id: str) -> str | None:
        query = self.db.collection(C.MESSAGES).where(filter=FieldFilter("provider_id", "==", provider_id)).limit(1)
        return next((snap.id for snap in query.stream()), None)

    def in_status(self, status: str, since_before: dt.datetime, limit: int = 200) -> list[Leg]:
        """Non-final legs that entered ``status`` before ``since_before`` (see COMPOSITE_INDEXES)."""
        return self._legs(
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("status", "==", status))
            .where(filter=FieldFilter("final", "==", False))
            .where(filter=FieldFilter("status_since", "<", since_before))
            .order_by("status_since")
            .limit(limit)
        )

    def due_scheduled(self, due_before: dt.datetime, limit: int = 200) -> list[Leg]:
        """Legs still ``scheduled`` whose time is before ``due_before`` (see COMPOSITE_INDEXES)."""
        return self._legs(
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("status", "==", "scheduled"))
            .where(filter=FieldFilter("scheduled_at", "<", due_before))
            .order_by("scheduled_at")
            .limit(limit)
        )

    def past_validity(self, statuses: list[str], now: dt.datetime, limit: int = 200) -> list[Leg]:
        """Legs in one of ``statuses`` whose validity ended before ``now`` (see COMPOSITE_INDEXES)."""
        return self._legs(
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("status", "in", statuses))
            .where(filter=FieldFilter("valid_until", "<", now))
            .order_by("valid_until")
            .limit(limit)
        )

    def with_events_due(self, due_before: dt.datetime, limit: int = 200) -> list[Leg]:
        """Legs whose outbox has waited for delivery since before ``due_before``."""
        return self._legs(
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("notify_due", "<", due_before))
            .order_by("notify_due")
            .limit(limit)
        )

    def search(self, query: SearchQuery, limit: int) -> list[Leg]:
        """One page of a tenant's messages, newest first (shared/rules/searching.py; each equality set it allows has
        its composite index in COMPOSITE_INDEXES). Ties on created_at (a group's legs) break on the id."""
        q = self.db.collection(C.MESSAGES).where(filter=FieldFilter("tenant_id", "==", query.tenant_id))
        for name, value in query.equals:
            q = q.where(filter=FieldFilter(name, "==", value))
        if query.created_after is not None:
            q = q.where(filter=FieldFilter("created_at", ">", query.created_after))
        if query.created_before is not None:
            q = q.where(filter=FieldFilter("created_at", "<", query.created_before))
        q = q.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING)
        if query.after is not None:
            created_at, leg_id = query.after
            q = q.start_after({"created_at": created_at, "__name__": self._ref(leg_id)})
        return self._legs(q.limit(limit))

    # -- writes ----------------------------------------------------------------------------------
    def mutate(self, message_id: str, decide: Callable[[Leg | None], Decision[T]], *,
               event: ProviderEventRecord | None = None) -> Mutation[T]:
        """Read-decide-write one leg atomically. With ``event``, the provider event is recorded in the same
        commit when it changes anything, and a replay of it answers ``duplicate`` without calling ``decide``."""
        return self._mutate(message_id, decide, event=event)

    def mutate_unless_opted_out(self, message_id: str, decide: Callable[[Leg | None, bool], Decision[T]], *,
                                applies: Callable[[Leg], bool]) -> Mutation[T]:
        """``mutate``, with ``decide`` told whether the recipient is on the tenant's opt-out list. The entry is
        read after the leg (its tenant and number come from it) and before the commit, so a STOP stored
        before this read stops the leg; one stored after it races the provider call, as it would a moment
        later (docs/decisions.md, Opt-outs)."""

        def decide_with_list(leg: Leg | None) -> Decision[T]:
            if leg is None or not applies(leg):
                return decide(leg, False)
            entry = (self.db.collection(C.TENANTS).document(leg.tenant_id).collection(C.OPT_OUTS)
                     .document(leg.to).get())
            return decide(leg, bool(entry.exists))

        return self._mutate(message_id, decide_with_list, event=None)

    def _mutate(self, message_id: str, decide: Callable[[Leg | None], Decision[T]], *,
                event: ProviderEventRecord | None) -> Mutation[T]:
        ref = self._ref(message_id)
        event_ref = self.db.collection(C.PROVIDER_EVENTS).document(event.event_id) if event else None

        def attempt() -> Mutation[T]:
            if event_ref is not None:  # one read for the event record and the leg
                snaps = {s.reference.path: s for s in self.db.get_all([event_ref, ref])}
                if snaps[event_ref.path].exists:
                    return Mutation(before=None, after=None, result=None, duplicate=True)
                snap = snaps[ref.path]
            else:
                snap = ref.get()
            stored = snap.to_dict() if snap.exists else None
            before = Leg.from_doc(stored) if stored else None
            decision = decide(before)
            batch = self.db.batch()
            after = decision.after if before is not None else None
            if after is not None:
                updates = changed_fields(stored, after.to_doc())
                if updates:
                    batch.update(ref, updates, option=self.db.write_option(last_update_time=snap.update_time))
                else:
                    after = None
            if before is not None and decision.refund_micros:
                self.balance.refund(batch, before.tenant_id, message_id, decision.refund_micros)
            if before is not None and decision.opt_out:
                batch.set(self.db.collection(C.TENANTS).document(before.tenant_id).collection(C.OPT_OUTS)
                          .document(decision.opt_out), {"source": "provider_rejection", "at": utcnow(),
                                                        "message_id": message_id})
            # An event that changes nothing is not recorded: delivered again it changes nothing again (a
            # status only moves forward), and Telnyx's message.sent usually changes nothing (the leg is sent
            # already by dispatch's own record): a write per leg saved (bench/README.md, batch).
            if event is not None and event_ref is not None and len(batch):
                recorded_at = utcnow()
                # An event about a leg is kept as long as the leg (the tenant's retention), no longer.
                ttl = (before.delete_at - recorded_at) if before is not None and before.delete_at else EVENT_TTL
                batch.create(event_ref, event.to_doc(message_id, recorded_at, max(ttl, dt.timedelta(0))))
            if len(batch):
                batch.commit()
            return Mutation(before=before, after=after, result=decision.result)

        try:
            return commit_if_unchanged(attempt)
        except gexc.AlreadyExists:  # pragma: no cover - the retry above turns this into a duplicate
            return Mutation(before=None, after=None, result=None, duplicate=True)

    def record_event(self, event: ProviderEventRecord) -> bool:
        """Record an event that touches no leg (unknown message, inbound). False if seen before."""
        try:
            self.db.collection(C.PROVIDER_EVENTS).document(event.event_id).create(
                event.to_doc(None, utcnow(), EVENT_TTL))
            return True
        except gexc.AlreadyExists:
            return False

    def record_inbound(self, message_id: str, tenant_id: str, sender: str | None,
                       decide: Callable[[OptOut | None], InboundDecision]) -> InboundWrite:
        """An inbound message's first write: the leg created (``create()``: a replay finds it and writes nothing)
        with its keyword's opt-out change, conditioned on the sender's entry as read, in one commit."""
        ref = self._ref(message_id)
        opt_ref = (self.db.collection(C.TENANTS).document(tenant_id).collection(C.OPT_OUTS).document(sender)
                   if sender else None)

        def attempt() -> InboundWrite:
            snaps = {s.reference.path: s for s in self.db.get_all([ref, *([opt_ref] if opt_ref else [])])}
            if snaps[ref.path].exists:
                return InboundWrite(leg=Leg.from_doc(snaps[ref.path].to_dict() or {}), created=False)
            opt_snap = snaps[opt_ref.path] if opt_ref is not None else None
            current = OptOut.from_doc(opt_snap.id, opt_snap.to_dict() or {}) \
                if opt_snap is not None and opt_snap.exists else None
            decision = decide(current)
            batch = self.db.batch()
            batch.create(ref, decision.leg.to_doc())
            if opt_ref is not None and opt_snap is not None and decision.opt_out is not None:
                if opt_snap.exists:
                    batch.update(opt_ref, decision.opt_out.to_doc(),
                                 option=self.db.write_option(last_update_time=opt_snap.update_time))
                else:
                    batch.create(opt_ref, decision.opt_out.to_doc())
            elif opt_ref is not None and opt_snap is not None and decision.opt_in and opt_snap.exists:
                batch.delete(opt_ref, option=self.db.write_option(last_update_time=opt_snap.update_time))
            batch.commit()
            return InboundWrite(leg=decision.leg, created=True)

        return commit_if_unchanged(attempt)

    def accept(self, group: Group | None, legs: list[Leg], decide: Callable[[Tenant, list[Leg]], AcceptDecision],
               answer: Callable[[list[Leg]], IdempotentAnswer | None], version: Any = None) -> list[Leg]:
        """Two commits. First every recipient row, ``pending``, in one batch (``PreInsertFailed`` if that
        fails: nothing was written). Then, atomically, ``decide`` says which legs are accepted and what the
        tenant is debited, and it is all written, with the request's idempotent answer, conditioned on the
        versions decided upon: a concurrent request of the same tenant makes us read again and decide
        again, so a balance is never spent twice. The tenant is decided upon as ``version`` (the request's
        first round read it) or else read while the rows are being written."""
        tenant_id = legs[0].tenant_id
        tenant_ref = self.db.collection(C.TENANTS).document(tenant_id)
        shard_refs = self.balance.refs(tenant_id)
        shard_key = group.id if group is not None else legs[0].id
        refs = [self._ref(leg.id) for leg in legs]
        batch = self.db.batch()
        if group is not None:
            fastwrite.create(batch, self.db.collection(C.GROUPS).document(group.id), group.to_doc())
        docs = [leg.to_doc() for leg in legs]
        for ref, doc in zip(refs, docs, strict=True):
            fastwrite.create(batch, ref, doc)  # (the library's own encoding: ~10x the CPU, see fastwrite)
        if isinstance(version, Seen) and not version.exact:  # a group decides on every shard
            version = None
        tenant_read = None if isinstance(version, Seen) else io.submit(
            lambda: {s.reference.path: s for s in self.db.get_all([tenant_ref, *shard_refs])})
        try:
            results = batch.commit()
        except Exception as exc:
            raise PreInsertFailed(str(exc)) from exc
        first: dict[str, Any] = {
            "tenant": tenant_read.result() if tenant_read is not None else None, "docs": docs,
            "versions": [result.update_time for result in results[-len(legs):]], "seen": version,
        }

        def attempt() -> list[Leg]:
            read_first: Seen | None = None
            if first:
                snaps, stored, versions = first.pop("tenant"), first.pop("docs"), first.pop("versions")
                read_first = first.pop("seen")
            else:
                snaps = {snap.reference.path: snap for snap in self.db.get_all([tenant_ref, *shard_refs, *refs])}
                stored = [snaps[ref.path].to_dict() for ref in refs]
                versions = [snaps[ref.path].update_time for ref in refs]
            seen = read_first if snaps is None and read_first is not None else self.balance.seen(
                Tenant.from_doc(tenant_id, snaps[tenant_ref.path].to_dict() or {}), snaps)
            decision = decide(seen.tenant, [Leg.from_doc(doc) for doc in stored])
            batch = self.db.batch()
            # the debit and the day's count land on one balance shard, conditioned on it as read
            self.balance.debit(batch, seen, shard_key, decision.balance_micros, decision.usage_day,
                               decision.usage_count)
            for ref, doc, version, leg in zip(refs, stored, versions, decision.legs, strict=True):
                updates = changed_fields(doc, leg.to_doc())
                if updates:
                    fastwrite.update(batch, ref, updates, version)
            keep_answer(self.db, batch, answer(decision.legs))
            batch.commit()
            return decision.legs

        # Every accept of a tenant writes one of its balance shards: a burst of one tenant's requests contends
        # there. Within this instance those on one shard take turns (a conflict between two of our own threads
        # is only wasted round trips); across instances the conditioned commit still decides, with more tries
        # than a leg gets (docs/decisions.md: the tenant's write rate).
        with _tenant_lock(f"{tenant_id}/{self.balance.shard_of(shard_key)}"):
            return commit_if_unchanged(attempt, tries=100)

    def accept_one(self, leg: Leg, tenant: Tenant, version: Any,
                   decide: Callable[[Tenant, list[Leg]], AcceptDecision],
                   answer: Callable[[list[Leg]], IdempotentAnswer | None]) -> list[Leg]:
        """A single send's one commit: the leg created in its decided state (no pending row first: a single
        send has one row, so this commit writes it whole or not at all), the tenant's debit and usage on one
        balance shard conditioned on that shard as the request's first round read it (``version``), and the
        request's idempotent answer. The first round read that one shard only: ``decide`` is asked on its view
        (its own money and quota share), and when that view refuses the leg for the balance or the quota (or
        its quota share is stale) every shard is read and ``decide`` asked again on the exact balance
        (shared/rules/balance.py ``decided_alone``). If another accept of the tenant committed first, the
        tenant is read again and ``decide`` asked again, so a balance is never spent twice; the leg is read
        with it, and one already there was created by an earlier attempt of this commit whose answer was lost."""
        tenant_id, tenant_ref, ref = tenant.id, self.db.collection(C.TENANTS).document(tenant.id), self._ref(leg.id)
        shard_refs, index = self.balance.refs(tenant_id), self.balance.shard_of(leg.id)
        # ``version`` is the first round's view of the tenant and its balance shard(s) (infra/store/balance.py)
        first: dict[str, Any] = {"seen": version} if isinstance(version, Seen) and version.only in (None, index) \
            else {}
        # a retry reads the one shard again, until a view of it could not decide alone: then every shard
        one_shard = [isinstance(version, Seen) and version.only == index]

        def read(only: int | None) -> Seen | Leg:
            shards = shard_refs if only is None else [shard_refs[only]]
            snaps = {snap.reference.path: snap for snap in self.db.get_all([tenant_ref, *shards, ref])}
            if snaps[ref.path].exists:
                return Leg.from_doc(snaps[ref.path].to_dict() or {})
            return self.balance.seen(Tenant.from_doc(tenant_id, snaps[tenant_ref.path].to_dict() or {}), snaps,
                                     only)

        def attempt() -> list[Leg]:
            if first:
                seen: Seen = first.pop("seen")
                for i in range(len(seen.versions)) if seen.only is None else [seen.only]:
                    read_at, ours = seen.versions[i], _committed.get((tenant_id, i))
                    if ours is not None and (read_at is None or ours[0] > read_at):
                        seen = seen.with_shard(ours[1], ours[0])  # this instance wrote it since: no conflict to lose
            else:
                found = read(index if one_shard[0] else None)
                if isinstance(found, Leg):
                    return [found]
                seen = found
            decision = decide(seen.tenant, [leg])
            if not seen.alone(decision.legs, decision.usage_day):  # the one shard cannot say: read them all
                one_shard[0] = False
                found = read(None)
                if isinstance(found, Leg):
                    return [found]
                seen = found
                decision = decide(seen.tenant, [leg])
            batch = self.db.batch()
            # the debit and the day's count land on one balance shard, conditioned on it as read
            written = self.balance.debit(batch, seen, leg.id, decision.balance_micros, decision.usage_day,
                                         decision.usage_count)
            fastwrite.create(batch, ref, decision.legs[0].to_doc())
            keep_answer(self.db, batch, answer(decision.legs))
            results = batch.commit()
            if len(_committed) > 10_000:
                _committed.clear()
            for shard, result in zip(written, results, strict=False):  # the shard writes come first
                _committed[(tenant_id, shard.index)] = (result.update_time, shard)
            return decision.legs

        with _tenant_lock(f"{tenant_id}/{index}"):
            return commit_if_unchanged(attempt, tries=100)
