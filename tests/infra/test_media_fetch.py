"""The media fetcher (infra.media.Fetcher) against real HTTPS servers on 127.0.0.1.

No internet: host names come from an injected resolver, and the "public" address it answers is routed by
a test network backend to the local server; every other connection is refused before any packet leaves.
So each test sees exactly which (address, port) the fetcher tried to reach, and how many bytes it read.
The servers present a certificate for media.example.com from a CA made here, so TLS SNI and hostname
verification are the real thing.
"""

from __future__ import annotations

import datetime as dt
import io
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from infra.media import Fetcher, Media
from shared.rules import media as rules
from shared.rules.errors import ErrorCode
from shared.rules.media import MediaError, Upload
from shared.rules.ssrf import UrlPolicy, check_url

# Real local servers on loopback (and their timeouts): not part of the fast pure-Python tier.
pytestmark = pytest.mark.stack

PUBLIC = "93.184.216.34"  # routed to the local server by the test backend; never dialled
PUBLIC_2 = "93.184.216.35"  # not routed: a connection attempt to it fails at once
HOSTS = ("media.example.com", "rebind.example.com", "internal.example.com", "cdn.example.com")


def png(size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).save(out, "PNG")
    return out.getvalue()


def jpeg(size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(out, "JPEG")
    return out.getvalue()


PNG, JPEG = png(), jpeg()


# ------------------------------------------------------------------------------------------ TLS


def _tls_material() -> tuple[bytes, bytes, bytes]:
    """(CA certificate PEM, server certificate PEM, server key PEM) for HOSTS."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mmsgate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), leaf.public_bytes(pem), key_pem


# -------------------------------------------------------------------------------------- servers


class Server:
    """An HTTP(S) server on 127.0.0.1 whose routes are functions of the handler."""

    def __init__(self, routes: dict[str, Callable[[BaseHTTPRequestHandler], None]], context=None):
        self.requests: list[dict] = []
        self.sni: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append({"path": self.path, "headers": dict(self.headers)})
                route = routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                    pass  # the fetcher hung up: what the cap and deadline tests want

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if context is not None:
            context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True,
                                                    do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(body: bytes, content_type: str = "image/png", status: int = 200, **headers):
    def route(h: BaseHTTPRequestHandler):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(body)
    return route


def redirect(location: str, status: int = 302):
    def route(h: BaseHTTPRequestHandler):
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return route


def endless(head: bytes, content_type: str):
    """No Content-Length, and a body that never ends (until the client hangs up, or 60 s)."""
    def route(h: BaseHTTPRequestHandler):
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.end_headers()
        h.wfile.write(head)
        block, stop = b"\x00" * 16384, time.monotonic() + 60
        while time.monotonic() < stop:
            h.wfile.write(block)
    return route


def drip(head: bytes, every: float = 0.05):
    """A valid start, then one byte every ``every`` seconds: no single read ever times out."""
    def route(h: BaseHTTPRequestHandler):
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(len(head) + 1_000_000))
        h.end_headers()
        h.wfile.write(head)
        h.wfile.flush()
        stop = time.monotonic() + 30
        while time.monotonic() < stop:
            time.sleep(every)
            h.wfile.write(b"\x00")
            h.wfile.flush()
    return route


def silent(seconds: float = 30):
    def route(h: BaseHTTPRequestHandler):
        time.sleep(seconds)
    return route


ROUTES = {
    "/photo.png": reply(PNG),
    "/photo-octet": reply(PNG, "application/octet-stream"),
    "/lying.png": reply(JPEG, "image/png"),
    "/page.jpg": reply(b"<!doctype html><html><body>Not found</body></html>", "image/jpeg"),
    "/gzip.png": reply(PNG, "image/png", Content_Encoding="gzip"),
    "/missing.png": reply(b"gone", "text/plain", status=404),
    "/huge-declared.png": lambda h: (h.send_response(200), h.send_header("Content-Type", "image/png"),
                                     h.send_header("Content-Length", str(10**9)), h.end_headers(),
                                     h.wfile.write(PNG)),
    "/to-photo": redirect("/photo.png"),
    "/to-cdn": redirect("https://cdn.example.com/photo.png", 301),
    "/to-internal": redirect("https://internal.example.com/latest/meta-data/", 302),
    "/to-loopback": redirect("https://127.0.0.1/secret", 307),
    "/to-http": redirect("http://media.example.com/photo.png", 308),
    "/to-elsewhere": redirect("https://evil.example.org/photo.png"),
    "/loop": redirect("/loop"),
    "/hop1": redirect("/hop2"),
    "/hop2": redirect("/hop3"),
    "/hop3": redirect("/photo.png"),
    "/endless.jpg": endless(JPEG[:200], "image/jpeg"),
    "/endless.pdf": endless(b"%PDF-1.7\n", "application/pdf"),
    "/drip.png": drip(PNG[:100]),
    "/silent": silent(),
}


class Resolver:
    """Answers from a table; a list of answers is used one call after the other (the last one sticks)."""

    def __init__(self, table: dict[str, list[list[str]]]):
        self.table, self.calls = table, []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise OSError(f"test resolver: no such host {host}")
        return answers[min(sum(1 for h in self.calls if h == host) - 1, len(answers) - 1)]


class LocalOnly(httpcore.NetworkBackend):
    """Routes the test's public address to the local server, refuses every other connection, and
    counts the bytes the fetcher reads."""

    def __init__(self, routes: dict[tuple[str, int], tuple[str, int]]):
        self.routes, self.connects, self.bytes_read = routes, [], 0
        self.inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects.append((host, port))
        if (host, port) not in self.routes:
            raise httpcore.ConnectError(f"test backend: {host}:{port} is not routed")
        real = self.routes[(host, port)]
        return _Counting(self.inner.connect_tcp(*real, timeout, local_address, socket_options), self)

    def sleep(self, seconds):
        time.sleep(seconds)


class _Counting(httpcore.NetworkStream):
    def __init__(self, inner, backend):
        self.inner, self.backend = inner, backend

    def read(self, max_bytes, timeout=None):
        data = self.inner.read(max_bytes, timeout)
        self.backend.bytes_read += len(data)
        return data

    def write(self, buffer, timeout=None):
        self.inner.write(buffer, timeout)

    def close(self):
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _Counting(self.inner.start_tls(ssl_context, server_hostname, timeout), self.backend)

    def get_extra_info(self, info):
        return self.inner.get_extra_info(info)


@pytest.fixture(scope="module")
def tls():
    ca, cert, key = _tls_material()
    return SimpleNamespace(ca=ca, cert=cert, key=key)


@pytest.fixture(scope="module")
def server(tls, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(tls.cert)
    (directory / "key.pem").write_bytes(tls.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    s = Server(ROUTES, context)
    yield s
    s.close()


@pytest.fixture
def net(server, tls):
    """What one test fetches with: resolver, backend and a factory of fetchers."""
    resolver = Resolver({
        "media.example.com": [[PUBLIC]],
        "cdn.example.com": [[PUBLIC]],
        "rebind.example.com": [[PUBLIC], ["127.0.0.1"]],
        "internal.example.com": [["10.20.30.40"]],
    })
    backend = LocalOnly({(PUBLIC, 443): ("127.0.0.1", server.port)})
    client_context = ssl.create_default_context(cadata=tls.ca.decode())
    policy = UrlPolicy(allowed_hosts=HOSTS)
    server.requests.clear()
    server.sni.clear()

    def fetcher(timeout: float = 5.0) -> Fetcher:
        return Fetcher(policy, resolver, timeout=timeout, network_backend=backend, ssl_context=client_context)

    return SimpleNamespace(resolver=resolver, backend=backend, policy=policy, fetcher=fetcher,
                           context=client_context, server=server)


def code_of(call) -> ErrorCode:
    with pytest.raises(MediaError) as err:
        call()
    return err.value.code


# ------------------------------------------------------------------------------------------ tests


def test_connects_only_to_the_vetted_address_with_host_header_and_sni(net):
    fetched = net.fetcher().fetch("https://media.example.com/photo.png")

    assert fetched.data == PNG and fetched.content_type == "image/png"
    assert net.backend.connects == [(PUBLIC, 443)]  # the address the check vetted, never a name
    assert net.resolver.calls == ["media.example.com"]  # one resolution, by the check itself
    assert net.server.requests[0]["headers"]["Host"] == "media.example.com"
    assert net.server.sni == ["media.example.com"]
    assert net.server.requests[0]["headers"]["Accept-Encoding"] == "identity"


def test_the_certificate_is_verified_for_the_host_name(net):
    untrusted = ssl.create_default_context()  # the system CAs do not know the test CA
    fetcher = Fetcher(net.policy, net.resolver, timeout=5, network_backend=net.backend, ssl_context=untrusted)
    assert code_of(lambda: fetcher.fetch("https://media.example.com/photo.png")) is ErrorCode.MEDIA_FETCH_FAILED
    assert net.server.requests == []


def test_another_vetted_address_is_tried_when_one_does_not_connect(net):
    net.resolver.table["media.example.com"] = [[PUBLIC_2, PUBLIC]]
    assert net.fetcher().fetch("https://media.example.com/photo.png").data == PNG
    assert net.backend.connects == [(PUBLIC_2, 443), (PUBLIC, 443)]


def test_rebinding_never_reaches_the_private_address(net):
    # The accept path: the request gate resolves first (public), the fetcher's own check resolves again
    # (now private) and refuses before connecting anywhere.
    check_url("https://rebind.example.com/photo.png", net.policy, net.resolver)
    assert code_of(lambda: net.fetcher().fetch("https://rebind.example.com/photo.png")) is \
        ErrorCode.MEDIA_URL_REJECTED
    assert net.backend.connects == []


def test_the_fetcher_resolves_once_and_connects_to_what_it_vetted(net):
    # Were there a second lookup between check and connect, it would answer 127.0.0.1 here.
    fetched = net.fetcher().fetch("https://rebind.example.com/photo.png")
    assert fetched.data == PNG
    assert net.resolver.calls == ["rebind.example.com"]
    assert net.backend.connects == [(PUBLIC, 443)]
    assert net.server.requests[0]["headers"]["Host"] == "rebind.example.com"


@pytest.mark.parametrize("path", ["/to-internal", "/to-loopback", "/to-http", "/to-elsewhere"])
def test_a_redirect_is_followed_only_to_a_target_that_passes_the_same_check(net, path):
    with pytest.raises(MediaError) as err:
        net.fetcher().fetch(f"https://media.example.com{path}?token=s3cret")
    assert err.value.code is ErrorCode.MEDIA_URL_REJECTED
    assert err.value.message.startswith(f"media URL https://media.example.com{path} redirected to ")
    assert "s3cret" not in err.value.message
    # what the request rewrites with the URL's position (shared.services.sending.media_field)
    assert (err.value.url, err.value.redirected_to is not None) == (f"https://media.example.com{path}?token=s3cret",
                                                                     True)
    assert net.backend.connects == [(PUBLIC, 443)]  # only the first hop was ever dialled


def test_good_redirects_are_followed_up_to_three(net):
    assert net.fetcher().fetch("https://media.example.com/to-photo").data == PNG
    assert net.fetcher().fetch("https://media.example.com/to-cdn").final_url == "https://cdn.example.com/photo.png"
    assert net.fetcher().fetch("https://media.example.com/hop1").data == PNG  # three redirects
    assert net.server.sni[-1] == "media.example.com"
    assert "cdn.example.com" in net.server.sni


def test_a_fourth_redirect_is_refused(net):
    assert code_of(lambda: net.fetcher().fetch("https://media.example.com/loop")) is ErrorCode.MEDIA_FETCH_FAILED
    assert len(net.server.requests) == 4


def test_an_endless_image_stops_at_the_cap(net):
    with pytest.raises(MediaError) as err:
        net.fetcher().fetch("https://media.example.com/endless.jpg", lambda head: 200_000)
    # too large, not timed out: the cap ended it, and it read no more than the cap plus one socket read
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert net.backend.bytes_read < 200_000 + 70_000


def test_an_endless_non_image_stops_at_the_message_limit(net):
    limit = 300_000
    with pytest.raises(MediaError) as err:
        net.fetcher().fetch("https://media.example.com/endless.pdf", lambda head: rules.source_cap(head, limit))
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert "only images can be downscaled" in err.value.message
    assert net.backend.bytes_read < limit + 70_000


def test_the_default_cap_is_the_source_cap(net):
    with pytest.raises(MediaError) as err:
        net.fetcher(timeout=20).fetch("https://media.example.com/endless.jpg")
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert net.backend.bytes_read < rules.MAX_SOURCE_BYTES + 70_000


def test_a_declared_length_over_the_cap_is_refused_without_reading_the_body(net):
    with pytest.raises(MediaError) as err:
        net.fetcher().fetch("https://media.example.com/huge-declared.png")
    assert err.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert net.backend.bytes_read < 10_000


def test_a_slow_drip_ends_at_the_deadline(net):
    """No single read ever times out (a byte every 50 ms), and the drip lasts 30 s: only the fetch's overall
    deadline can end it early. The bound proves that deadline is enforced, with room for a loaded machine (10
    times the deadline); the floor holds on any machine (load only makes a fetch slower)."""
    timeout = 1.0
    t0 = time.monotonic()
    with pytest.raises(MediaError) as err:
        net.fetcher(timeout=timeout).fetch("https://media.example.com/drip.png")
    elapsed = time.monotonic() - t0
    assert err.value.code is ErrorCode.MEDIA_FETCH_FAILED
    assert f"no complete answer within {timeout:g} s" in err.value.message
    assert timeout * 0.9 <= elapsed < 10 * timeout, elapsed
    assert net.backend.bytes_read < 10_000  # a few dozen bytes came: far under any cap


def test_a_server_that_never_answers_ends_at_the_deadline(net):
    """The server stays silent for 30 s; the fetch ends by its 0.8 s deadline (10 times that allowed for a
    loaded machine, still far from the 30 s it would take without one)."""
    t0 = time.monotonic()
    assert code_of(lambda: net.fetcher(timeout=0.8).fetch("https://media.example.com/silent")) is \
        ErrorCode.MEDIA_FETCH_FAILED
    assert time.monotonic() - t0 < 8


@pytest.mark.parametrize(("path", "code"), [
    ("/missing.png", ErrorCode.MEDIA_FETCH_FAILED),
    ("/gzip.png", ErrorCode.MEDIA_FETCH_FAILED),
])
def test_unusable_answers(net, path, code):
    assert code_of(lambda: net.fetcher().fetch(f"https://media.example.com{path}")) is code


# ------------------------------------------------------------------------- Media.prepare, no cloud


class FakeBucket:
    def __init__(self):
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.uploads = 0

    def get_blob(self, name):
        if name not in self.objects:
            return None
        data, _ = self.objects[name]
        return SimpleNamespace(size=len(data), time_created=dt.datetime.now(dt.UTC))

    def blob(self, name):
        bucket = self

        class Blob:
            def upload_from_string(self, data, content_type):
                bucket.uploads += 1
                bucket.objects[name] = (data, content_type)

        return Blob()


def media_service(net, limit: int = 1_048_576, timeout: float = 5.0) -> Media:
    settings = SimpleNamespace(media_max_bytes=limit, media_fetch_timeout_seconds=timeout, media_url_ttl_seconds=60,
                               media_signing_key="", media_bucket="b")
    service = Media(settings, net.resolver, network_backend=net.backend, ssl_context=net.context)
    service.bucket = FakeBucket()
    return service


@pytest.mark.parametrize(("path", "fragment"), [
    ("/lying.png", "declares image/png but its content is image/jpeg"),
    ("/page.jpg", "declares image/jpeg but its content is text/html"),
])
def test_a_lying_content_type_is_refused_and_nothing_is_stored(net, path, fragment):
    service = media_service(net)
    with pytest.raises(MediaError) as err:
        service.prepare("tnt_a", [f"https://media.example.com{path}"], [], net.policy)
    assert err.value.code is ErrorCode.MEDIA_TYPE_UNSUPPORTED
    assert fragment in err.value.message
    assert service.bucket.objects == {}


def test_prepare_fetches_each_url_once_and_stores_each_content_once(net):
    service = media_service(net)
    urls = ["https://media.example.com/photo.png", "https://media.example.com/photo-octet",
            "https://cdn.example.com/photo.png"]
    upload = Upload("text/vcard", b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEND:VCARD\r\n", "a.vcf")

    refs = service.prepare("tnt_a", urls, [upload], net.policy)

    assert sorted(r["path"] for r in net.server.requests) == ["/photo-octet", "/photo.png", "/photo.png"]
    assert [r["content_type"] for r in refs] == ["image/png", "image/png", "image/png", "text/vcard"]
    assert len({r["object"] for r in refs}) == 2  # the same PNG three times is one object
    assert service.bucket.uploads == 2
    assert refs[3]["filename"] == "a.vcf"
    for ref in refs:
        assert ref["object"] == f"media/tnt_a/{ref['sha256']}"
        data, content_type = service.bucket.objects[ref["object"]]
        assert len(data) == ref["size"] and content_type == ref["content_type"]
    service.prepare("tnt_a", urls[:1], [], net.policy)
    assert service.bucket.uploads == 2  # stored already


class Held:
    """A route that answers nothing until the test lets it go (or 30 s pass), and says which came first."""

    def __init__(self):
        self.release, self.done, self.outcomes = threading.Event(), threading.Event(), []

    def __call__(self, h: BaseHTTPRequestHandler):
        self.outcomes.append("released" if self.release.wait(30) else "expired")
        self.done.set()


def test_prepare_fails_fast_on_the_first_bad_url(net, monkeypatch):
    """By order of events, not by the clock: the held fetch is only let go after prepare has returned, and
    its deadline (60 s) is past the hold's 30 s. Had prepare waited for it, the hold would have expired first."""
    held = Held()
    monkeypatch.setitem(ROUTES, "/held", held)
    service = media_service(net, timeout=60)
    with pytest.raises(MediaError) as err:
        service.prepare("tnt_a", ["https://media.example.com/held", "https://media.example.com/missing.png"],
                        [], net.policy)
    held.release.set()
    assert err.value.code is ErrorCode.MEDIA_FETCH_FAILED and "HTTP 404" in err.value.message
    assert held.done.wait(30), "the held fetch never reached the server"
    assert held.outcomes == ["released"]  # prepare returned while the held fetch was still waiting
