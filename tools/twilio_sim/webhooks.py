"""Status callbacks and inbound webhooks: form POSTs signed with ``X-Twilio-Signature`` (twilio.md §4, §5).

Per message the timeline is: (``accepted`` →) ``queued`` → wait for the sender's queue (§7) → ``sending`` →
``sent`` → ``delivered`` | ``undelivered``, or ``failed`` from the queue or after ``sending`` (§2), one status
every ``status_delay_ms``. Each change after the first gets a callback (§4: "the initial status gets no
callback"). Status changes run on their own clock and every callback is its own job, so a slow receiver
sees callbacks out of order, as Twilio warns (§4 "Callbacks can arrive out of order").

Delivery of one callback follows the connection overrides of §4 (OVR), read from the URL's ``#…`` fragment,
which is stripped before the request is made and signed: ``ct`` connect timeout (default 5000 ms), ``rt`` read
timeout (15000), ``tt`` total including retries (15000), ``rc`` retries (default 1), ``rp`` retry policy. The
only documented default retry is on a failed connection (E11205), so ``rp`` defaults to ``ct``: a non-2xx
answer or a read timeout is not retried (the harsher reading of an UNCONFIRMED default).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tools.simkit import net
from tools.simkit.scheduler import Scheduler

from .config import SimConfig
from .outcomes import Fate, fate
from .signing import expected_signature
from .state import Store
from .wire import API_VERSION, PRICE_MMS, PRICE_PER_SEGMENT, Message, now_utc, rfc2822

USER_AGENT = "TwilioProxy/1.1 (twilio-sim)"
POLICIES = ("ct", "rt", "4xx", "5xx")
ERROR_MESSAGES = {
    21610: "Attempt to send to unsubscribed recipient",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    30019: "Content size exceeds carrier limit",
    30036: "Validity Period Expired",
}


@dataclass(frozen=True)
class Overrides:
    """Connection overrides from a webhook URL's fragment (§4, OVR), clamped to their documented ranges."""

    connect_s: float = 5.0
    read_s: float = 15.0
    total_s: float = 15.0
    retries: int = 1
    policy: frozenset[str] = frozenset({"ct"})

    @classmethod
    def parse(cls, fragment: str) -> Overrides:
        values = dict(parse_qsl(fragment, keep_blank_values=True))

        def ms(name: str, low: int, high: int, default: float) -> float:
            try:
                return min(high, max(low, int(values[name]))) / 1000.0
            except (KeyError, ValueError):
                return default

        try:
            retries = min(5, max(0, int(values["rc"])))
        except (KeyError, ValueError):
            retries = 1
        policy = frozenset({"ct"})
        if "rp" in values:
            wanted = {p.strip().lower() for p in values["rp"].split(",") if p.strip()}
            policy = frozenset(POLICIES) if "all" in wanted else frozenset(wanted & set(POLICIES))
        return cls(connect_s=ms("ct", 100, 10_000, 5.0), read_s=ms("rt", 100, 15_000, 15.0),
                   total_s=ms("tt", 100, 15_000, 15.0), retries=retries, policy=policy)


def split_url(url: str) -> tuple[str, Overrides]:
    """The URL Twilio requests (and signs: §4.6, no fragment) and the overrides its fragment carried."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(fragment="")), Overrides.parse(parts.fragment)


@dataclass
class Result:
    status: int | None = None
    body: bytes = b""
    error: str | None = None
    failure: str | None = None  # ct | rt | 4xx | 5xx | other (None: a 2xx)


def post_form(url: str, body: bytes, headers: dict[str, str], connect_s: float, read_s: float,
              context: ssl.SSLContext) -> Result:
    """One POST on a fresh connection, no redirects followed; failures are classified as OVR's ``rp``."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=connect_s, context=context)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=connect_s)
        conn.connect()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Result(error=_describe(exc), failure="ct")
    try:
        if conn.sock is not None:
            conn.sock.settimeout(read_s)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(1 << 16)
    except (OSError, http.client.HTTPException) as exc:  # a read timeout, or the connection lost mid-way
        return Result(error=_describe(exc), failure="rt")
    finally:
        conn.close()
    status = response.status
    failure = None if 200 <= status < 300 else "4xx" if 400 <= status < 500 else "5xx" if status >= 500 else "other"
    return Result(status=status, body=data, failure=failure)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class _Callback:
    kind: str  # "status" | "inbound"
    sid: str
    label: str  # MessageStatus, or "received"
    params: dict[str, str]
    urls: list[str]  # primary, then fallback (inbound only)
    generation: int
    token: str = field(default_factory=lambda: str(uuid.uuid4()))


