"""The local stack's developer server: a webhook inbox and a live console. Local only: the stack runs it in a
thread, bound to 127.0.0.1; nothing deployed imports it and Terraform knows nothing of it.

- ``POST /inbox/{tenant_id}``: a customer webhook endpoint. It records each event with its headers and the
  result of checking its Standard Webhooks signature against the tenant's secret (derived as the notifier
  derives it), and answers 200; ``?status=NNN`` on the URL makes it answer NNN instead (to watch retries).
- ``GET /_dev/inbox``: what it received, newest first (``?tenant=`` filters); ``DELETE`` empties it. Each
  event keeps the request's exact body as ``raw_body`` (the bytes the signature covers, as text; the parsed
  ``body`` beside it is only for reading), and ``GET /_dev/inbox/{seq}/raw`` serves those bytes unchanged, so a
  signature can be checked again by any library: ``raw_body`` with the kept ``webhook-*`` headers.
- ``GET /_dev/console``: a page that shows, live, the messages with their status timeline and provider id (and
  each one's encoding and segments, template, short links and clicks, media as sent), groups and batches, the
  customer webhook deliveries (attempts, answers), inbound messages, the inbox and what the Telnyx simulator
  received. It reads ``GET /_dev/api/state``.
- ``GET /_dev/api/state``: that data as JSON, read from the Firestore emulator over its REST API (with the
  emulator's ``Bearer owner`` access, which only an emulator accepts), so this server needs no cloud SDK.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import logging
import socketserver
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra import collections as C
from shared.carriers.signatures import BadSignature, tenant_secret, verify_webhook

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
MAX_EVENTS = 500  # the inbox keeps the newest
MAX_BODY = 1024 * 1024
RECENT = 50  # rows per collection the console shows
_HEADERS_KEPT = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent",
                 "x-mmsgate-event-id")
_STATIC = {"/_dev/console": ("index.html", "text/html; charset=utf-8"),
           "/_dev/console.js": ("console.js", "text/javascript; charset=utf-8"),
           "/_dev/console.css": ("console.css", "text/css; charset=utf-8")}
log = logging.getLogger("dev_inbox")


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    """One JSON call over http.client (never through a proxy the shell may set)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": "Bearer owner", **({"Content-Type": "application/json"} if payload else {})}
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def decode_value(value: dict[str, Any]) -> Any:
    """One Firestore REST value as plain JSON (timestamps stay RFC 3339 text)."""
    if "mapValue" in value:
        return {k: decode_value(v) for k, v in (value["mapValue"].get("fields") or {}).items()}
    if "arrayValue" in value:
        return [decode_value(v) for v in value["arrayValue"].get("values") or []]
    if "integerValue" in value:
        return int(value["integerValue"])
    for kind in ("stringValue", "booleanValue", "doubleValue", "timestampValue", "referenceValue",
                 "geoPointValue", "bytesValue"):
        if kind in value:
            return value[kind]
    return None  # nullValue


def decode_document(document: dict[str, Any]) -> dict[str, Any]:
    fields = {k: decode_value(v) for k, v in (document.get("fields") or {}).items()}
    return {"id": document["name"].rsplit("/", 1)[1], **fields}


class FirestoreReader:
    """Reads the emulator's documents over REST."""

    def __init__(self, firestore_url: str, project: str) -> None:
        self.base = f"{firestore_url.rstrip('/')}/v1/projects/{project}/databases/(default)/documents"

    def get(self, path: str) -> dict[str, Any] | None:
        status, body = _http("GET", f"{self.base}/{path}")
        return decode_document(body) if status == 200 and body else None

    def recent(self, collection: str, limit: int = RECENT, order_by: str = "created_at") -> list[dict[str, Any]]:
        query = {"structuredQuery": {"from": [{"collectionId": collection}], "limit": limit,
                                     "orderBy": [{"field": {"fieldPath": order_by}, "direction": "DESCENDING"}]}}
        status, body = _http("POST", f"{self.base}:runQuery", query)
        if status != 200:
            raise RuntimeError(f"runQuery {collection}: HTTP {status}")
        return [decode_document(row["document"]) for row in body or [] if "document" in row]


