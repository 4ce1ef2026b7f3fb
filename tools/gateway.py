"""Local stand-in for API Gateway: routes public paths to the function servers, nothing else.

Like API Gateway with ``path_translation: APPEND_PATH_TO_ADDRESS``, the upstream gets the method, the full
path and query string, every header except the hop-by-hop ones, and the body byte for byte; the client
gets the upstream's status, headers and body unchanged. ``X-Forwarded-For`` (and ``-Proto``/``-Host``) are
added. The private functions (dispatch, notifier, sweeper) are not routed.

Paths match as API Gateway matches them (https://cloud.google.com/api-gateway/docs/path-templating): a
path without parameters only in its exact spelling, a path with a ``{parameter}`` segment also with one
trailing slash. So ``POST /api/v1/messages/sms/`` is a 404 here, as there, and never reaches ``send``.

Whatever the gateway answers itself (no route, wrong method, a request line, header or body it refuses)
is the JSON error envelope, never the standard library's HTML page. It refuses what the functions'
server (gunicorn) would refuse with a page of its own: header lines over 8190 bytes, more than 100 header
fields, header names that are not tokens, control characters in values.

Run on its own: ``python -m tools.gateway --port 8080 send=http://127.0.0.1:8701 ...``; the local stack
(``tools/stack.py``) runs it in a thread of its own process.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import re
import socketserver
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO
from urllib.parse import urlsplit

# (method, path pattern) -> function: the paths of docs/openapi.yaml, matched against the raw path (an
# encoded %2F is not a separator) as API Gateway matches them: parameterless paths exactly, a {parameter}
# segment with an optional trailing slash. The private functions are deliberately absent.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", r"/api/v1/messages/sms"): "send",
    ("POST", r"/api/v1/messages/group"): "group",
    ("POST", r"/api/v1/messages/batch"): "batch",
    ("GET", r"/api/v1/messages/group/[^/]+/?"): "messages",
    ("GET", r"/api/v1/messages/(?!(?:sms|group|batch)/?$)[^/]+/?"): "messages",
    ("GET", r"/api/v1/messages"): "messages",  # search: exactly this path (API Gateway matches it exactly)
    ("GET", r"/api/v1/pricing/messaging"): "messages",
    ("DELETE", r"/api/v1/messages/group/[^/]+/?"): "messages",
    ("DELETE", r"/api/v1/messages/(?!(?:sms|group|batch)/?$)[^/]+/?"): "messages",
    ("POST", r"/api/v1/messages/[^/]+/redact/?"): "messages",
    ("GET", r"/api/v1/batches/[^/]+/?"): "batch",
    ("DELETE", r"/api/v1/batches/[^/]+/?"): "batch",
    ("GET", r"/api/v1/opt-outs"): "optouts",
    ("POST", r"/api/v1/opt-outs/import"): "optouts",
    ("GET", r"/api/v1/opt-outs/(?!import/?$)[^/]+/?"): "optouts",
    ("PUT", r"/api/v1/opt-outs/(?!import/?$)[^/]+/?"): "optouts",
    ("DELETE", r"/api/v1/opt-outs/(?!import/?$)[^/]+/?"): "optouts",
    ("GET", r"/api/v1/templates"): "templates",
    ("POST", r"/api/v1/templates"): "templates",
    ("GET", r"/api/v1/templates/[^/]+/?"): "templates",
    ("PUT", r"/api/v1/templates/[^/]+/?"): "templates",
    ("DELETE", r"/api/v1/templates/[^/]+/?"): "templates",
    ("POST", r"/api/v1/templates/[^/]+/preview/?"): "templates",
    ("POST", r"/webhooks/telnyx"): "webhook",
    ("POST", r"/webhooks/twilio"): "webhook",
    ("GET", r"/l/[^/]+/?"): "links",
}

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
}

_REPLACED = {"host", "content-length", "expect"}  # set by the gateway itself (Expect: handled here)
UPSTREAM_TIMEOUT = 120.0
# gunicorn's defaults (limit_request_field_size, limit_request_fields): beyond them the function's server
# answers an HTML 400 of its own, so the gateway refuses first, in the envelope.
MAX_HEADER_LINE = 8190
MAX_HEADER_FIELDS = 100
# Only a bound on what the gateway buffers: the functions answer 413 themselves (64 KB on most routes, the
# opt-out import 512 KB, a batch send 4 MiB). It sits above the largest so that an oversized batch gets the
# function's own 413, as behind API Gateway, and a 4 MiB batch body is never cut off here.
MAX_BODY = 5 * 1024 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET = re.compile(r"[^\x21-\x7e]")  # a request target is printable ASCII (RFC 9112 3.2)
# The standard library's own refusals (request line, header parsing) -> our code; any other (505 for an
# unknown HTTP version, say) is a 400 BAD_REQUEST.
_STDLIB_CODES = {400: "BAD_REQUEST", 414: "URI_TOO_LONG", 431: "HEADERS_TOO_LARGE"}
log = logging.getLogger("gateway")


def _matches(pattern: str, path: str) -> bool:
    return re.fullmatch(pattern, path) is not None


def route(method: str, path: str) -> str | None:
    """The function that serves ``method path`` (path without the query string), or None."""
    return next((fn for (m, prefix), fn in ROUTES.items() if m == method and _matches(prefix, path)), None)


def allowed_methods(path: str) -> list[str]:
    """The methods a known path takes (empty for an unknown path): a 405 names them in ``Allow``."""
    return sorted({m for (m, prefix) in ROUTES if _matches(prefix, path)})


def _envelope(code: str, message: str) -> bytes:
    return json.dumps({
        "error": {"code": code, "message": message},
        "meta": {
            "request_id": "req_" + uuid.uuid4().hex[:24],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        },
    }).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards clients; every response carries Content-Length
    server_version = "mmsgate-local-gateway"
    server: GatewayServer

    def _handle(self) -> None:
        try:
            self._route()
        except Exception as exc:  # noqa: BLE001 - an envelope, never a dropped connection
            log.exception("gateway error")
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client may be gone already
                self._reply(500, _envelope("INTERNAL", f"gateway error: {type(exc).__name__}"))

    def _route(self) -> None:
        if self.headers.defects or self.headers.get_payload():
            # A line that is not a header ends the stdlib's header parsing; the rest would be lost.
            self._refuse_body(400, "BAD_REQUEST", "malformed header line")
            return
        body = self._read_body()
        if body is None:
            return
        if _BAD_TARGET.search(self.path):
            self._reply(400, _envelope("BAD_REQUEST", "the request target must be printable ASCII"))
            return
        split = urlsplit(self.path)
        function = route(self.command, split.path)
        if function is None and (allowed := allowed_methods(split.path)):
            self._reply(405, _envelope("METHOD_NOT_ALLOWED", f"{self.command} is not allowed here"),
                        {"Allow": ", ".join(allowed)})
            return
        if function is None:
            self._reply(404, _envelope("NOT_FOUND", f"no route for {self.command} {split.path}"))
            return
        headers = self._forwarded_headers(body)
        # The Host header (the upstream's netloc, ~25 bytes) is added last; it fits any limit checked here.
        if (refusal := self._refuse_headers([("Host", "127.0.0.1:65535"), *headers])) is not None:
            self._reply(*refusal)
            return
        upstream = self.server.upstreams.get(function)
        if upstream is None:
            self._reply(502, _envelope("UPSTREAM_UNAVAILABLE", f"function {function} is not running"))
            return
        self._forward(function, upstream, headers, body)

    def __getattr__(self, name: str):
        # Every method, TRACE and made-up ones included, is routed like GET and POST (an unknown method is
        # a 405 or 404 in our JSON envelope) rather than answered by the stdlib's HTML 501 page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _read_body(self) -> bytes | None:
        """The request body, or None once an error has been answered (the connection then closes: what is
        left of the body cannot be skipped reliably)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        declared = self.headers.get("Content-Length") or "0"
        if not declared.isascii() or not declared.isdigit():
            self._refuse_body(400, "BAD_REQUEST", "invalid Content-Length")
            return None
        length = int(declared) if len(declared) <= 12 else MAX_BODY + 1
        if length > MAX_BODY:
            self._refuse_body(413, "PAYLOAD_TOO_LARGE", f"request body over {MAX_BODY} bytes")
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip() or b"0"
            try:
                size = int(line, 16)
            except ValueError:
                self._refuse_body(400, "BAD_REQUEST", "invalid chunk size")
                return None
            if size < 0 or total + size > MAX_BODY:
                self._refuse_body(413, "PAYLOAD_TOO_LARGE", f"request body over {MAX_BODY} bytes")
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            total += size
            self.rfile.readline(1024)

    def _refuse_body(self, status: int, code: str, message: str) -> None:
        self.close_connection = True
        self._reply(status, _envelope(code, message))

    @staticmethod
    def _refuse_headers(headers: list[tuple[str, str]]) -> tuple[int, bytes] | None:
        """Headers gunicorn would refuse with a page of its own (checked as they would be forwarded)."""
        if len(headers) > MAX_HEADER_FIELDS:
            return 431, _envelope("HEADERS_TOO_LARGE", f"more than {MAX_HEADER_FIELDS} header fields")
        for name, value in headers:
            if not _TOKEN.fullmatch(name):
                return 400, _envelope("BAD_REQUEST", "a header name is not a token")
            if _BAD_VALUE.search(value):
                return 400, _envelope("BAD_REQUEST", "a header value holds a control character")
            if len(name) + 2 + len(value) > MAX_HEADER_LINE:
                return 431, _envelope("HEADERS_TOO_LARGE", f"a header line is longer than {MAX_HEADER_LINE} bytes")
        return None

    def _forwarded_headers(self, body: bytes) -> list[tuple[str, str]]:
        """The request's headers as the function gets them (Host aside)."""
        connection_tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        headers: list[tuple[str, str]] = []
        forwarded_for = None
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens or lower in _REPLACED:
                continue
            if lower == "x-forwarded-for":
                forwarded_for = value
                continue
            headers.append((name, value))
        client_ip = self.client_address[0]
        headers.append(("X-Forwarded-For", f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip))
        headers.append(("X-Forwarded-Proto", "http"))
        if self.headers.get("Host"):
            headers.append(("X-Forwarded-Host", self.headers["Host"]))
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        return headers

    def _forward(self, function: str, upstream: str, headers: list[tuple[str, str]], body: bytes) -> None:
        target = urlsplit(upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", target.netloc)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body if body else None)
            response = conn.getresponse()
            payload = response.read()
            status, reason, upstream_headers = response.status, response.reason, response.getheaders()
        except TimeoutError:
            self._reply(504, _envelope("UPSTREAM_TIMEOUT", f"function {function} did not answer in time"))
            return
        except (OSError, http.client.HTTPException) as exc:
            self._reply(502, _envelope("UPSTREAM_UNAVAILABLE", f"function {function} is unreachable: {exc}"))
            return
        finally:
            conn.close()

        self.send_response_only(status, reason)
        head = self.command == "HEAD"
        for name, value in upstream_headers:
            if name.lower() in HOP_BY_HOP or (name.lower() == "content-length" and not head):
                continue
            self.send_header(name, value)
        if not (head or 100 <= status < 200 or status in (204, 304)):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)
        self.log_request(status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The standard library refusing a request line or headers: the envelope, not its HTML page.
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsed request line: answer with a status line anyway
            self.request_version = "HTTP/1.0"
        status = code if code in _STDLIB_CODES else 400
        self._reply(status, _envelope(_STDLIB_CODES.get(code, "BAD_REQUEST"),
                                      message or self.responses.get(code, ("error",))[0]))

    def _reply(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        out = self.server.log_file
        if out is not None:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            out.write(f"{stamp} {self.client_address[0]} {format % args}\n")
            out.flush()


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the stdlib default (5) resets connections under a burst of callers
    allow_reuse_address = True  # SO_REUSEADDR: a restarted stack can rebind despite TIME_WAIT

    def __init__(self, host: str, port: int, upstreams: dict[str, str], log_file: TextIO | None = None):
        self.upstreams = dict(upstreams)  # function name -> base URL, e.g. {"send": "http://127.0.0.1:8701"}
        self.log_file = log_file
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(host): a reverse DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> GatewayServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="gateway", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()


def serve(host: str, port: int, upstreams: dict[str, str], log_file: TextIO | None = None) -> GatewayServer:
    """Bind and start serving in a daemon thread; call ``close()`` to stop."""
    return GatewayServer(host, port, upstreams, log_file).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="local API gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("upstream", nargs="*", help="function=base_url, e.g. send=http://127.0.0.1:8701")
    args = parser.parse_args(argv)
    import sys
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    server = GatewayServer(args.host, args.port, upstreams, sys.stderr)
    print(f"gateway on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
