"""Optimistic concurrency for Firestore: read, decide, commit one batch conditioned on what was read.

No Firestore transaction is used: the emulator's pessimistic locks collapse under contention (docs/decisions.md),
and a conditioned batch holds no lock, so concurrent requests never wait on each other.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from google.api_core import exceptions as gexc

from shared.ports import Contended

T = TypeVar("T")

# Concurrent round trips of one request (the client is thread-safe; gRPC waits release the GIL).
io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="firestore")

CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted, gexc.NotFound)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def commit_if_unchanged(attempt: Callable[[], T], tries: int = 40) -> T:
    """``attempt`` reads, decides and commits one batch whose writes are conditioned on the versions it
    read (``last_update_time``) or on absence (``create``). A conflict means someone else wrote first:
    read again and decide again. Running out of tries raises ``Contended`` (answered 429/503, never 500)."""
    for n in range(tries):
        try:
            return attempt()
        except CONFLICTS:
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**n)))
    raise Contended("too many concurrent writes to the same records")


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of ``after`` that differ from ``before`` (what an update needs to send)."""
    if before is None:
        return dict(after)
    return {key: value for key, value in after.items() if before.get(key, _MISSING) != value}


_MISSING = object()
