"""In-memory state: messages, attempt counters, the opt-out blocklist, sender queues, the API rate window,
inbound messages and their media, the webhook log, counters."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .wire import Message


@dataclass
class Media:
    sid: str
    message_sid: str
    content_type: str
    data: bytes


@dataclass
class Inbound:
    sid: str
    params: dict[str, str]
    opt_out_type: str | None
    auto_reply: str | None
    media: list[Media] = field(default_factory=list)
    deliveries: int = 0


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, Message] = {}  # in creation order
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._blocklist: set[tuple[str, str]] = set()  # (our number, handset)
        self._queues: dict[str, float] = {}  # sender -> time.monotonic() its queue is free again
        self._window: deque[float] = deque()  # API request times within the last second
        self._inbound: dict[str, Inbound] = {}
        self._media: dict[str, Media] = {}
        self._webhook_log: list[dict[str, Any]] = []
        self.counters: Counter[str] = Counter()
        self.generation = 0  # bumped by reset(); background work of an older generation goes quiet

    # -- API rate (§7: 429/20429, "never processed") ------------------------------------------------
    def admit(self, limit_per_s: int) -> bool:
        if limit_per_s <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= limit_per_s:
                self.counters["rate_limited"] += 1
                return False
            self._window.append(now)
            return True

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    # -- messages -------------------------------------------------------------------------------------
    def next_attempt(self, key: tuple[str, str, str]) -> int:
        with self._lock:
            n = self._attempts.get(key, 0) + 1
            self._attempts[key] = n
            return n

    def add(self, message: Message, generation: int) -> bool:
        with self._lock:
            if generation != self.generation:
                return False
            self._messages[message.sid] = message
            return True

    def get(self, sid: str) -> Message | None:
        with self._lock:
            return self._messages.get(sid)

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self._messages.values())

    # -- sender queues (§7) --------------------------------------------------------------------------
    def reserve_slot(self, sender: str, seconds: float, capacity_s: float) -> float | None:
        """Queue ``seconds`` of sending time behind the sender's backlog. Returns the delay until this
        message's turn, or None when the queue would hold more than ``capacity_s`` (nothing reserved)."""
        now = time.monotonic()
        with self._lock:
            free = max(now, self._queues.get(sender, now))
            if free - now + seconds > capacity_s:
                return None
            self._queues[sender] = free + seconds
            return free - now

    # -- opt-out (§5) ---------------------------------------------------------------------------------
    def block(self, ours: str, handset: str) -> None:
        with self._lock:
            self._blocklist.add((ours, handset))

    def unblock(self, ours: str, handset: str) -> None:
        with self._lock:
            self._blocklist.discard((ours, handset))

    def blocked(self, ours: str, handset: str) -> bool:
        with self._lock:
            return (ours, handset) in self._blocklist

    def blocked_anywhere(self, handset: str) -> bool:
        """With a Messaging Service the opt-out scope is the service (§5); the simulator does not know which
        numbers a service holds, so an opt-out from any of our numbers counts (the harsher reading)."""
        with self._lock:
            return any(h == handset for _, h in self._blocklist)

    def blocklist(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"from": ours, "to": handset} for ours, handset in sorted(self._blocklist)]

    # -- inbound --------------------------------------------------------------------------------------
    def add_inbound(self, message: Inbound) -> None:
        with self._lock:
            self._inbound[message.sid] = message
            for media in message.media:
                self._media[media.sid] = media

    def inbound(self) -> list[Inbound]:
        with self._lock:
            return list(self._inbound.values())

    def media(self, sid: str) -> Media | None:
        with self._lock:
            return self._media.get(sid)

    def delete_media(self, sid: str) -> bool:
        with self._lock:
            return self._media.pop(sid, None) is not None

    # -- webhook log ----------------------------------------------------------------------------------
    def log_webhook(self, generation: int, entry: dict[str, Any]) -> None:
        with self._lock:
            if generation == self.generation:
                self._webhook_log.append(entry)

    def webhook_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._webhook_log]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_status = Counter(m.status for m in self._messages.values())
            return {"messages": len(self._messages), "by_status": dict(by_status),
                    "inbound": len(self._inbound), "blocklist": len(self._blocklist),
                    "webhooks": len(self._webhook_log), **dict(self.counters)}

    def reset(self) -> None:
        with self._lock:
            self.generation += 1
            self._messages.clear()
            self._attempts.clear()
            self._blocklist.clear()
            self._queues.clear()
            self._window.clear()
            self._inbound.clear()
            self._media.clear()
            self._webhook_log.clear()
            self.counters.clear()
