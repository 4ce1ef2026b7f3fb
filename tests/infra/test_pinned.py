"""infra.pinned.post: a callback goes only to the vetted address, with the original Host, no redirects."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from infra.pinned import post
from shared.rules.ssrf import VettedUrl

# Real local servers on loopback (and their timeouts): not part of the fast pure-Python tier.
pytestmark = pytest.mark.stack


@pytest.fixture
def server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"host": self.headers["Host"], "path": self.path, "body": body})
            self.send_response(302 if self.path.startswith("/redirect") else 204)
            self.send_header("Location", "http://169.254.169.254/latest")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


def _vetted(port: int, path: str, addresses=("127.0.0.1",)) -> VettedUrl:
    return VettedUrl(url=f"http://hooks.example.com:{port}{path}", scheme="http", host="hooks.example.com",
                     port=port, addresses=addresses)


def test_posts_to_the_vetted_address_with_the_original_host(server):
    port, seen = server
    response = post(_vetted(port, "/hooks?x=1"), content=b"{}", headers={"X-Test": "1"}, timeout=5)
    assert response.status_code == 204
    assert seen == [{"host": f"hooks.example.com:{port}", "path": "/hooks?x=1", "body": b"{}"}]


def test_a_redirect_is_answered_not_followed(server):
    port, seen = server
    response = post(_vetted(port, "/redirect"), content=b"{}", headers={}, timeout=5)
    assert response.status_code == 302
    assert len(seen) == 1


def test_nothing_but_the_vetted_addresses_is_tried(server):
    port, seen = server
    with pytest.raises(httpx.ConnectError):
        post(_vetted(port, "/hooks", addresses=("127.0.0.2",)), content=b"{}", headers={}, timeout=2)
    assert seen == []
