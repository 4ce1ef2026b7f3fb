"""Delivery-report webhooks: message.sent then message.finalized, signed, retried, failed over (§2, §3).

Per (message, recipient) the timeline is: wait ``webhook_delay_ms`` → status ``sent`` → deliver
``message.sent`` (every attempt, or give up) → wait ``webhook_delay_ms`` → final status → deliver
``message.finalized``. The finalized step is scheduled only once the sent delivery has finished, so a
receiver that answers promptly sees the two events in order. A delivery is up to ``webhook_attempts``
POSTs to the primary URL, then as many to the failover URL, ``webhook_retry_pause_ms`` apart; the event
id is the same on every attempt and ``meta.attempt`` counts them from 1.

A "silent" recipient (``+1NPA55503`` 00-49) follows the same timeline, but none of its events is POSTed or
logged: its status moves on as if it had no webhook URL.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.simkit import net
from tools.simkit.scheduler import Scheduler

from .config import SimConfig
from .outcomes import UNDELIVERABLE_ERROR, final_status, is_silent
from .signing import sign_with
from .state import Store
from .wire import Message, iso, now_utc

USER_AGENT = "telnyx-webhooks (telnyx-sim)"


def post(url: str, body: bytes, headers: dict[str, str], timeout: float,
         context: ssl.SSLContext) -> int:
    """One POST on a fresh connection, no redirects followed.

    Returns the HTTP status; raises OSError (refused, timed out…) or HTTPException.
    """
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context)
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    else:
        raise http.client.InvalidURL(f"unsupported URL scheme {parts.scheme!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        response.read(1 << 20)
        return response.status
    finally:
        conn.close()


@dataclass
class _Delivery:
    message: Message | _Named
    recipient: str
    event_type: str
    data: dict
    urls: list[str]
    generation: int
    then: Callable[[], None]
    attempt: int = 0
    per_url: list[int] = field(default_factory=list)


class WebhookDispatcher:
    def __init__(self, config: SimConfig, store: Store, key: Ed25519PrivateKey,
                 log: Callable[[str], None]):
        self.config = config
        self.store = store
        self.key = key
        self.log = log
        self._stopped = False
        self._context = net.ssl_context()
        self.scheduler = Scheduler(config.webhook_workers, self._job_failed, name="telnyx-sim")

    def close(self) -> None:
        self._stopped = True
        self.scheduler.stop()

    def schedule(self, message: Message, generation: int) -> None:
        delay = self.config.webhook_delay_ms / 1000.0
        for index in range(len(message.recipients)):
            self.scheduler.call_later(delay, lambda i=index: self._sent_step(message, i, generation))

    def deliver_inbound(self, message_id: str, recipient: str, data: dict, generation: int) -> None:
        """A ``message.received`` event (``data``, its id fixed) to the profile's webhook, then its failover."""
        urls = [u for u in (self.config.profile_webhook_url, self.config.profile_webhook_failover_url) if u]
        if not urls:
            return
        self.scheduler.call_later(0, lambda: self._attempt(_Delivery(
            _Named(message_id), recipient, "message.received", data, urls, generation, _nothing)))

    # -------------------------------------------------------------- timeline steps

    def _alive(self, generation: int) -> bool:
        return not self._stopped and generation == self.store.generation

    def _job_failed(self, exc: BaseException) -> None:
        if not self._stopped:
            self.log("webhook job failed:\n" + "".join(traceback.format_exception(exc)))

    def _sent_step(self, message: Message, index: int, generation: int) -> None:
        if not self._alive(generation):
            return
        recipient = message.recipients[index]
        with message.lock:
            recipient.status = "sent"
            recipient.sent_at = now_utc()
            payload = message.payload(index, focus_status="queued")
        def after():
            self.scheduler.call_later(self.config.webhook_delay_ms / 1000.0,
                                      lambda: self._final_step(message, index, generation))
        if final_status(recipient.outcome, message.request.type) is None:
            after = _nothing
        self._start_delivery(message, recipient.phone_number, "message.sent", payload, generation, after,
                             silent=is_silent(recipient.outcome))

    def _final_step(self, message: Message, index: int, generation: int) -> None:
        if not self._alive(generation):
            return
        recipient = message.recipients[index]
        final = final_status(recipient.outcome, message.request.type)
        with message.lock:
            recipient.status = final
            recipient.completed_at = now_utc()
            recipient.cost = message.unit_cost()
            if final == "delivery_failed":
                recipient.errors = [dict(UNDELIVERABLE_ERROR, meta=dict(UNDELIVERABLE_ERROR["meta"]))]
            payload = message.payload(index)
        self._start_delivery(message, recipient.phone_number, "message.finalized", payload, generation,
                             _nothing, silent=is_silent(recipient.outcome))

    # -------------------------------------------------------------- delivery with retry and failover

    def _start_delivery(self, message: Message, recipient: str, event_type: str, payload: dict,
                        generation: int, then: Callable[[], None], silent: bool = False) -> None:
        urls = [u for u in (message.webhook_url, message.webhook_failover_url) if u]
        if not urls or silent:
            then()  # no webhook configured (or a silent recipient): the status still moves on
            return
        data = {"record_type": "event", "id": str(uuid.uuid4()), "event_type": event_type,
                "occurred_at": iso(now_utc()), "payload": payload}
        self._attempt(_Delivery(message, recipient, event_type, data, urls, generation, then))

    def _attempt(self, d: _Delivery) -> None:
        if not self._alive(d.generation):
            return
        per_url = max(1, self.config.webhook_attempts)
        url_index = d.attempt // per_url
        url = d.urls[url_index]
        d.attempt += 1
        body = json.dumps({"data": d.data, "meta": {"attempt": d.attempt, "delivered_to": url}}).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "telnyx-timestamp": timestamp,
            "telnyx-signature-ed25519": sign_with(self.key, timestamp, body),
            "User-Agent": USER_AGENT,
        }
        deadline = self.config.webhook_timeout_s
        status: int | None = None
        error: str | None = None
        started = time.monotonic()
        try:
            status = post(url, body, headers, deadline, self._context)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        elapsed = time.monotonic() - started
        ok = status is not None and 200 <= status < 300
        if ok and elapsed > deadline:
            ok, error = False, f"answered after {elapsed:.2f}s, over the {deadline:g}s deadline"
        if not self._alive(d.generation):
            return
        self.store.log_webhook(d.generation, {
            "at": iso(now_utc()), "url": url, "failover": url_index > 0,
            "event_id": d.data["id"], "event_type": d.event_type, "message_id": d.message.id,
            "to": d.recipient, "attempt": d.attempt, "status": status, "error": error,
            "elapsed_ms": round(elapsed * 1000, 1), "result": "delivered" if ok else "failed",
        })
        if self.config.log_requests:
            self.log(f"webhook {d.event_type} {d.message.id} -> {url} attempt {d.attempt}: "
                     f"{status if status is not None else error}")
        if ok:
            d.then()
        elif d.attempt < per_url * len(d.urls):
            self.scheduler.call_later(self.config.webhook_retry_pause_ms / 1000.0, lambda: self._attempt(d))
        else:
            self.store.log_webhook(d.generation, {
                "at": iso(now_utc()), "url": None, "failover": None, "event_id": d.data["id"],
                "event_type": d.event_type, "message_id": d.message.id, "to": d.recipient,
                "attempt": d.attempt, "status": None, "error": f"gave up after {d.attempt} attempts",
                "elapsed_ms": None, "result": "gave_up",
            })
            self.log(f"webhook {d.event_type} {d.message.id}: gave up after {d.attempt} attempts")
            d.then()


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class _Named:
    """What a delivery needs of its message: the id its log entries carry (an inbound message has no Message)."""

    id: str
