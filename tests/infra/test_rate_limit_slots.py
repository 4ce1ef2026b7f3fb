"""Rate-limit slots under concurrency (issue 10, defect 3): exact in every window, whoever counts first.

Each caller gets a fresh ``FirestoreLimits`` (no per-instance hint), so every one of them starts from the
``count()`` query, the path whose float answer (``0.0``) once started a second chain of slot names."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra.store.limits import FirestoreLimits, slot_id

pytestmark = pytest.mark.stack


def test_slot_ids_are_the_same_for_an_int_and_an_integral_float():
    assert slot_id("t:rps:100", 1.0) == slot_id("t:rps:100", 1) == "t:rps:100:1"  # type: ignore[arg-type]


@pytest.mark.parametrize("window_start", [1_800_000_000, 1_800_000_060, 1_800_000_120])
def test_forty_concurrent_hits_admit_exactly_the_limit_in_each_window(env, window_start):
    now = dt.datetime.fromtimestamp(window_start + 30, dt.UTC)  # mid-window: all forty share it
    barrier = threading.Barrier(40)

    def hit(_: int) -> bool:
        limits = FirestoreLimits(env.store.db)
        barrier.wait()
        return limits.claim(f"{env.tenant_id}:test", 10, 60, now)[0] is not None

    with ThreadPoolExecutor(40) as pool:
        admitted = list(pool.map(hit, range(40)))

    assert admitted.count(True) == 10
    # And one instance that keeps hitting afterwards (its hint path) is refused too.
    assert FirestoreLimits(env.store.db).claim(f"{env.tenant_id}:test", 10, 60, now)[0] is None


def test_two_instances_taking_turns_admit_exactly_the_limit(env):
    """The empty window's count is ``0.0`` on the emulator; an instance that started from it and one that
    started from an integer count must walk the same slot names, or both fill the limit."""
    now = dt.datetime.fromtimestamp(1_800_000_230, dt.UTC)
    first, second = FirestoreLimits(env.store.db), FirestoreLimits(env.store.db)
    admitted = [limits.claim(f"{env.tenant_id}:turns", 10, 60, now)[0] is not None
                for _ in range(20) for limits in (first, second)]
    assert admitted.count(True) == 10
    assert admitted[:10] == [True] * 10


def test_slots_deleted_below_a_hint_are_found_again(env):
    """Slot documents can disappear under a live hint (TTL; a reset of the local stack): the window
    still admits exactly the limit, neither fewer (skipping the gap) nor more."""
    from infra import collections as C

    now = dt.datetime.fromtimestamp(1_800_000_330, dt.UTC)
    limits = FirestoreLimits(env.store.db)
    key = f"{env.tenant_id}:gaps"
    assert all(limits.claim(key, 10, 60, now)[0] is not None for _ in range(5))
    window = f"{key}:{1_800_000_300}"
    for slot in range(3):
        env.store.db.collection(C.RATE_LIMITS).document(slot_id(window, slot)).delete()

    admitted = [limits.claim(key, 10, 60, now)[0] is not None for _ in range(12)]

    assert admitted.count(True) == 8  # 10 slots, 2 still held from before
