"""The HTTP front of the simulator: Twilio's ``/2010-04-01`` Messages routes plus ``/_sim`` routes."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

from tools.simkit import net

from . import inbound
from .config import OUTAGE_MODES, SimConfig
from .media import fetch_all, over_carrier_limit
from .outcomes import fate, outcome_code
from .state import Store
from .webhooks import Dispatcher
from .wire import (
    API_VERSION,
    SYNC_ERRORS,
    TOLL_FREE,
    ApiError,
    Message,
    auth_failed,
    bad_request,
    new_sid,
    not_found,
    now_utc,
    opted_out,
    parse_send,
    rate_limited,
    rfc2822,
    segments,
    server_error,
    unavailable,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class _DropConnection(Exception):
    """Close the TCP connection without writing any HTTP response."""


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
        if address[0] not in LOOPBACK:
            raise ValueError(f"the Twilio simulator binds only to 127.0.0.1, not {address[0]!r}")
        self.config = config
        self.store = Store()
        self._log_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        self._closed = False
        self._serving = False
        self._closing = threading.Event()  # set at shutdown: hung requests give up
        self._outage_over = threading.Event()  # set while the outage mode is "off"
        self.outage = "off"
        self.set_outage(config.outage)
        self.media_client = net.client(config.media_timeout_s, keepalive=32)
        self.dispatcher = Dispatcher(config, self.store, self.log)
        try:
            super().__init__(("127.0.0.1", address[1]), SimHandler)
        except BaseException:
            self.media_client.close()
            self.dispatcher.close()
            raise

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup (HTTPServer.server_bind does one)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_base(self) -> str:
        """``{url}/2010-04-01/Accounts/{AccountSid}``: where the Messages resources live."""
        return f"{self.url}/{API_VERSION}/Accounts/{self.config.account_sid}"

    def log(self, line: str) -> None:
        with self._log_lock:
            sys.stderr.write(f"[twilio-sim] {line}\n")
            sys.stderr.flush()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._serving = True
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        """Stop serving, release hung requests, stop background work, close the socket. Safe to call twice."""
        with self._shutdown_lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._outage_over.set()
        if self._serving:
            super().shutdown()
        self.server_close()
        self.dispatcher.close()
        self.media_client.close()

    def set_outage(self, mode: str) -> None:
        if mode not in OUTAGE_MODES:
            raise bad_request(20001, f"mode must be one of {', '.join(OUTAGE_MODES)}")
        self.outage = mode
        if mode == "off":
            self._outage_over.set()
        else:
            self._outage_over.clear()

    def hang(self) -> None:
        """Hold the request past any sane client timeout (``hang_s``), then lose the answer."""
        self._closing.wait(self.config.hang_s)
        raise _DropConnection

    # -------------------------------------------------------------- the simulated API

    def create(self, form: dict[str, list[str]]) -> dict[str, Any]:
        """``POST …/Messages.json`` (twilio.md §1, §3, §7, §10.1-10.4). Returns the resource for a 201."""
        config = self.config
        req = parse_send(form, config.numbers)
        code = outcome_code(req.to)
        story = fate(code)
        generation = self.store.generation
        attempt = self.store.next_attempt(req.attempt_key)
        first = attempt == 1
        if first and story.first_lost == "hang":
            self.hang()
        if first and story.first_lost == "reset":
            raise _DropConnection
        if first and story.first_error is not None:
            raise {500: server_error, 503: unavailable, 429: rate_limited}[story.first_error]()
        from_ = req.from_ or (config.numbers[0] if config.numbers else "+15005550006")
        if story.sync_error is not None:
            raise bad_request(story.sync_error, SYNC_ERRORS[story.sync_error].format(to=req.to, from_=from_))
        service = req.messaging_service_sid
        if self.store.blocked(from_, req.to) or (service is not None and self.store.blocked_anywhere(req.to)):
            raise opted_out()
        forced: tuple[str, int] | None = None
        if config.fetch_media and req.media_urls:
            media = fetch_all(self.media_client, req.media_urls)
            if over_carrier_limit(media, config.carrier_media_limit_bytes):
                forced = ("undelivered", 30019)
        count = 1 if req.media_urls else segments(req.body)
        rate = config.sender_segments_per_s
        if rate is None:
            rate = 3.0 if TOLL_FREE.match(from_) else 1.0
        turn = self.store.reserve_slot(from_, count / rate if rate > 0 else 0.0, config.queue_capacity_s)
        if turn is None:
            if service is None:
                raise bad_request(21611, "This 'From' number has exceeded the maximum number of queued messages")
            forced, turn = ("failed", 30001), 0.0
        now = now_utc()
        message = Message(
            sid=new_sid("MM" if req.media_urls else "SM"), account_sid=config.account_sid, request=req,
            from_=from_, outcome=code, status="accepted" if service else "queued", created=now, updated=now,
            num_segments=count, attempt=attempt, visible_at=time.monotonic() + config.list_lag_s,
            forced=forced, turn_s=turn)
        message.history.append((message.status, rfc2822(now) or ""))
        after = story.first_after_store if first else None
        if story.always_500_after_store:
            after = "500"
        message.answer = after or "201"
        with message.lock:
            resource = message.resource()
        if self.store.add(message, generation):
            self.dispatcher.schedule(message, generation)
        if after == "hang":
            self.hang()
        if after == "reset":
            raise _DropConnection
        if after == "500":
            raise server_error()
        return resource

    def fetch(self, sid: str, path: str) -> dict[str, Any]:
        message = self.store.get(sid)
        if message is None:
            raise not_found(path)
        with message.lock:
            return message.resource()

    def list_messages(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """``GET …/Messages.json`` (§6): filters To, From, DateSent, DateSent< and DateSent> (GMT dates,
        inclusive, as their ``>=``/``<=`` spelling reads), newest first, PageSize ≤ 1000, PageToken cursors."""
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1].strip() if values and values[-1].strip() else None

        def day(name: str) -> date | None:
            raw = one(name)
            if raw is None:
                return None
            try:
                return date.fromisoformat(raw[:10])
            except ValueError as exc:
                raise bad_request(20001, f"{name} must be a date, YYYY-MM-DD; got {raw!r}") from exc

        to = one("To")
        from_ = one("From")
        on, after, before = day("DateSent"), day("DateSent>"), day("DateSent<")
        try:
            size = int(one("PageSize") or DEFAULT_PAGE_SIZE)
            page = int(one("Page") or 0)
        except ValueError as exc:
            raise bad_request(20001, "PageSize and Page must be integers") from exc
        size = min(max(1, size), MAX_PAGE_SIZE)
        token = one("PageToken")
        now = time.monotonic()
        rows: list[tuple[float, int, dict[str, Any]]] = []
        for seq, message in enumerate(self.store.messages()):
            if message.visible_at > now:
                continue  # not in the list yet (§6: lag UNCONFIRMED; the harsher reading)
            with message.lock:
                sent = message.sent.date() if message.sent else None
                if to and message.request.to != _number(to):
                    continue
                if from_ and message.from_ != _number(from_):
                    continue
                if (on or after or before) and sent is None:
                    continue  # date_sent is null until sent: a queued message matches no DateSent filter
                if sent is not None and ((on and sent != on) or (after and sent < after)
                                         or (before and sent > before)):
                    continue
                stamp = (message.sent or message.created).timestamp()
                rows.append((stamp, seq, message.resource()))
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        resources = [r[2] for r in rows]
        start = 0
        if token:
            sids = [r["sid"] for r in resources]
            last = token[2:]
            start = sids.index(last) + 1 if last in sids else len(sids)
        chunk = resources[start:start + size]
        filters = [(k, v) for k, v in (("To", to), ("From", from_), ("DateSent", on and on.isoformat()),
                                       ("DateSent>", after and after.isoformat()),
                                       ("DateSent<", before and before.isoformat())) if v]
        base = f"/{API_VERSION}/Accounts/{self.config.account_sid}/Messages.json"

        def uri(extra: list[tuple[str, str]]) -> str:
            return f"{base}?{urlencode(filters + [('PageSize', str(size))] + extra)}"

        next_uri = None
        if start + size < len(resources) and chunk:
            next_uri = uri([("Page", str(page + 1)), ("PageToken", "PA" + chunk[-1]["sid"])])
        current = [("Page", str(page))] + ([("PageToken", token)] if token else [])
        return {"messages": chunk, "start": page * size, "end": page * size + max(0, len(chunk) - 1),
                "page": page, "page_size": size, "uri": uri(current), "first_page_uri": uri([("Page", "0")]),
                "previous_page_uri": None, "next_page_uri": next_uri}

    def receive(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/inbound``: a handset texts one of our numbers (§5)."""
        message = inbound.build(body, account_sid=self.config.account_sid, base_url=self.url,
                                client=self.media_client)
        ours, handset = message.params["To"], message.params["From"]
        if message.opt_out_type == "STOP":
            self.store.block(ours, handset)
        elif message.opt_out_type == "START":
            self.store.unblock(ours, handset)
        self.store.add_inbound(message)
        if self.dispatcher.deliver_inbound(message.sid, message.params, self.store.generation):
            message.deliveries += 1
        return inbound.view(message)

    def sim_messages(self, query: dict[str, list[str]]) -> dict[str, Any]:
        wanted_to = {_number(v) for v in query.get("to", [])}
        wanted_from = {_number(v) for v in query.get("from", [])}
        wanted_sid = set(query.get("sid", []))
        wanted_status = set(query.get("status", []))
        out = []
        for message in self.store.messages():
            with message.lock:
                if wanted_to and message.request.to not in wanted_to:
                    continue
                if wanted_from and message.from_ not in wanted_from:
                    continue
                if wanted_sid and message.sid not in wanted_sid:
                    continue
                if wanted_status and message.status not in wanted_status:
                    continue
                out.append(message.sim_view())
        return {"messages": out}

    def sim_webhooks(self, query: dict[str, list[str]]) -> dict[str, Any]:
        entries = self.store.webhook_log()
        for key, field in (("message_sid", "message_sid"), ("status", "status"), ("kind", "kind"),
                           ("result", "result")):
            if key in query:
                entries = [e for e in entries if e[field] in set(query[key])]
        if "to" in query:
            numbers = {_number(v) for v in query["to"]}
            entries = [e for e in entries if e["params"].get("To") in numbers]
        return {"webhooks": entries}


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TwilioSim/1.0"
    sys_version = ""
    timeout = 60
    server: SimServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle and delayed ACKs cost ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    # -------------------------------------------------------------- plumbing

    def _handle(self, method: str) -> None:
        self._started = time.monotonic()
        self._request_id = "RQ" + uuid.uuid4().hex
        try:
            raw = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send_json(400, bad_request(20001, str(exc)).body())
            return
        path, _, query = self.path.partition("?")
        path = path.rstrip("/") or "/"
        try:
            self._route(method, path, parse_qs(query, keep_blank_values=False), raw)
        except ApiError as exc:
            self._send_json(exc.status, exc.body(), exc.headers)
        except _DropConnection:
            self._drop()
        except Exception:  # noqa: BLE001 - answer a Twilio-shaped 500, never crash the server
            self.server.log(f"internal error on {method} {self.path}:\n{traceback.format_exc()}")
            self._send_json(500, server_error().body())

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        server = self.server
        if path.startswith("/_sim/"):
            return self._sim_route(method, path, query, raw)
        if not path.startswith(f"/{API_VERSION}/"):
            raise not_found(path)
        if server.outage == "5xx":
            server.store.count("outage_5xx")
            raise unavailable()
        if server.outage == "timeout":
            server.store.count("outage_timeout")
            server._outage_over.wait(server.config.hang_s)
            raise _DropConnection
        self._authenticate()
        parts = path.split("/")  # '', version, 'Accounts', AC, 'Messages[.json]', ...
        if len(parts) < 5 or parts[2] != "Accounts" or parts[3] != server.config.account_sid:
            raise auth_failed() if len(parts) >= 4 and parts[2] == "Accounts" else not_found(path)
        if not server.store.admit(server.config.rate_limit_per_s):
            raise rate_limited()
        rest = parts[4:]
        if rest == ["Messages.json"]:
            if method == "POST":
                return self._send_json(201, server.create(self._form(raw)))
            if method == "GET":
                return self._send_json(200, server.list_messages(query))
        if len(rest) == 2 and rest[0] == "Messages" and rest[1].endswith(".json") and method == "GET":
            return self._send_json(200, server.fetch(rest[1][: -len(".json")], path))
        if len(rest) == 4 and rest[0] == "Messages" and rest[2] == "Media":
            sid = rest[3].removesuffix(".json")
            media = server.store.media(sid)
            if media is None or media.message_sid != rest[1]:
                raise not_found(path)
            if method == "DELETE":
                server.store.delete_media(sid)
                return self._send_empty(204)
            if method == "GET" and rest[3].endswith(".json"):
                return self._send_json(200, {"sid": media.sid, "account_sid": server.config.account_sid,
                                             "parent_sid": media.message_sid, "content_type": media.content_type,
                                             "uri": path})
            if method == "GET":
                return self._send_raw(200, media.data, media.content_type)
        raise not_found(path)

    def _sim_route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        server = self.server
        if method == "GET" and path == "/_sim/health":
            return self._send_json(200, {"status": "ok", "account_sid": server.config.account_sid,
                                         "outage": server.outage})
        if method == "GET" and path == "/_sim/messages":
            return self._send_json(200, server.sim_messages(query))
        if method == "GET" and path == "/_sim/webhooks":
            return self._send_json(200, server.sim_webhooks(query))
        if method == "GET" and path == "/_sim/stats":
            return self._send_json(200, {**server.store.stats(), "outage": server.outage})
        if method == "GET" and path == "/_sim/blocklist":
            return self._send_json(200, {"blocklist": server.store.blocklist()})
        if method == "GET" and path == "/_sim/inbound":
            return self._send_json(200, {"inbound": [inbound.view(m) for m in server.store.inbound()]})
        if method == "POST" and path == "/_sim/inbound":
            return self._send_json(200, server.receive(self._json(raw)))
        if method == "GET" and path == "/_sim/outage":
            return self._send_json(200, {"mode": server.outage})
        if method == "POST" and path == "/_sim/outage":
            body = self._json(raw)
            server.set_outage(str(body.get("mode", "")) if isinstance(body, dict) else "")
            server.log(f"outage mode: {server.outage}")
            return self._send_json(200, {"mode": server.outage})
        if method == "POST" and path == "/_sim/reset":
            server.store.reset()
            server.set_outage("off")
            return self._send_json(200, {"reset": True})
        raise not_found(path)

    def _authenticate(self) -> None:
        """HTTP Basic: the account SID + Auth Token, or an API key SID + secret (§1); else 401/20003."""
        header = self.headers.get("Authorization") or ""
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            raise auth_failed()
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise auth_failed() from None
        config = self.server.config
        pairs = [(config.account_sid, config.auth_token)]
        if config.api_key_sid and config.api_key_secret:
            pairs.append((config.api_key_sid, config.api_key_secret))
        for expected_user, expected_password in pairs:
            if hmac.compare_digest(user.encode(), expected_user.encode()) and \
                    hmac.compare_digest(password.encode(), expected_password.encode()):
                return
        raise auth_failed()

    @staticmethod
    def _form(raw: bytes) -> dict[str, list[str]]:
        try:
            return parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise bad_request(20001, "The request body is not UTF-8 form data.") from exc

    @staticmethod
    def _json(raw: bytes) -> Any:
        try:
            return json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(20001, f"The request body is not valid JSON: {exc}") from exc

    def _read_body(self) -> bytes:
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
        self._send_raw(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def _send_empty(self, status: int) -> None:
        self._send_raw(status, b"", None)

    def _send_raw(self, status: int, body: bytes, content_type: str | None,
                  headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Twilio-Request-Id", self._request_id)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
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
    """Start the simulator in a daemon thread. ``server.url`` is its base URL, ``server.api_base`` the account's
    resource root; ``server.shutdown()`` stops it. Only 127.0.0.1 (or ``localhost``) is accepted as ``host``.

    With ``config`` None, configuration comes from the ``TWILIO_SIM_*`` environment variables.
    """
    server = SimServer((host, port), config if config is not None else SimConfig.from_env())
    server._serving = True  # so a shutdown() racing the thread's start still stops serve_forever
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="twilio-sim", daemon=True)
    thread.start()
    return server, thread
