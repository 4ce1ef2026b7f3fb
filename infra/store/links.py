"""Short links: one document per code in ``links`` (shared/services/links.py). The redirect reads one document
by its id; Firestore TTL deletes a link at ``expires_at`` (the message's retention), and a redaction deletes a
message's links at once (``forget``)."""

from __future__ import annotations

from collections.abc import Sequence

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from shared.rules.links import Link

_DELETE_BATCH = 400  # below Firestore's 500 writes per batch


class FirestoreLinks:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def put(self, links: Sequence[Link]) -> None:
        for at in range(0, len(links), _DELETE_BATCH):
            batch = self.db.batch()
            for link in links[at:at + _DELETE_BATCH]:
                # create(): a code is random; a collision (never expected at 72 bits) fails rather than
                # hijacking another message's link.
                batch.create(self.db.collection(C.LINKS).document(link.code), link.to_doc())
            batch.commit()

    def get(self, code: str) -> Link | None:
        snap = self.db.collection(C.LINKS).document(code).get()
        return Link.from_doc(snap.to_dict() or {}) if snap.exists else None

    def forget(self, message_id: str) -> int:
        query = self.db.collection(C.LINKS).where(filter=FieldFilter("message_id", "==", message_id))
        refs = [snap.reference for snap in query.stream()]
        for at in range(0, len(refs), _DELETE_BATCH):
            batch = self.db.batch()
            for ref in refs[at:at + _DELETE_BATCH]:
                batch.delete(ref)
            batch.commit()
        return len(refs)
