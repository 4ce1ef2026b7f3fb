"""HTTP to a URL that passed the SSRF check, connecting only to the addresses the check vetted.

No host name ever reaches the connection pool: the request goes to ``scheme://<vetted address>:port/path``
with the original ``Host`` header and, for HTTPS, the host name as TLS SNI and as the name the certificate
is verified against. So no DNS answer can change between the check and the connection (DNS rebinding),
and every socket operation is bounded by one overall deadline. Media fetches (``infra.media``) and
customer webhook calls (``post``) both go through here.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.rules.ssrf import VettedUrl


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """One CA-loaded context per process (loading the bundle costs tens of milliseconds)."""
    try:
        import certifi  # noqa: PLC0415 - a dependency of httpx

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover
        return ssl.create_default_context()


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def clamp(self, timeout: float | None, error: type[Exception]) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the request deadline has passed")
        return left if timeout is None else min(timeout, left)


class BoundedStream(httpcore.NetworkStream):
    """Every operation of the connection is bounded by the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname,
                                      self._deadline.clamp(timeout, httpcore.ConnectTimeout))
        return BoundedStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def canonical_ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host


class PinnedBackend(httpcore.NetworkBackend):
    """Opens connections only to vetted (IP address, port) pairs: a host name never gets here, so no DNS
    lookup can happen between the SSRF check and the connection."""

    def __init__(self, inner: httpcore.NetworkBackend, deadline: Deadline, allowed: set[tuple[str, int]]) -> None:
        self._inner, self._deadline, self._allowed = inner, deadline, allowed

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        if (canonical_ip(host), port) not in self._allowed:
            raise httpcore.ConnectError(f"{host}:{port} is not a vetted address")
        stream = self._inner.connect_tcp(host, port, self._deadline.clamp(timeout, httpcore.ConnectTimeout),
                                         local_address, socket_options)
        return BoundedStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never used")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    def __init__(self, backend: httpcore.NetworkBackend, context: ssl.SSLContext) -> None:
        super().__init__(verify=context, trust_env=False, retries=0)
        # httpx has no network-backend option: replace the pool it built by the same pool over ours.
        self._pool = httpcore.ConnectionPool(ssl_context=context, max_connections=1, retries=0,
                                             network_backend=backend)


def netloc(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def host_header(vetted: VettedUrl) -> str:
    default = 443 if vetted.scheme == "https" else 80
    return vetted.host if vetted.port == default else f"{vetted.host}:{vetted.port}"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")




def post(vetted: VettedUrl, *, content: bytes, headers: dict[str, str], timeout: float,
         network_backend: httpcore.NetworkBackend | None = None,
         ssl_context: ssl.SSLContext | None = None) -> httpx.Response:
    """POST to a vetted URL (no redirects followed), trying its vetted addresses in turn."""
    deadline = Deadline(timeout)
    backend = PinnedBackend(network_backend or httpcore.SyncBackend(), deadline,
                            {(canonical_ip(a), vetted.port) for a in vetted.addresses})
    context = ssl_context or default_ssl_context()
    headers = {**headers, "Host": host_header(vetted)}
    extensions = {"sni_hostname": vetted.host} if vetted.scheme == "https" else {}
    last_error: Exception | None = None
    with httpx.Client(transport=PinnedTransport(backend, context), timeout=httpx.Timeout(timeout, connect=3.0),
                      trust_env=False, follow_redirects=False) as client:
        for address in vetted.addresses:
            target = f"{vetted.scheme}://{netloc(address, vetted.port)}{path_of(vetted.url)}"
            try:
                response = client.post(target, content=content, headers=headers, extensions=extensions)
                response.read()
                return response
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = exc  # try the next vetted address
    raise httpx.ConnectError(f"could not connect to any vetted address of {vetted.host}") from last_error
