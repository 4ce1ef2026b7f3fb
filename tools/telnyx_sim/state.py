"""In-memory state: messages, per-key attempt counters, idempotency records (only with replay on), the webhook
delivery log."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .wire import Message


@dataclass(frozen=True)
class IdempotencyRecord:
    """A successful keyed answer, replayed to an identical request while it lives (only with
    ``idempotency_replay`` on; the generic idempotency page says 24 h)."""

    key: str
    method: str
    path: str
    query: str
    body: bytes  # the request body, compared byte for byte
    status: int
    response: bytes  # the answer's body, replayed byte for byte
    message_id: str | None
    created: float  # time.monotonic()


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, Message] = {}
        self._attempts: dict[tuple, int] = {}
        self._webhook_log: list[dict] = []
        self._idempotency: dict[tuple[str, str, str], IdempotencyRecord] = {}
        self._key_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._replays: Counter[str] = Counter()
        self._conflicts: Counter[str] = Counter()
        self._ignored = 0  # keyed sends whose key was ignored (idempotency_replay off)
        self.generation = 0  # bumped by reset(); background work of an older generation goes quiet

    def next_attempt(self, key: tuple) -> int:
        with self._lock:
            n = self._attempts.get(key, 0) + 1
            self._attempts[key] = n
            return n

    def add(self, message: Message, generation: int) -> bool:
        with self._lock:
            if generation != self.generation:
                return False
            self._messages[message.id] = message
            return True

    def get(self, message_id: str) -> Message | None:
        with self._lock:
            return self._messages.get(message_id)

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages.values())

    def log_webhook(self, generation: int, entry: dict[str, Any]) -> None:
        with self._lock:
            if generation == self.generation:
                self._webhook_log.append(entry)

    def webhook_log(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._webhook_log]

    # -- idempotency ---------------------------------------------------------------------------------
    def key_lock(self, record_key: tuple[str, str, str]) -> threading.Lock:
        """Requests with one key run one at a time, so a concurrent duplicate waits and then gets the replay."""
        with self._lock:
            return self._key_locks.setdefault(record_key, threading.Lock())

    def idempotency_record(self, record_key: tuple[str, str, str], ttl: float) -> IdempotencyRecord | None:
        with self._lock:
            record = self._idempotency.get(record_key)
            if record is not None and time.monotonic() - record.created >= ttl:
                del self._idempotency[record_key]
                return None
            return record

    def remember(self, record: IdempotencyRecord, generation: int) -> None:
        with self._lock:
            if generation == self.generation:
                self._idempotency[(record.key, record.method, record.path)] = record

    def count_replay(self, key: str) -> None:
        with self._lock:
            self._replays[key] += 1

    def count_conflict(self, key: str) -> None:
        with self._lock:
            self._conflicts[key] += 1

    def count_ignored(self) -> None:
        with self._lock:
            self._ignored += 1

    def idempotency_stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ignored": self._ignored,
                "records": len(self._idempotency),
                "replays": sum(self._replays.values()),
                "conflicts": sum(self._conflicts.values()),
                "replays_by_key": dict(self._replays),
                "conflicts_by_key": dict(self._conflicts),
            }

    def reset(self) -> None:
        with self._lock:
            self.generation += 1
            self._messages.clear()
            self._attempts.clear()
            self._webhook_log.clear()
            self._idempotency.clear()
            self._key_locks.clear()
            self._replays.clear()
            self._conflicts.clear()
            self._ignored = 0
