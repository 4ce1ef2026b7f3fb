"""``X-Twilio-Signature``, exactly as Twilio computes it (twilio.md §4, from twilio-python's request_validator).

The key is the account's Auth Token. The signed string is the full URL as requested (scheme, host, path,
query, verbatim, no fragment), then for each distinct POST parameter name in ascending order, ``name + value``
for each of its values (de-duplicated, sorted), with no separators and no URL-encoding. The signature is
standard base64 of HMAC-SHA1 over its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

Params = Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]]


def _grouped(params: Params) -> dict[str, set[str]]:
    items = params.items() if isinstance(params, Mapping) else params
    grouped: dict[str, set[str]] = {}
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        grouped.setdefault(name, set()).update(values)
    return grouped


def string_to_sign(url: str, params: Params = ()) -> str:
    """The URL, then ``name + value`` for each parameter in sorted order (a repeated name: sorted values)."""
    grouped = _grouped(params)
    return url + "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))


def expected_signature(auth_token: str, url: str, params: Params = ()) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a form POST of ``params`` to ``url`` (§4 steps 1-3).

    ``url`` must be exactly what Twilio requested: a ``#…`` fragment never reaches the receiver, so pass the
    URL without it (the simulator strips it before requesting and signing, §4.6).
    """
    digest = hmac.new(auth_token.encode("utf-8"), string_to_sign(url, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii").strip()


def body_sha256_url(url: str, body: bytes) -> str:
    """A JSON-body request's URL: ``bodySHA256=<hex>`` appended to the query (§4.5)."""
    sep = "&" if urlsplit(url).query else "?"
    return f"{url}{sep}bodySHA256={hashlib.sha256(body).hexdigest()}"


def _port_variants(url: str) -> list[str]:
    """The URL as given, without an explicit port, and with the scheme's default port (§4.4, what
    twilio-python's ``validate()`` accepts)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url, urlunsplit(parts._replace(netloc=prefix + host))]
    if default is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return list(dict.fromkeys(variants))


def validate(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """What a receiver does (twilio-python ``RequestValidator.validate``): accept the signature for the URL
    as given, without its port, or with the default port added. Constant-time comparison."""
    given = (signature or "").encode("utf-8")
    return any(hmac.compare_digest(expected_signature(auth_token, u, params).encode("utf-8"), given)
               for u in _port_variants(url))
