"""Carrier health and traffic counters (``shared.ports.CarrierStore``).

Health is one document per carrier (``carriers/{name}``), written by the health job at most once a minute
and read by accepts through a short per-instance cache, so routing costs no read on most sends.

Traffic counters are slot documents: ``carriers/{carrier}/carrier_slots/{minute}:{shard}`` (messages given,
delivered fast) and ``carriers/{carrier}.errors/carrier_slots/{ten seconds}:{shard}`` (errors: a burst window
is short). A dispatch or a report adds one to a random shard of the current slot with a field transform, so
no document takes more than a few writes a second at Telnyx's account default of 15 MMS a second (Firestore
sustains about one write a second per document: docs/decisions.md, "Carrier routing and failover"). The job
reads a carrier's recent slots with one range query on ``start`` each (Firestore's default single-field
index; no composite index). Slots expire after a day (TTL on ``expires_at``, collection group carrier_slots).
"""

from __future__ import annotations

import datetime as dt
import random
import time

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from shared.ports import CarrierSlot
from shared.rules.routing import CarrierHealth

SHARDS = 4
KEEP = dt.timedelta(days=1)
CACHE_SECONDS = 10.0
FIELDS = ("given", "fast")
ERROR_SLOT_SECONDS = 10



class FirestoreCarriers:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self._cached: tuple[float, dict[str, CarrierHealth]] | None = None

    def health(self) -> dict[str, CarrierHealth]:
        if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        found = {}
        for snap in self.db.collection(C.CARRIERS).stream():
            doc = snap.to_dict() or {}
            found[snap.id] = CarrierHealth(
                carrier=snap.id, healthy=doc.get("healthy") is not False, penalty=int(doc.get("penalty") or 0),
                reason=str(doc.get("reason") or ""), changed_at=doc.get("changed_at"),
                quiet_since=doc.get("quiet_since"), tripped=bool(doc.get("tripped")))
        self._cached = (time.monotonic(), found)
        return found

    def save_health(self, health: CarrierHealth) -> None:
        self.db.collection(C.CARRIERS).document(health.carrier).set({
            "healthy": health.healthy, "penalty": health.penalty, "reason": health.reason,
            "changed_at": health.changed_at, "quiet_since": health.quiet_since, "tripped": health.tripped})
        self._cached = None

    def _slots(self, carrier: str, errors: bool) -> firestore.CollectionReference:
        # A carrier's minutes under its own document, its error slots under "<carrier>.errors" (a parent that is
        # never written: the health stream does not see it); both are the collection group carrier_slots (TTL).
        parent = f"{carrier}.errors" if errors else carrier
        return self.db.collection(C.CARRIERS).document(parent).collection(C.CARRIER_SLOTS)

    def count(self, carrier: str, field: str, at: dt.datetime) -> None:
        if field not in (*FIELDS, "errors"):
            raise ValueError(f"unknown carrier counter {field!r}")
        errors = field == "errors"
        seconds = ERROR_SLOT_SECONDS if errors else 60
        slot = int(at.timestamp() // seconds)
        start = dt.datetime.fromtimestamp(slot * seconds, dt.UTC)
        ref = self._slots(carrier, errors).document(f"{slot}:{random.randrange(SHARDS)}")
        try:
            ref.set({field: firestore.Increment(1), "carrier": carrier, "start": start,
                     "expires_at": start + KEEP}, merge=True)
        except Exception:  # noqa: BLE001 - a lost count blurs a sample; it must never fail a send or a report
            pass

    def _since(self, carrier: str, errors: bool, since: dt.datetime, until: dt.datetime) -> list[dict]:
        """The slots that exist from ``since``'s slot to ``until``: one range query on ``start`` (a single-field
        index, which Firestore keeps by default), not a read of every possible slot."""
        seconds = ERROR_SLOT_SECONDS if errors else 60
        first = dt.datetime.fromtimestamp(int(since.timestamp() // seconds) * seconds, dt.UTC)
        query = self._slots(carrier, errors).where(filter=FieldFilter("start", ">=", first))
        return [doc for snap in query.stream() if (doc := snap.to_dict() or {}).get("start") is not None
                and doc["start"] <= until]

    def slots(self, carrier: str, since: dt.datetime, until: dt.datetime) -> list[CarrierSlot]:
        totals: dict[dt.datetime, dict[str, int]] = {}
        for doc in self._since(carrier, False, since, until):
            slot = totals.setdefault(doc["start"], dict.fromkeys(FIELDS, 0))
            for name in FIELDS:
                slot[name] += int(doc.get(name) or 0)
        return [CarrierSlot(start=start, **totals[start]) for start in sorted(totals)]

    def errors(self, carrier: str, since: dt.datetime, until: dt.datetime) -> int:
        return sum(int(doc.get("errors") or 0) for doc in self._since(carrier, True, since, until))
