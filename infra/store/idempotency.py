"""Idempotency-Key records in Firestore (the rules are in ``infra.web.idempotent``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from infra import collections as C
from shared.ports import IdempotentAnswer
from shared.rules.records import IdempotencyRecord, IdempotencyState


def keep_answer(db: firestore.Client, batch: Any, kept: IdempotentAnswer | None) -> None:
    """Add to an accept's commit the answer it keeps under the request's Idempotency-Key (none: no key)."""
    if kept is not None:
        batch.set(db.collection(C.IDEMPOTENCY).document(kept.record_id),
                  {"state": "completed", "response_status": kept.status, "response_body": kept.body,
                   "response_headers": kept.headers}, merge=True)


class FirestoreIdempotency:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def begin(self, record_id: str, payload_hash: str, now: dt.datetime, lease_seconds: int,
              ttl_seconds: int) -> tuple[str, IdempotencyRecord | None]:
        """Claim a key. Returns ("new", None), ("completed", record), ("in_progress", record) or
        ("mismatch", record). Claiming is one atomic ``create()``; only an expired record (or an abandoned
        claim whose lease ran out) is taken over, with an update conditioned on the exact version we read,
        so concurrent duplicates never both win."""
        ref = self.db.collection(C.IDEMPOTENCY).document(record_id)
        fresh = IdempotencyRecord(state=IdempotencyState.IN_PROGRESS, payload_hash=payload_hash, created_at=now,
                                  lease_until=now + dt.timedelta(seconds=lease_seconds),
                                  expires_at=now + dt.timedelta(seconds=ttl_seconds)).to_doc()
        for _ in range(5):
            try:
                ref.create(fresh)
                return "new", None
            except gexc.AlreadyExists:
                pass
            snap = ref.get()
            if not snap.exists:
                continue  # released between our create and our read
            record = IdempotencyRecord.from_doc(snap.to_dict() or {})
            expired = record.expires_at <= now
            if not expired and record.payload_hash != payload_hash:
                return "mismatch", record
            if not expired and record.state is IdempotencyState.COMPLETED:
                return "completed", record
            if not expired and record.lease_until > now:
                return "in_progress", record
            try:
                ref.update(fresh, option=self.db.write_option(last_update_time=snap.update_time))
                return "new", None
            except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
                continue
        return "in_progress", None

    def complete(self, record_id: str, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.db.collection(C.IDEMPOTENCY).document(record_id).update(
            {"state": "completed", "response_status": status, "response_body": body, "response_headers": headers})

    def release(self, record_id: str) -> None:
        self.db.collection(C.IDEMPOTENCY).document(record_id).delete()
