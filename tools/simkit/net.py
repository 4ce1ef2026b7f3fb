"""Outbound HTTP of the simulator: the shared TLS context, the media-fetch client."""

from __future__ import annotations

import ssl
import threading

import httpx

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One CA-loaded context per process: loading the CA bundle costs ~50 ms, a server start needs two."""
    global _context
    with _lock:
        if _context is None:
            try:
                import certifi

                _context = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - httpx depends on certifi
                _context = ssl.create_default_context()
        return _context


def client(timeout: float, keepalive: int) -> httpx.Client:
    """A client that ignores proxy environment variables and never follows redirects (as Telnyx does; whether
    Twilio follows redirects on a MediaUrl is UNCONFIRMED, twilio.md §8: the harsher reading for both)."""
    return httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False, verify=ssl_context(),
                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=keepalive))