class Inbox:
    """The received events, newest last, with the exact bytes of each; thread-safe."""

    def __init__(self) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._raw: dict[int, bytes] = {}  # seq -> the request body as received
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, event: dict[str, Any], raw: bytes = b"") -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, **event}
            if len(self._events) == self._events.maxlen:
                self._raw.pop(self._events[0]["seq"], None)
            self._events.append(event)
            self._raw[self._seq] = raw
            return event

    def raw(self, seq: int) -> bytes | None:
        with self._lock:
            return self._raw.get(seq)

    def events(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            found = list(self._events)
        return [e for e in reversed(found) if tenant_id is None or e["tenant_id"] == tenant_id]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._raw.clear()


class DevServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, *, project: str, firestore_url: str, simulator_url: str,
                 signing_key: str, default_tenant: str = "tnt_dev", twilio_url: str | None = None) -> None:
        self.store = FirestoreReader(firestore_url, project)
        self.simulator_url = simulator_url.rstrip("/")
        self.twilio_url = twilio_url.rstrip("/") if twilio_url else None
        self.signing_key = signing_key
        self.default_tenant = default_tenant
        self.inbox = Inbox()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a console tab closed while its poll was answered) is no error worth a
        traceback in the make dev log; anything else still is."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(host): a reverse DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def inbox_url(self, tenant_id: str) -> str:
        return f"{self.url}/inbox/{tenant_id}"

    def start(self) -> DevServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="dev-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    # -- the inbox ---------------------------------------------------------------------------------------
    def check_signature(self, tenant_id: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """The receiver's check, with the secret the tenant would configure (its current version)."""
        try:
            tenant = self.store.get(f"{C.TENANTS}/{tenant_id}")
        except OSError as exc:
            return {"valid": False, "reason": f"cannot read the tenant: {exc}"}
        if tenant is None:
            return {"valid": False, "reason": f"no tenant {tenant_id}"}
        version = int(tenant.get("webhook_secret_version") or 0)
        try:
            verify_webhook(tenant_secret(self.signing_key, tenant_id, version), body, headers)
        except (BadSignature, ValueError) as exc:
            return {"valid": False, "reason": str(exc), "secret_version": version}
        return {"valid": True, "reason": None, "secret_version": version}

    def receive(self, tenant_id: str, body: bytes, headers: dict[str, str], answered: int) -> dict[str, Any]:
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode(errors="replace")
        data = payload.get("data") if isinstance(payload, dict) and isinstance(payload.get("data"), dict) else {}
        kept = {k: v for k, v in headers.items() if k in _HEADERS_KEPT}
        try:
            raw_text: str | None = body.decode()
        except UnicodeDecodeError:  # not UTF-8: only GET /_dev/inbox/{seq}/raw has it
            raw_text = None
        return self.inbox.add({
            "received_at": _now_iso(), "tenant_id": tenant_id, "answered": answered,
            "event_id": headers.get("webhook-id"), "type": payload.get("type") if isinstance(payload, dict) else None,
            "message_id": data.get("id"), "status": data.get("status"), "headers": kept,
            "signature": self.check_signature(tenant_id, body, headers), "body": payload, "raw_body": raw_text,
        }, body)

    # -- the console's data ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"now": _now_iso(), "errors": []}
        # Batches and a separate inbound collection appear once those features store them; until then
        # (or if inbound messages share the messages collection, with direction "inbound") these are empty.
        sources = (("messages", C.MESSAGES), ("groups", C.GROUPS), ("batches", getattr(C, "BATCHES", "batches")),
                   ("inbound", getattr(C, "INBOUND", None)), ("links", getattr(C, "LINKS", None)))
        for key, collection in sources:
            if collection is None:
                out[key] = []
                continue
            try:
                out[key] = self.store.recent(collection)
            except (OSError, RuntimeError, ValueError) as exc:
                out[key] = []
                out["errors"].append(f"{collection}: {exc}")
        try:
            status, body = _http("GET", f"{self.simulator_url}/_sim/messages")
            out["simulator"] = (body or {}).get("data", [])[-RECENT:][::-1] if status == 200 else []
        except (OSError, ValueError) as exc:
            out["simulator"] = []
            out["errors"].append(f"simulator: {exc}")
        out["twilio"] = []
        if self.twilio_url:
            try:
                status, body = _http("GET", f"{self.twilio_url}/_sim/messages")
                out["twilio"] = (body or {}).get("messages", [])[-RECENT:][::-1] if status == 200 else []
            except (OSError, ValueError) as exc:
                out["errors"].append(f"twilio simulator: {exc}")
        out["inbox"] = self.inbox.events()[:RECENT]
        return out


class _Handler(BaseHTTPRequestHandler):
    server: DevServer
    protocol_version = "HTTP/1.1"
    server_version = "mmsgate-dev"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": {"code": code, "message": message}, "meta": {"timestamp": _now_iso()}})

    def _guard(self, handler) -> None:
        try:
            handler()
        except ConnectionError:  # the client went away (a console tab closed mid-answer): nothing to tell it
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a JSON answer, never a dropped connection
            log.exception("dev server error")
            with contextlib.suppress(OSError):
                self._error(500, "INTERNAL", f"dev server error: {type(exc).__name__}")

    def do_GET(self) -> None:  # noqa: N802
        self._guard(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guard(self._post)

    def do_DELETE(self) -> None:  # noqa: N802
        self._guard(self._delete)

    def _get(self) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        if split.path in ("/", "/_dev", "/_dev/"):
            self.send_response(302)
            self.send_header("Location", "/_dev/console")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if split.path in _STATIC:
            name, content_type = _STATIC[split.path]
            self._send(200, (CONSOLE_DIR / name).read_bytes(), content_type)
            return
        if split.path == "/_dev/inbox":
            events = self.server.inbox.events(query.get("tenant", [None])[0])
            self._json(200, {"data": events, "count": len(events)})
            return
        parts = split.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["_dev", "inbox"] and parts[3] == "raw" and parts[2].isdigit():
            raw = self.server.inbox.raw(int(parts[2]))
            if raw is None:
                self._error(404, "NOT_FOUND", f"no event {parts[2]} in the inbox")
            else:
                self._send(200, raw, "application/octet-stream")
            return
        if split.path == "/_dev/api/state":
            self._json(200, self.server.state())
            return
        self._error(404, "NOT_FOUND", f"no route for GET {split.path}")

    def _post(self) -> None:
        split = urlsplit(self.path)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            self._error(411 if length is None else 413, "BAD_REQUEST", "a Content-Length up to 1 MB is required")
            return
        body = self.rfile.read(int(length))
        parts = split.path.strip("/").split("/")
        if parts[0] != "inbox" or len(parts) > 2:
            self._error(404, "NOT_FOUND", f"no route for POST {split.path}")
            return
        tenant_id = parts[1] if len(parts) == 2 and parts[1] else self.server.default_tenant
        wanted = parse_qs(split.query).get("status", ["200"])[0]
        answer = int(wanted) if wanted.isdigit() and 200 <= int(wanted) <= 599 else 200
        headers = {k.lower(): v for k, v in self.headers.items()}
        event = self.server.receive(tenant_id, body, headers, answer)
        self._json(answer, {"received": event["seq"], "signature_valid": event["signature"]["valid"]})

    def _delete(self) -> None:
        if urlsplit(self.path).path != "/_dev/inbox":
            self._error(404, "NOT_FOUND", "only DELETE /_dev/inbox")
            return
        self.server.inbox.clear()
        self._json(200, {"cleared": True})


def serve(host: str, port: int, **kwargs: Any) -> DevServer:
    """Bind and start serving in a daemon thread; ``close()`` stops it."""
    return DevServer(host, port, **kwargs).start()
