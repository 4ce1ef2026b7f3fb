"""Fixed-window rate limits as slot documents: exact under any concurrency, with no hot counter."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C


def slot_id(window: str, slot: int) -> str:
    """One name per slot. ``slot`` is always an int: a float (``count()`` can answer ``0.0``) would start a
    second chain of names (``…:1.0`` beside ``…:1``) and admit the limit twice."""
    return f"{window}:{int(slot)}"


def _count(query: Any) -> int:
    """A count aggregation's value; the emulator answers ``0.0`` for none, an int otherwise."""
    return int(query.count().get()[0][0].value)


class FirestoreLimits:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self._next_slot: dict[str, int] = {}  # rate-limit window -> first slot not known to be taken

    def claim(self, key: str, limit: int, window_seconds: int, now: dt.datetime) -> tuple[int | None, int]:
        """Claim a free slot below ``limit`` in the current window: its number (None if every slot is taken),
        and the seconds until the window ends. A request is admitted if its slot is below the limit in force,
        so a caller that claimed under a guessed limit compares the slot with the real one.

        Each admitted request claims its own slot document ``{key}:{window}:{n}`` with ``create()``, which
        fails if the slot is taken, so no document takes more than one write. The first slot worth trying
        comes from this instance's last claim in the window; in a window this instance has not claimed in yet
        (every second, for a per-second limit) slot 0 is tried first, which is free whenever this request is
        the window's first; else a count query says where to start."""
        start = int(now.timestamp()) // window_seconds * window_seconds
        retry_after = max(1, start + window_seconds - int(now.timestamp()))
        window = f"{key}:{start}"
        slots = self.db.collection(C.RATE_LIMITS)
        expires = dt.datetime.fromtimestamp(start + window_seconds, dt.UTC) + dt.timedelta(hours=1)
        hint = self._next_slot.get(window)
        counted: int | None = None
        first = ["hint"] if hint is not None and hint < limit else ["first"] if hint is None and limit > 0 else []
        for start_from in first + ["count", "rescan"]:
            last = limit
            if start_from == "hint":
                slot = int(hint or 0)
            elif start_from == "first":  # one try: a taken slot 0 means others are ahead, so count them
                slot, last = 0, 1
            elif start_from == "count":  # no usable hint, or it ran into the limit: count what is taken
                counted = _count(slots.where(filter=FieldFilter("window", "==", window)))
                slot = counted
            elif counted is not None and counted < limit:
                # The count saw room the walks above did not find: slots below were deleted (TTL, or a
                # reset of the local stack) and were skipped. Look from the first slot.
                slot = 0
            else:
                break
            while slot < last:
                try:
                    slots.document(slot_id(window, slot)).create({"window": window, "expires_at": expires})
                    self._remember(window, slot + 1)
                    return slot, retry_after
                except gexc.AlreadyExists:
                    slot += 1
        self._next_slot.pop(window, None)
        return None, retry_after

    def _remember(self, window: str, slot: int) -> None:
        if len(self._next_slot) > 1000:  # windows pass; forget the old ones
            self._next_slot.clear()
        self._next_slot[window] = slot