class Dispatcher:
    def __init__(self, config: SimConfig, store: Store, log: Callable[[str], None]):
        self.config = config
        self.store = store
        self.log = log
        self._stopped = False
        self._context = net.ssl_context()
        self.scheduler = Scheduler(config.workers, self._job_failed, name="twilio-sim")
        self._held: dict[str, list[_Callback]] = {}  # reordered callbacks, per message
        self._held_lock = threading.Lock()

    def close(self) -> None:
        self._stopped = True
        self.scheduler.stop()

    def _alive(self, generation: int) -> bool:
        return not self._stopped and generation == self.store.generation

    def _job_failed(self, exc: BaseException) -> None:
        if not self._stopped:
            self.log("webhook job failed:\n" + "".join(traceback.format_exception(exc)))

    # -------------------------------------------------------------- the status timeline (§2)

    def schedule(self, message: Message, generation: int) -> None:
        step = self.config.status_delay_ms / 1000.0
        story = fate(message.outcome)
        forced = message.forced
        steps: list[tuple[float, str, int | None]] = []
        at = 0.0
        if message.status == "accepted":
            at += step
            steps.append((at, "queued", None))
        expires = float(message.request.validity_s)
        if forced is not None and forced[0] == "failed":  # the service path's full queue (§7, E21611: 30001)
            steps.append((at + step, "failed", forced[1]))
        elif message.turn_s > expires:  # still queued when its validity ends: not sent (§1, §7, E30036)
            steps.append((expires, "failed", 30036))
        else:
            at = max(at, message.turn_s) + step
            if story.final == "failed" and not story.via_sending:
                steps.append((at, "failed", story.error_code))
            else:
                steps.append((at, "sending", None))
                if story.final == "failed":
                    steps.append((at + step, "failed", story.error_code))
                else:
                    steps.append((at + step, "sent", None))
                    if forced is not None:
                        steps.append((at + 2 * step, forced[0], forced[1]))
                    elif story.final is not None:
                        steps.append((at + 2 * step, story.final, story.error_code))
        self._next(message, steps, 0, 0.0, story, generation)

    def _next(self, message: Message, steps: list[tuple[float, str, int | None]], index: int, now: float,
              story: Fate, generation: int) -> None:
        """Each change schedules the next one, so one message's statuses never race each other."""
        if index >= len(steps) or not self._alive(generation):
            return
        at, status, code = steps[index]

        def run() -> None:
            self._change(message, status, code, index == len(steps) - 1, story, generation)
            self._next(message, steps, index + 1, at, story, generation)

        self.scheduler.call_later(at - now, run)

    def _change(self, message: Message, status: str, code: int | None, final: bool, story: Fate,
                generation: int) -> None:
        if not self._alive(generation):
            return
        now = now_utc()
        with message.lock:
            message.status = status
            message.updated = now
            if status == "sent":
                message.sent = now
                message.price = PRICE_MMS if message.request.media_urls else \
                    f"{float(PRICE_PER_SEGMENT) * message.num_segments:.5f}"
            if code is not None:
                message.error_code = code
                message.error_message = ERROR_MESSAGES.get(code)
            message.history.append((status, rfc2822(now) or ""))
            params = {"AccountSid": message.account_sid, "ApiVersion": API_VERSION, "From": message.from_,
                      "MessageSid": message.sid, "MessageStatus": status, "SmsSid": message.sid,
                      "SmsStatus": status, "To": message.request.to}
            if message.request.messaging_service_sid:
                params["MessagingServiceSid"] = message.request.messaging_service_sid
            if status in ("failed", "undelivered") and code is not None:
                params["ErrorCode"] = str(code)
            if status in ("delivered", "undelivered"):
                params["RawDlrDoneDate"] = now.strftime("%y%m%d%H%M")
            url = message.request.status_callback
        if url is None:
            return
        callback = _Callback("status", message.sid, status, params, [url], generation)
        if story.callbacks == "drop":
            self.store.count("callbacks_dropped")
        elif story.callbacks == "reorder":
            with self._held_lock:
                self._held.setdefault(message.sid, []).append(callback)
                release = self._held.pop(message.sid) if final else []
            for item in reversed(release):
                self._deliver(item)
        else:
            self.scheduler.call_later(0, lambda: self._deliver(callback))
            if story.callbacks == "duplicate":
                self.scheduler.call_later(0, lambda: self._deliver(callback))

    # -------------------------------------------------------------- inbound (§5)

    def deliver_inbound(self, sid: str, params: dict[str, str], generation: int) -> bool:
        urls = [u for u in (self.config.inbound_url, self.config.inbound_fallback_url) if u]
        if not urls:
            return False
        callback = _Callback("inbound", sid, "received", params, urls, generation)
        self.scheduler.call_later(0, lambda: self._deliver(callback))
        return True

    # -------------------------------------------------------------- one delivery, with OVR retries

    def _deliver(self, cb: _Callback) -> None:
        for index, raw_url in enumerate(cb.urls):
            if self._deliver_to(cb, raw_url, fallback=index > 0):
                return

    def _deliver_to(self, cb: _Callback, raw_url: str, fallback: bool) -> bool:
        url, overrides = split_url(raw_url)
        body = urlencode(cb.params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                   "X-Twilio-Signature": expected_signature(self.config.auth_token, url, cb.params),
                   "User-Agent": USER_AGENT, "Accept": "*/*"}
        if self.config.idempotency_token:
            headers["I-Twilio-Idempotency-Token"] = cb.token
        started = time.monotonic()
        for attempt in range(1, overrides.retries + 2):
            remaining = overrides.total_s - (time.monotonic() - started)
            if remaining <= 0 or not self._alive(cb.generation):
                break
            t0 = time.monotonic()
            result = post_form(url, body, headers, min(overrides.connect_s, remaining),
                               min(overrides.read_s, remaining), self._context)
            if not self._alive(cb.generation):
                return True
            self.store.log_webhook(cb.generation, {
                "at": rfc2822(now_utc()), "kind": cb.kind, "url": url, "fallback": fallback,
                "message_sid": cb.sid, "status": cb.label, "attempt": attempt, "http_status": result.status,
                "error": result.error, "failure": result.failure,
                "result": "delivered" if result.failure is None else "failed",
                "elapsed_ms": round((time.monotonic() - t0) * 1000, 1), "params": dict(cb.params),
                "signature": headers["X-Twilio-Signature"],
                "idempotency_token": headers.get("I-Twilio-Idempotency-Token"),
                "response": result.body[:2000].decode("utf-8", "replace"),
            })
            if self.config.log_requests:
                self.log(f"{cb.kind} {cb.label} {cb.sid} -> {url} attempt {attempt}: "
                         f"{result.status if result.status is not None else result.error}")
            if result.failure is None:
                return True
            if result.failure not in overrides.policy:
                break
            if self.config.callback_retry_pause_ms:
                time.sleep(self.config.callback_retry_pause_ms / 1000.0)
        return False
