"""The HTTP front of the simulator: Telnyx ``/v2`` routes plus ``/_sim`` inspection routes."""

from __future__ import annotations

import hmac
import json
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tools.simkit import net

from . import inbound
from .config import SimConfig
from .media import fetch_all
from .outcomes import (
    is_blocked,
    is_drop_first,
    is_lost_before_stored_first,
    is_rate_limited_first,
    is_server_error_first,
    outcome_code,
)
from .records import search as search_detail_records
from .signing import generate_keypair, load_private_key, public_key_b64
from .state import IdempotencyRecord, Store
from .webhooks import WebhookDispatcher
from .wire import (
    IDEMPOTENCY_KEY,
    ApiError,
    auth_failed,
    bad_request,
    blocked,
    idempotency_mismatch,
    invalid_idempotency_key,
    new_message,
    not_found,
    now_utc,
    parse_send,
    rate_limited,
    unexpected,
)

MAX_BODY_BYTES = 4 * 1024 * 1024


OUTAGE_MODES = ("off", "5xx", "timeout")
OUTAGE_HANG_S = 30.0  # longer than any client's read timeout (mmsgate's is 10 s)


class _DropConnection(Exception):
    """Close the TCP connection without writing any HTTP response (outcomes 98, 55503XX)."""


def _number(value: str) -> str:
    """Query strings turn an unescaped ``+`` into a space: give it back."""
    value = value.strip()
    return value if value.startswith("+") else "+" + value


class SimServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer (one thread per connection) holding the simulator state."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], config: SimConfig):
        if not config.api_key:
            raise ValueError("an API key is required (TELNYX_SIM_API_KEY or SimConfig.api_key)")
        self.config = config
        self.store = Store()
        self.signing_key_b64 = config.signing_key or generate_keypair()[0]
        self.public_key = public_key_b64(self.signing_key_b64)
        self._key = load_private_key(self.signing_key_b64)
        self._log_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        self._closed = False
        self._serving = False
        self.media_client = net.client(config.media_timeout_s, keepalive=32)
        self.inbound = inbound.InboundStore()
        self.dispatcher = WebhookDispatcher(config, self.store, self._key, self.log)
        # The outage switch (POST /_sim/outage): "5xx" answers every API call 503 and stores nothing; "timeout"
        # holds every API call until the outage ends (at most OUTAGE_HANG_S), then drops it unanswered, having
        # stored nothing. Not a documented Telnyx behaviour: a fault to inject, as an outage looks to a client.
        self.outage = "off"
        self._outage_over = threading.Event()
        self._outage_over.set()
        try:
            super().__init__(address, SimHandler)
        except BaseException:
            self.media_client.close()
            self.dispatcher.close()
            raise

    def set_outage(self, mode: str) -> None:
        if mode not in OUTAGE_MODES:
            raise bad_request(f"mode must be one of {', '.join(OUTAGE_MODES)}", "/mode")
        self.outage = mode
        if mode == "off":
            self._outage_over.set()
        else:
            self._outage_over.clear()

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); not needed for a local simulator.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def log(self, line: str) -> None:
        with self._log_lock:
            sys.stderr.write(f"[telnyx-sim] {line}\n")
            sys.stderr.flush()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._serving = True
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        """Stop serving, stop background webhook work, close the socket. Safe to call twice."""
        with self._shutdown_lock:
            if self._closed:
                return
            self._closed = True
        if self._serving:
            super().shutdown()
        self.server_close()
        self.dispatcher.close()
        self.media_client.close()

    # -------------------------------------------------------------- the simulated API

    def send(self, body: Any, group: bool, idempotency_key: str | None = None) -> tuple[dict, bool]:
        """Process a send. Returns (response body, drop the connection instead of answering); raises
        ``_DropConnection`` when the request dies before anything is stored."""
        req = parse_send(body, group)
        generation = self.store.generation
        attempt = self.store.next_attempt(req.attempt_key)
        first = attempt == 1
        codes = [outcome_code(n) for n in req.to]
        if first and any(is_lost_before_stored_first(c) for c in codes):
            raise _DropConnection  # the request died before Telnyx stored it: no message, no record
        if first and any(is_rate_limited_first(c) for c in codes):
            raise rate_limited()
        if first and any(is_server_error_first(c) for c in codes):
            raise unexpected()
        for number, code in zip(req.to, codes, strict=True):
            if is_blocked(code):
                raise blocked(req.from_, number)
        media = fetch_all(self.media_client, req.media_urls, self.config.media_limit_bytes)
        if req.webhook_url or req.webhook_failover_url:
            url, failover = req.webhook_url, req.webhook_failover_url
        elif req.use_profile_webhooks:
            url, failover = self.config.profile_webhook_url, self.config.profile_webhook_failover_url
        else:
            url = failover = None
        message = new_message(req, media, url, failover, attempt, outcome_code, idempotency_key)
        with message.lock:
            payload = message.payload()  # before the webhook threads can move the status on
        if self.store.add(message, generation):
            self.dispatcher.schedule(message, generation)
        drop = first and any(is_drop_first(c) for c in codes)
        return {"data": payload}, drop

    def send_keyed(self, key: str, method: str, path: str, query: str, raw: bytes,
                   parse: Any) -> tuple[int, bytes, bool]:
        """A send carrying ``Idempotency-Key`` with ``idempotency_replay`` on (an experiment: Telnyx's
        messaging reference declares no key support, so by default the key is ignored). Plays Telnyx's
        generic idempotency page: the record is keyed by key, method and path; an identical request (body
        byte for byte, query) within the TTL replays the first successful answer and does nothing else; a
        different one is a 422 while the record lives; a failed attempt leaves no record, so its retry runs
        for real. Returns (status, body, drop the connection)."""
        if not IDEMPOTENCY_KEY.match(key):
            raise invalid_idempotency_key(key)
        record_key = (key, method, path)
        generation = self.store.generation
        with self.store.key_lock(record_key):
            record = self.store.idempotency_record(record_key, self.config.idempotency_ttl_s)
            if record is not None:
                if record.body == raw and record.query == query:
                    self.store.count_replay(key)
                    return record.status, record.response, False
                self.store.count_conflict(key)
                raise idempotency_mismatch(key)
            body, drop = self.send(parse(raw), group=path.endswith("/group_mms"), idempotency_key=key)
            response = json.dumps(body).encode()
            # Stored before a 98 drops the connection: the message exists, so its retry must be a replay.
            self.store.remember(IdempotencyRecord(key=key, method=method, path=path, query=query, body=raw,
                                                  status=200, response=response, message_id=body["data"]["id"],
                                                  created=time.monotonic()), generation)
        return 200, response, drop

    def retrieve(self, message_id: str) -> dict:
        """``GET /v2/messages/{id}``: Telnyx "returns messages up to 10 days old" (``message_retention_s``);
        an older one is not found, like an unknown id."""
        message = self.store.get(message_id)
        if message is None:
            raise not_found(f"Message {message_id} was not found.")
        with message.lock:
            age = (now_utc() - message.received_at).total_seconds()
            if age >= self.config.message_retention_s:
                raise not_found(f"Message {message_id} was not found.")
            return {"data": message.payload()}

    def receive(self, body: Any) -> dict:
        """``POST /_sim/inbound``: a handset texts one of our numbers; its message.received goes out at once."""
        message = inbound.build(body, base_url=self.url, store=self.inbound,
                                default_ttl_ms=self.config.inbound_media_ttl_ms,
                                profile_webhook_url=self.config.profile_webhook_url,
                                profile_webhook_failover_url=self.config.profile_webhook_failover_url)
        self._deliver_inbound(message)
        return inbound.view(message)

    def redeliver(self, body: Any) -> dict:
        """``POST /_sim/inbound/redeliver {"event_id" | "id"}``: the same event again, as a Telnyx retry."""
        wanted = body if isinstance(body, dict) else {}
        message = self.inbound.find(wanted.get("id"), wanted.get("event_id"))
        if message is None:
            raise inbound.not_found_error("No inbound message with that id or event id.")
        self._deliver_inbound(message)
        return inbound.view(message)

    def _deliver_inbound(self, message: inbound.InboundMessage) -> None:
        message.deliveries += 1
        recipient = message.event["payload"]["to"][0]["phone_number"]
        self.dispatcher.deliver_inbound(message.id, recipient, message.event, self.store.generation)

    def sim_messages(self, query: dict[str, list[str]]) -> dict:
        wanted_to = {_number(v) for v in query.get("to", [])}
        wanted_from = {_number(v) for v in query.get("from", [])}
        wanted_id = set(query.get("id", []))
        out = []
        for message in self.store.messages():
            req = message.request
            if wanted_to and not wanted_to.intersection(req.to):
                continue
            if wanted_from and req.from_ not in wanted_from:
                continue
            if wanted_id and message.id not in wanted_id:
                continue
            with message.lock:
                out.append(message.sim_view())
        return {"data": out}

    def sim_webhooks(self, query: dict[str, list[str]]) -> dict:
        entries = self.store.webhook_log()
        if "message_id" in query:
            entries = [e for e in entries if e["message_id"] in set(query["message_id"])]
        if "event_type" in query:
            entries = [e for e in entries if e["event_type"] in set(query["event_type"])]
        if "to" in query:
            numbers = {_number(v) for v in query["to"]}
            entries = [e for e in entries if e["to"] in numbers]
        return {"data": entries}


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server_version = "TelnyxSim/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this
    server: SimServer

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # -------------------------------------------------------------- plumbing

    def _handle(self, method: str) -> None:
        self._started = time.monotonic()
        self._request_id = str(uuid.uuid4())
        try:
            raw = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send_json(400, {"errors": bad_request(str(exc)).errors})
            return
        path, _, query = self.path.partition("?")
        path = path.rstrip("/") or "/"
        try:
            self._route(method, path, parse_qs(query, keep_blank_values=False), raw, query)
        except ApiError as exc:
            self._send_json(exc.status, {"errors": exc.errors}, exc.headers)
        except _DropConnection:
            self._drop()
        except Exception:  # noqa: BLE001 - answer a Telnyx-shaped 500, never crash the server
            self.server.log(f"internal error on {method} {self.path}:\n{traceback.format_exc()}")
            exc = unexpected()
            self._send_json(exc.status, {"errors": exc.errors})

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes, raw_query: str = "") -> None:
        server = self.server
        if path.startswith("/_sim/"):
            if method == "GET" and path == "/_sim/health":
                return self._send_json(200, {"status": "ok", "public_key": server.public_key,
                                             "messages": len(server.store.messages())})
            if method == "GET" and path == "/_sim/messages":
                return self._send_json(200, server.sim_messages(query))
            if method == "GET" and path == "/_sim/webhooks":
                return self._send_json(200, server.sim_webhooks(query))
            if method == "GET" and path == "/_sim/stats":
                idempotency = {"replay": server.config.idempotency_replay, **server.store.idempotency_stats()}
                busy = server.dispatcher.scheduler.busy(float((query.get("within_s") or ["0.3"])[0]))
                return self._send_json(200, {"data": {"messages": len(server.store.messages()),
                                                      "idempotency": idempotency, "busy": busy}})
            if path == "/_sim/outage":
                if method == "POST":
                    server.set_outage(str((self._json(raw) or {}).get("mode", "")))
                return self._send_json(200, {"data": {"mode": server.outage}})
            if method == "POST" and path == "/_sim/reset":
                server.set_outage("off")
                server.store.reset()
                server.inbound.reset()
                return self._send_json(200, {"data": {"reset": True}})
            if method == "POST" and path == "/_sim/inbound":
                return self._send_json(200, {"data": server.receive(self._json(raw))})
            if method == "POST" and path == "/_sim/inbound/redeliver":
                return self._send_json(200, {"data": server.redeliver(self._json(raw))})
            if method == "GET" and path == "/_sim/inbound":
                return self._send_json(200, {"data": [inbound.view(m) for m in server.inbound.messages()]})
            if method == "GET" and path.startswith("/_sim/media/"):
                blob = server.inbound.blob(path.rsplit("/", 1)[1])
                if blob is None:
                    raise inbound.not_found_error("This media link has expired or never existed.")
                return self._send_raw(200, blob.data, blob.content_type)
            raise not_found()
        if path == "/v2" or path.startswith("/v2/"):
            if server.outage == "5xx":
                raise ApiError.one(503, "10007", "Unexpected error", "The service is temporarily unavailable.")
            if server.outage == "timeout":
                server._outage_over.wait(OUTAGE_HANG_S)
                raise _DropConnection
            self._authenticate()
            if method == "POST" and path in ("/v2/messages", "/v2/messages/group_mms"):
                key = self.headers.get("Idempotency-Key")
                if key is not None and server.config.idempotency_replay:
                    status, answer, drop = server.send_keyed(key.strip(), method, path, raw_query, raw, self._json)
                    if drop:
                        raise _DropConnection
                    return self._send_body(status, answer)
                if key is not None:
                    # Telnyx's messaging reference declares no Idempotency-Key: accepted, ignored (no replay,
                    # no 422, no format check). Kept on the message for /_sim/messages only.
                    server.store.count_ignored()
                body, drop = server.send(self._json(raw), group=path.endswith("/group_mms"),
                                         idempotency_key=None if key is None else key.strip())
                if drop:
                    raise _DropConnection
                return self._send_json(200, body)
            if method == "GET" and path == "/v2/detail_records":
                return self._send_json(200, search_detail_records(server.store.messages(), query, now_utc(),
                                                                  lag_s=server.config.mdr_lag_s))
            parts = path.split("/")
            if method == "GET" and len(parts) == 4 and parts[2] == "messages" and parts[3] != "group_mms":
                return self._send_json(200, server.retrieve(parts[3]))
            raise not_found()
        raise not_found()

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization")
        if not header:
            raise auth_failed("Missing Authorization header. Send 'Authorization: Bearer <API key>'.")
        scheme, _, token = header.strip().partition(" ")
        expected = self.server.config.api_key.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise auth_failed("The API key is invalid. Check that you copied it correctly.")

    @staticmethod
    def _json(raw: bytes) -> Any:
        if not raw.strip():
            raise bad_request("The request body is empty; a JSON object is expected.")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}") from exc

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError as exc:
                    raise ValueError("malformed chunked request body") from exc
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        raw_length = self.headers.get("Content-Length")
        if not raw_length:
            return b""
        try:
            length = int(raw_length)
        except ValueError as exc:
            raise ValueError("invalid Content-Length header") from exc
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("invalid or too large Content-Length")
        return self.rfile.read(length)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_body(status, json.dumps(obj).encode(), headers)

    def _send_raw(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True
        self._log_line(str(status))

    def _send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-request-id", self._request_id)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True
        self._log_line(str(status))

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._log_line("dropped (no response)")

    def _log_line(self, outcome: str) -> None:
        if self.server.config.log_requests:
            elapsed = (time.monotonic() - self._started) * 1000
            self.server.log(f'{self.client_address[0]} "{self.requestline}" {outcome} {elapsed:.1f}ms')

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # _log_line writes one line per request, with the elapsed time

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature from http.server)
        self.server.log(f"{self.client_address[0]} {format % args}")


def start_server(host: str = "127.0.0.1", port: int = 0,
                 config: SimConfig | None = None) -> tuple[SimServer, threading.Thread]:
    """Start the simulator in a daemon thread. ``server.url`` is its base URL; ``server.shutdown()`` stops it.

    With ``config`` None, configuration comes from the ``TELNYX_SIM_*`` environment variables.
    """
    server = SimServer((host, port), config if config is not None else SimConfig.from_env())
    server._serving = True  # so a shutdown() racing the thread's start still stops serve_forever
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="telnyx-sim", daemon=True)
    thread.start()
    return server, thread
