"""In-memory state: messages, per-key attempt counters, the webhook delivery log."""

from __future__ import annotations

import threading
from typing import Any

from .wire import Message


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, Message] = {}
        self._attempts: dict[tuple, int] = {}
        self._webhook_log: list[dict] = []
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

    def reset(self) -> None:
        with self._lock:
            self.generation += 1
            self._messages.clear()
            self._attempts.clear()
            self._webhook_log.clear()
