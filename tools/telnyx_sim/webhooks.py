"""Delivery-report webhooks: message.sent then message.finalized, signed, retried, failed over (§2, §3)."""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from typing import Callable

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import net
from .config import SimConfig
from .outcomes import UNDELIVERABLE_ERROR, final_status
from .signing import sign_with
from .state import Store
from .wire import Message, iso, now_utc


class WebhookDispatcher:
    """One background thread per (message, recipient) walks the timeline:

    wait ``webhook_delay_ms`` → status ``sent``, deliver ``message.sent`` (all attempts, or give up) →
    wait again → final status, deliver ``message.finalized``. So finalized never overtakes sent.
    """

    def __init__(self, config: SimConfig, store: Store, key: Ed25519PrivateKey,
                 stop: threading.Event, log: Callable[[str], None]):
        self.config = config
        self.store = store
        self.key = key
        self.stop = stop
        self.log = log
        self.client = net.client(config.webhook_timeout_s, keepalive=64)

    def close(self) -> None:
        self.client.close()

    def schedule(self, message: Message, generation: int) -> None:
        for index in range(len(message.recipients)):
            threading.Thread(target=self._timeline, args=(message, index, generation), daemon=True,
                             name=f"telnyx-sim-dlr-{message.id[:8]}-{index}").start()

    # -------------------------------------------------------------- internals

    def _alive(self, generation: int) -> bool:
        return not self.stop.is_set() and generation == self.store.generation

    def _pause(self, seconds: float, generation: int) -> bool:
        if seconds > 0:
            self.stop.wait(seconds)
        return self._alive(generation)

    def _timeline(self, message: Message, index: int, generation: int) -> None:
        try:
            delay = self.config.webhook_delay_ms / 1000.0
            recipient = message.recipients[index]
            if not self._pause(delay, generation):
                return
            with message.lock:
                recipient.status = "sent"
                recipient.sent_at = now_utc()
                payload = message.payload(index, focus_status="queued")
            self._deliver(message, recipient.phone_number, "message.sent", payload, generation)

            final = final_status(recipient.outcome)
            if final is None or not self._pause(delay, generation):
                return
            with message.lock:
                recipient.status = final
                recipient.completed_at = now_utc()
                recipient.cost = message.unit_cost()
                if final == "delivery_failed":
                    recipient.errors = [dict(UNDELIVERABLE_ERROR, meta=dict(UNDELIVERABLE_ERROR["meta"]))]
                payload = message.payload(index)
            self._deliver(message, recipient.phone_number, "message.finalized", payload, generation)
        except Exception:  # never let a background thread die silently (quiet once shut down or reset)
            if self._alive(generation):
                self.log("webhook thread crashed:\n" + traceback.format_exc())

    def _deliver(self, message: Message, recipient: str, event_type: str, payload: dict,
                 generation: int) -> bool:
        urls = [u for u in (message.webhook_url, message.webhook_failover_url) if u]
        if not urls or not self._alive(generation):
            return False
        data = {"record_type": "event", "id": str(uuid.uuid4()), "event_type": event_type,
                "occurred_at": iso(now_utc()), "payload": payload}
        pause = self.config.webhook_retry_pause_ms / 1000.0
        deadline = self.config.webhook_timeout_s
        attempt = 0
        for url_index, url in enumerate(urls):
            for _ in range(max(1, self.config.webhook_attempts)):
                if attempt and not self._pause(pause, generation):
                    return False
                if not self._alive(generation):
                    return False
                attempt += 1
                body = json.dumps({"data": data, "meta": {"attempt": attempt, "delivered_to": url}}).encode()
                timestamp = str(int(time.time()))
                headers = {
                    "content-type": "application/json",
                    "telnyx-timestamp": timestamp,
                    "telnyx-signature-ed25519": sign_with(self.key, timestamp, body),
                    "user-agent": "telnyx-webhooks (telnyx-sim)",
                }
                status: int | None = None
                error: str | None = None
                started = time.monotonic()
                try:
                    status = self.client.post(url, content=body, headers=headers).status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                elapsed = time.monotonic() - started
                ok = status is not None and 200 <= status < 300
                if ok and elapsed > deadline:
                    ok, error = False, f"answered after {elapsed:.2f}s, over the {deadline:g}s deadline"
                self.store.log_webhook(generation, {
                    "at": iso(now_utc()), "url": url, "failover": url_index > 0,
                    "event_id": data["id"], "event_type": event_type, "message_id": message.id,
                    "to": recipient, "attempt": attempt, "status": status, "error": error,
                    "elapsed_ms": round(elapsed * 1000, 1), "result": "delivered" if ok else "failed",
                })
                if self.config.log_requests:
                    self.log(f"webhook {event_type} {message.id} -> {url} attempt {attempt}: "
                             f"{status if status is not None else error}")
                if ok:
                    return True
        self.store.log_webhook(generation, {
            "at": iso(now_utc()), "url": None, "failover": None, "event_id": data["id"],
            "event_type": event_type, "message_id": message.id, "to": recipient, "attempt": attempt,
            "status": None, "error": f"gave up after {attempt} attempts", "elapsed_ms": None,
            "result": "gave_up",
        })
        self.log(f"webhook {event_type} {message.id}: gave up after {attempt} attempts")
        return False
