"""Idempotency-Key records in Firestore; what a found record means is shared/rules/idempotency.py's to say."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from infra import collections as C
from shared.ports import IdempotentAnswer
from shared.rules import idempotency as rules
from shared.rules.records import IdempotencyRecord


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
        """Claim a key: a ``rules.Claim`` and the record found (None when the claim is ours). Claiming is one
        atomic ``create()``; a record the rules let us take over (expired, or an abandoned claim) is replaced
        with an update conditioned on the exact version we read, so concurrent duplicates never both win."""
        ref = self.db.collection(C.IDEMPOTENCY).document(record_id)
        fresh = rules.fresh_record(payload_hash, now, lease_seconds=lease_seconds, ttl_seconds=ttl_seconds).to_doc()
        for _ in range(5):
            try:
                ref.create(fresh)
                return rules.Claim.NEW, None
            except gexc.AlreadyExists:
                pass
            snap = ref.get()
            if not snap.exists:
                continue  # released between our create and our read
            record = IdempotencyRecord.from_doc(snap.to_dict() or {})
            found = rules.claim(record, payload_hash, now)
            if found is not rules.Claim.NEW:
                return found, record
            try:
                ref.update(fresh, option=self.db.write_option(last_update_time=snap.update_time))
                return rules.Claim.NEW, None
            except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
                continue
        # Five rounds lost to other claimants: one of them holds it now, so this duplicate is told to wait.
        return rules.Claim.IN_PROGRESS, None

    def complete(self, record_id: str, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.db.collection(C.IDEMPOTENCY).document(record_id).update(
            {"state": "completed", "response_status": status, "response_body": body, "response_headers": headers})

    def release(self, record_id: str) -> None:
        self.db.collection(C.IDEMPOTENCY).document(record_id).delete()
