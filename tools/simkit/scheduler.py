"""A timer heap feeding a fixed pool of worker threads.

Webhook work is many short steps separated by waits (delay, retry pause). Sleeping in one thread per
message does not scale to thousands of messages, and a shared HTTP client pool used by thousands of
threads degrades badly; a bounded pool of workers that only hold a thread while doing real work does.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable


class Scheduler:
    def __init__(self, workers: int, on_error: Callable[[BaseException], None], name: str = "sim"):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._ready: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._stopped = False
        self._running = 0  # jobs taken from the ready queue and not finished (a webhook POST in flight)
        self._on_error = on_error
        self._threads = [threading.Thread(target=self._timer, name=f"{name}-timer", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"{name}-worker-{i}", daemon=True)
                          for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq), fn))
            self._cond.notify()

    def busy(self, within_s: float) -> int:
        """Jobs running, ready, or due within ``within_s``: what may still reach a webhook URL shortly (the
        test harness waits for none before it resets; later jobs die with the reset's generation)."""
        with self._cond:
            soon = time.monotonic() + within_s
            return self._running + self._ready.qsize() + sum(1 for at, _, _ in self._heap if at <= soon)

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        for _ in self._threads[1:]:
            self._ready.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _timer(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._ready.put(heapq.heappop(self._heap)[2])

    def _work(self) -> None:
        while True:
            fn = self._ready.get()
            if fn is None or self._stopped:
                return
            with self._cond:
                self._running += 1
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - a failing job must not take a worker down
                self._on_error(exc)
            finally:
                with self._cond:
                    self._running -= 1
