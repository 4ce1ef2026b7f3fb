"""Batch sends in Firestore: the accept's one commit (the batch, its chunks, the reservation on the balance
shards and the idempotent answer), the chunk tasks' reads and their one commit of rows, the cancel, and the
progress counts. Rules stay in ``shared/services/batch_sending.py``: this module reads, asks a pure ``decide`` what to
write, and writes it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from infra.store import fastwrite
from infra.store.balance import FirestoreBalance, Seen
from infra.store.commit import commit_if_unchanged, io
from infra.store.idempotency import keep_answer
from shared.ports import BatchAcceptDecision, ChunkState, IdempotentAnswer
from shared.rules.records import Batch, BatchChunk, BatchStatus, Leg, Tenant, chunk_doc_id


class FirestoreBatches:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self.balance = FirestoreBalance(db)

    def _batch_ref(self, batch_id: str) -> Any:
        return self.db.collection(C.BATCHES).document(batch_id)

    def _chunk_ref(self, batch_id: str, index: int) -> Any:
        return self.db.collection(C.BATCH_CHUNKS).document(chunk_doc_id(batch_id, index))

    def accept(self, tenant_id: str, version: Any, decide: Callable[[Tenant], BatchAcceptDecision],
               answer: Callable[[Batch], IdempotentAnswer | None]) -> Batch:
        """One commit: the batch and every chunk created, the reservation debited from the tenant's balance
        shards conditioned on them as read (``version``: the first round's view), the answer kept. If another
        accept of the tenant wrote a shard first, the tenant is read again and ``decide`` asked again (it may
        then refuse: 402). A retry after a commit whose answer was lost finds the batch and returns it."""
        tenant_ref, shard_refs = self.db.collection(C.TENANTS).document(tenant_id), self.balance.refs(tenant_id)
        first: dict[str, Any] = {"seen": version} if isinstance(version, Seen) else {}
        batch_id: list[str] = []

        def attempt() -> Batch:
            if first:
                seen: Seen = first.pop("seen")
            else:
                refs = [tenant_ref, *shard_refs, *([self._batch_ref(batch_id[0])] if batch_id else [])]
                snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)}
                if batch_id and snaps[self._batch_ref(batch_id[0]).path].exists:
                    return Batch.from_doc(snaps[self._batch_ref(batch_id[0]).path].to_dict() or {})
                seen = self.balance.seen(Tenant.from_doc(tenant_id, snaps[tenant_ref.path].to_dict() or {}), snaps)
            decision = decide(seen.tenant)
            batch_id[:] = [decision.batch.id]
            batch = self.db.batch()
            # every shard, conditioned: the batch's quota decision is exact (shared/rules/balance.py ``plan``)
            self.balance.debit(batch, seen, decision.batch.id, decision.balance_micros, decision.usage_day,
                               decision.usage_count, every_shard=True)
            fastwrite.create(batch, self._batch_ref(decision.batch.id), decision.batch.to_doc())
            for chunk in decision.chunks:
                fastwrite.create(batch, self._chunk_ref(chunk.batch_id, chunk.index), chunk.to_doc())
            keep_answer(self.db, batch, answer(decision.batch))
            batch.commit()
            return decision.batch

        return commit_if_unchanged(attempt, tries=100)

    def get(self, batch_id: str) -> Batch | None:
        snap = self._batch_ref(batch_id).get()
        return Batch.from_doc(snap.to_dict() or {}) if snap.exists else None

    def chunk_state(self, batch_id: str, index: int) -> ChunkState | None:
        batch_ref, chunk_ref = self._batch_ref(batch_id), self._chunk_ref(batch_id, index)
        snaps = {snap.reference.path: snap for snap in self.db.get_all([batch_ref, chunk_ref])}
        batch_snap, chunk_snap = snaps[batch_ref.path], snaps[chunk_ref.path]
        if not (batch_snap.exists and chunk_snap.exists):
            return None
        return ChunkState(batch=Batch.from_doc(batch_snap.to_dict() or {}),
                          chunk=BatchChunk.from_doc(chunk_snap.to_dict() or {}), version=chunk_snap.update_time)

    def rows(self, message_ids: Sequence[str]) -> list[Leg]:
        """The legs that exist among ``message_ids``, in that order."""
        refs = [self.db.collection(C.MESSAGES).document(m) for m in message_ids]
        snaps = {snap.reference.path: snap for snap in self.db.get_all(refs)} if refs else {}
        return [Leg.from_doc(snaps[ref.path].to_dict() or {}) for ref in refs if snaps[ref.path].exists]

    def write_rows(self, legs: Sequence[Leg], refund_micros: int, refund_key: str) -> bool:
        """Create every row, and refund what the late gates released, in one commit. False: the rows exist
        already (an earlier run of the chunk committed them: a create fails, so nothing is written twice)."""
        if not legs:
            return True
        batch = self.db.batch()
        for leg in legs:
            fastwrite.create(batch, self.db.collection(C.MESSAGES).document(leg.id), leg.to_doc())
        if refund_micros:
            self.balance.refund(batch, legs[0].tenant_id, refund_key, refund_micros)
        try:
            batch.commit()
        except gexc.AlreadyExists:
            return False
        return True

    def chunk_done(self, chunk: BatchChunk, version: Any, now: dt.datetime) -> bool:
        """Mark the chunk's work done, unless something (a cancel) wrote it since ``version``."""
        try:
            self._chunk_ref(chunk.batch_id, chunk.index).update(
                {"todo": False, "updated_at": now}, option=self.db.write_option(last_update_time=version))
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        return True

    def cancel(self, batch_id: str, tenant_id: str, now: dt.datetime) -> Batch | None:
        """The batch marked canceled and every chunk marked as having work again, in one commit (a chunk task
        then cancels its rows). None: no such batch for this tenant. Canceled already: returned as it is."""
        ref = self._batch_ref(batch_id)

        def attempt() -> Batch | None:
            snap = ref.get()
            if not snap.exists:
                return None
            current = Batch.from_doc(snap.to_dict() or {})
            if current.tenant_id != tenant_id or current.status is BatchStatus.CANCELED:
                return current if current.tenant_id == tenant_id else None
            canceled = current.with_(status=BatchStatus.CANCELED, canceled_at=now)
            batch = self.db.batch()
            batch.update(ref, {"status": canceled.status.value, "canceled_at": now},
                         option=self.db.write_option(last_update_time=snap.update_time))
            for index in range(current.chunks):
                batch.update(self._chunk_ref(batch_id, index), {"todo": True, "updated_at": now})
            batch.commit()
            return canceled

        return commit_if_unchanged(attempt)

    def count_by_status(self, tenant_id: str, batch_id: str, statuses: Sequence[str]) -> dict[str, int]:
        """How many of the batch's rows are in each status: count aggregations (one index entry read per
        thousand rows, not one document read per row), all at one moment (a read-only transaction: a row
        moving on between two counts is counted once), run concurrently."""
        base = (self.db.collection(C.MESSAGES).where(filter=FieldFilter("tenant_id", "==", tenant_id))
                .where(filter=FieldFilter("batch_id", "==", batch_id)))

        @firestore.transactional
        def counts(transaction: Any) -> dict[str, int]:
            def count(status: str) -> int:
                query = base.where(filter=FieldFilter("status", "==", status)).count()
                result: Any = query.get(transaction=transaction)  # type: ignore[call-arg]
                return int(result[0][0].value)

            futures = {status: io.submit(count, status) for status in statuses}
            return {status: future.result() for status, future in futures.items()}

        return counts(self.db.transaction(read_only=True))

    def chunks_todo(self, updated_before: dt.datetime, limit: int = 100) -> list[BatchChunk]:
        """Chunks whose work is not done and that nobody touched since ``updated_before`` (their task was lost,
        or keeps failing), without their recipients (the task reads those)."""
        query = (self.db.collection(C.BATCH_CHUNKS).where(filter=FieldFilter("todo", "==", True))
                 .where(filter=FieldFilter("updated_at", "<", updated_before)).order_by("updated_at")
                 .select(["batch_id", "tenant_id", "index", "todo", "updated_at"]).limit(limit))
        return [BatchChunk.from_doc(snap.to_dict() or {}) for snap in query.stream()]
