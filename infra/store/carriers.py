"""Carrier health and traffic counters (``shared.ports.CarrierStore``).

Health is one document per carrier (``carriers/{name}``), written by the health job at most once a minute
and read by accepts through a short per-instance cache, so routing costs no read on most sends.

Traffic counters are slot documents ``carrier_slots/{carrier}:{minute}:{shard}`` (messages given, delivered fast)
and ``carrier_slots/{carrier}:e{ten seconds}:{shard}`` (errors: a burst window is short): a dispatch or a report
adds one to a random shard of the current slot with a field transform, so no document takes more than a few
writes a second at Telnyx's account default of 15 MMS a second (Firestore sustains about one write a second
per document: docs/decisions.md, "Carrier routing and failover"). The job reads a carrier's last minutes by id
in one batch get; no query, no index. Slots expire after a day (TTL on ``expires_at``).
"""

from __future__ import annotations

import datetime as dt
import random
import time

from google.cloud import firestore

from infra import collections as C
from shared.ports import CarrierSlot
from shared.rules.routing import CarrierHealth

SHARDS = 4
SLOT = dt.timedelta(minutes=1)
KEEP = dt.timedelta(days=1)
CACHE_SECONDS = 10.0
FIELDS = ("given", "fast")
ERROR_SLOT_SECONDS = 10


def minute_of(at: dt.datetime) -> int:
    return int(at.timestamp() // 60)


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

    def count(self, carrier: str, field: str, at: dt.datetime) -> None:
        if field not in (*FIELDS, "errors"):
            raise ValueError(f"unknown carrier counter {field!r}")
        if field == "errors":
            slot = int(at.timestamp() // ERROR_SLOT_SECONDS)
            name, start = f"e{slot}", dt.datetime.fromtimestamp(slot * ERROR_SLOT_SECONDS, dt.UTC)
        else:
            minute = minute_of(at)
            name, start = str(minute), dt.datetime.fromtimestamp(minute * 60, dt.UTC)
        ref = self.db.collection(C.CARRIER_SLOTS).document(f"{carrier}:{name}:{random.randrange(SHARDS)}")
        try:
            ref.set({field: firestore.Increment(1), "carrier": carrier, "start": start,
                     "expires_at": start + KEEP}, merge=True)
        except Exception:  # noqa: BLE001 - a lost count blurs a sample; it must never fail a send or a report
            pass

    def slots(self, carrier: str, since: dt.datetime, until: dt.datetime) -> list[CarrierSlot]:
        first, last = minute_of(since), minute_of(until)
        refs = [self.db.collection(C.CARRIER_SLOTS).document(f"{carrier}:{m}:{s}")
                for m in range(first, last + 1) for s in range(SHARDS)]
        totals: dict[int, dict[str, int]] = {}
        for snap in self.db.get_all(refs):
            if not snap.exists:
                continue
            minute = int(snap.id.split(":")[1])
            doc = snap.to_dict() or {}
            slot = totals.setdefault(minute, dict.fromkeys(FIELDS, 0))
            for name in FIELDS:
                slot[name] += int(doc.get(name) or 0)
        return [CarrierSlot(start=dt.datetime.fromtimestamp(m * 60, dt.UTC), **totals[m]) for m in sorted(totals)]

    def errors(self, carrier: str, since: dt.datetime, until: dt.datetime) -> int:
        first = int(since.timestamp() // ERROR_SLOT_SECONDS)
        last = int(until.timestamp() // ERROR_SLOT_SECONDS)
        refs = [self.db.collection(C.CARRIER_SLOTS).document(f"{carrier}:e{n}:{s}")
                for n in range(first, last + 1) for s in range(SHARDS)]
        return sum(int((snap.to_dict() or {}).get("errors") or 0) for snap in self.db.get_all(refs) if snap.exists)
