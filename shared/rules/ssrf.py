"""SSRF checks for URLs the gateway will fetch (media) or call (customer webhooks).

``check_url(url, policy, resolver)`` either returns a :class:`VettedUrl` or raises :class:`UrlRejected`
(a ``ValueError``) whose ``reason`` is short, stable and safe to show to the customer. Callers map a
rejection to ``MEDIA_URL_REJECTED`` (media) or a validation error (webhooks).

Whatever later connects to the URL must connect only to one of ``VettedUrl.addresses`` (sending the
vetted host name for TLS SNI and the Host header), never resolve the name again: a second lookup is
how DNS rebinding gets a private address past the check.

Rules, in the order they are applied
 1. The URL is a string of at most ``policy.max_length`` characters with no whitespace, control or
    other invisible characters (Unicode categories C* and Z*) and no backslash.
 2. It is absolute: ``scheme://authority[/path][?query][#fragment]``. The fragment is never sent to a
    server; it is dropped from the normalised URL.
 3. The authority has no user information (any ``@``), a non-empty host and, if a ``:port`` is
    given, a decimal port from 1 to 65535.
 4. If ``scheme://host:port`` is one of ``policy.trusted_origins`` (the local emulator), the scheme
    and address rules below are skipped: a literal IP is taken as is, a name is resolved and any
    address is accepted. Only exact origins are trusted.
 5. The scheme is ``https``.
 6. The host is not a literal IP address in any form: bracketed IPv6, dotted quad, or any of the
    forms ``inet_aton`` and browsers accept (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``).
    Any host whose last label is all digits or ``0x``-hex is treated as one (no top-level domain is
    numeric).
 7. The host is a valid DNS name: labels of letters, digits, ``-`` and ``_`` (at most 63 characters,
    253 in all), no empty label and no trailing dot (``storage.googleapis.com.`` is rejected rather
    than normalised). Non-ASCII labels are converted with IDNA 2008 (the ``idna`` package, without
    UTS 46 mapping), so look-alike characters become a different ``xn--`` name and full-width
    letters, full-width dots or other disallowed characters are rejected. Letters are lower-cased.
 8. The host is not an internal name: ``localhost``, ``metadata``, ``metadata.google.internal`` or
    anything under ``.localhost``, ``.internal`` (including GCE's internal DNS) or ``.local``; and
    it has at least two labels.
 9. The port is 443 (``policy.allowed_ports``) or allowed for that host by a ``host:port`` entry in
    ``policy.allowed_hosts``.
10. If ``policy.require_allowlist`` (media), the host matches ``policy.allowed_hosts``. Entries are
    exact host names, case-insensitive, a trailing dot ignored; an entry ``*.example.com`` matches
    any name *under* example.com (not example.com itself). ``host:port`` entries list the host and
    additionally allow that port for it.
11. The resolver returns at least one address, and every address is public (``is_public_address``).
    One private answer among public ones rejects the URL.

``is_public_address`` rejects, for IPv4: 0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16 (link local,
incl. the metadata server), 172.16/12, 192.0.0/24, 192.0.2/24, 192.88.99/24, 192.168/16, 198.18/15,
198.51.100/24, 203.0.113/24, 224/4 (multicast), 240/4 (reserved, incl. 255.255.255.255). For IPv6
only global unicast (2000::/3) is public, less 2001::/23 (IETF protocol assignments, incl. Teredo),
2001:db8::/32 and 3fff::/20 (documentation) and 2002::/16 (6to4) whose embedded IPv4 address is not
public; IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96) and NAT64 (64:ff9b::/96) addresses are
judged by their embedded IPv4 address. So ::, ::1, fc00::/7, fe80::/10, fec0::/10, ff00::/8,
64:ff9b:1::/48, 100::/64 and 5f00::/16 are all rejected, as is any address with a zone index.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import TYPE_CHECKING
from urllib.parse import quote

from shared.rules.frozen import frozen

if TYPE_CHECKING:
    import types

__all__ = [
    "DEFAULT_MEDIA_HOSTS",
    "Resolver",
    "UrlPolicy",
    "UrlRejected",
    "VettedUrl",
    "check_url",
    "is_public_address",
    "media_url_policy",
    "media_url_problem",
    "shown_url",
    "system_resolver",
    "webhook_url_policy",
]

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> IP address strings``; raises ``OSError`` when the name does not resolve."""

DEFAULT_MEDIA_HOSTS: tuple[str, ...] = ("storage.googleapis.com",)

_DEFAULT_PORTS = {"https": 443, "http": 80}
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_INTERNAL_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal"})
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local")
# Everything printable in ASCII is kept as is in the path and query; anything else is %-encoded.
_PATH_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


# --------------------------------------------------------------------------------------------- errors


class UrlRejected(ValueError):
    """The URL failed a check. ``reason`` is short, stable and human-readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------------------- addresses

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_NON_PUBLIC_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    _V4(n)
    for n in (
        "0.0.0.0/8",  # "this network", incl. unspecified 0.0.0.0
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # CGNAT, RFC 6598
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link local, incl. the metadata server 169.254.169.254
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. limited broadcast 255.255.255.255
    )
)
_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_NON_PUBLIC_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    _V6(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, benchmarking, ...)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
_MAPPED_V6 = _V6("::ffff:0:0/96")
_COMPAT_V6 = _V6("::/96")
_NAT64_V6 = _V6("64:ff9b::/96")
_6TO4_V6 = _V6("2002::/16")


def _is_public_v4(addr: ipaddress.IPv4Address) -> bool:
    return not any(addr in net for net in _NON_PUBLIC_V4)


def _is_public_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv4Address):
        return _is_public_v4(addr)
    if addr.scope_id:
        return False
    if addr in _MAPPED_V6 or addr in _COMPAT_V6 or addr in _NAT64_V6:
        return _is_public_v4(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    if addr in _6TO4_V6:
        return _is_public_v4(ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFFFFFF))
    if addr not in _GLOBAL_UNICAST_V6:
        return False
    return not any(addr in net for net in _NON_PUBLIC_V6)


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(ip, str):
        return None
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def is_public_address(ip: str) -> bool:
    """True if ``ip`` (an IPv4 or IPv6 address string) is a publicly routable unicast address.

    Anything that does not parse as an address is not public.
    """
    addr = _parse_ip(ip)
    return addr is not None and _is_public_ip(addr)


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with ``socket.getaddrinfo`` (TCP); addresses deduplicated, in answer order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


# ---------------------------------------------------------------------------------------------- policy


def _split_host_port(entry: str) -> tuple[str, int | None]:
    host, sep, port = entry.rpartition(":")
    if not sep:
        return entry, None
    if not _PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port in {entry!r}")
    return host, int(port)


def _normalise_policy_host(raw: str) -> str:
    host = raw.strip().lower().rstrip(".")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if not name or not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"invalid allowlist host {raw!r}")
    return host


@frozen
class _Origin:
    scheme: str
    host: str
    port: int


@frozen
class UrlPolicy:
    """What ``check_url`` accepts. See the module docstring for the meaning of each field.

    ``allowed_hosts``: exact host names or ``*.suffix`` wildcards, optionally ``:port``.
    ``allowed_ports``: ports allowed for every host (default 443 only).
    ``trusted_origins``: exact ``scheme://host[:port]`` origins exempt from the scheme and address
    rules, for the local emulator only; never configure one in production.
    ``require_allowlist``: ``False`` for customer webhooks (any public host, still HTTPS and public
    addresses only).
    """

    allowed_hosts: tuple[str, ...]
    allowed_ports: tuple[int, ...] = (443,)
    trusted_origins: tuple[str, ...] = ()
    require_allowlist: bool = True
    max_length: int = 2000
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _suffixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _host_ports: frozenset[tuple[str, int]] = field(init=False, repr=False, compare=False)
    _origins: frozenset[_Origin] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, str) or isinstance(self.trusted_origins, str):
            raise TypeError("allowed_hosts and trusted_origins must be sequences of strings")
        set_ = object.__setattr__
        set_(self, "allowed_hosts", tuple(self.allowed_hosts))
        set_(self, "allowed_ports", tuple(int(p) for p in self.allowed_ports))
        set_(self, "trusted_origins", tuple(self.trusted_origins))
        exact: set[str] = set()
        suffixes: list[str] = []
        host_ports: set[tuple[str, int]] = set()
        for entry in self.allowed_hosts:
            host_part, port = _split_host_port(entry.strip())
            host = _normalise_policy_host(host_part)
            if host.startswith("*."):
                suffixes.append(host[1:])  # ".example.com"
            else:
                exact.add(host)
            if port is not None:
                host_ports.add((host, port))
        origins: set[_Origin] = set()
        for entry in self.trusted_origins:
            try:
                parsed = _parse(entry.strip().rstrip("/"))
            except UrlRejected as exc:
                raise ValueError(f"invalid trusted origin {entry!r}: {exc.reason}") from None
            if parsed.rest not in ("", "/"):
                raise ValueError(f"trusted origin {entry!r} must not have a path")
            origins.add(_Origin(parsed.scheme, parsed.host_key, parsed.port))
        set_(self, "_exact", frozenset(exact))
        set_(self, "_suffixes", tuple(suffixes))
        set_(self, "_host_ports", frozenset(host_ports))
        set_(self, "_origins", frozenset(origins))

    def host_allowed(self, host: str) -> bool:
        """True if the (normalised, lower-case) ``host`` is on the allowlist."""
        return host in self._exact or any(host.endswith(s) and len(host) > len(s) for s in self._suffixes)

    def port_allowed(self, host: str, port: int) -> bool:
        if port in self.allowed_ports or (host, port) in self._host_ports:
            return True
        return any(
            pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
            for pattern, allowed in self._host_ports
            if allowed == port
        )


def media_url_policy(
    bucket: str | None = None,
    extra_hosts: Iterable[str] = (),
    trusted_origins: Iterable[str] = (),
) -> UrlPolicy:
    """The media-URL policy: ``storage.googleapis.com``, the bucket's virtual-host name, extras."""
    hosts = list(DEFAULT_MEDIA_HOSTS)
    if bucket:
        hosts.append(f"{bucket}.storage.googleapis.com")
    hosts.extend(extra_hosts)
    return UrlPolicy(allowed_hosts=tuple(hosts), trusted_origins=tuple(trusted_origins))


def webhook_url_policy(trusted_origins: Iterable[str] = ()) -> UrlPolicy:
    """The customer-webhook policy: any public HTTPS host on port 443."""
    return UrlPolicy(allowed_hosts=(), trusted_origins=tuple(trusted_origins), require_allowlist=False)


# --------------------------------------------------------------------------------------------- parsing


@frozen
class VettedUrl:
    """A URL that passed ``check_url``.

    ``url`` is the normalised URL (lower-case scheme and host, IDNA host, default port omitted,
    fragment dropped, non-ASCII in the path %-encoded). ``addresses`` are the vetted IP addresses
    (deduplicated, canonical text); connect only to these.
    """

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


@frozen
class _Parsed:
    scheme: str
    host: str  # lower-cased, as written (bracketed for IPv6)
    host_key: str  # what origins are compared on: lower-case host, canonical IPv6 in brackets
    port: int
    rest: str  # path and query, fragment removed, ASCII


def _check_characters(url: str) -> None:
    for ch in url:
        if ch == "\\":
            raise UrlRejected("url contains a backslash")
        if ord(ch) <= 0x20 or ord(ch) == 0x7F or unicodedata.category(ch)[0] in "CZ":
            raise UrlRejected("url contains whitespace or control characters")


def _parse(url: str) -> _Parsed:
    scheme, sep, remainder = url.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise UrlRejected("url must be absolute (scheme://host/...)")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UrlRejected("scheme must be https")
    if not remainder.startswith("//"):
        raise UrlRejected("url must be absolute (scheme://host/...)")
    remainder = remainder[2:]
    end = len(remainder)
    for delim in "/?#":
        i = remainder.find(delim)
        if i != -1:
            end = min(end, i)
    authority, rest = remainder[:end], remainder[end:]
    rest = rest.partition("#")[0]
    if rest.startswith("?"):
        rest = "/" + rest
    if "@" in authority:
        raise UrlRejected("url must not contain user information")
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise UrlRejected("host is not a valid domain name")
        host, port_part = authority[: close + 1], authority[close + 1 :]
        if port_part and not port_part.startswith(":"):
            raise UrlRejected("invalid port")
        port_text = port_part[1:] if port_part else None
    else:
        host, colon, port_text_raw = authority.partition(":")
        port_text = port_text_raw if colon else None
    if not host:
        raise UrlRejected("url has no host")
    if port_text is not None:
        if not _PORT_RE.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            raise UrlRejected("invalid port")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[scheme]
    host = host.lower()
    host_key = host
    if host.startswith("["):
        ip = _parse_ip(host[1:-1])
        if ip is None or ip.version != 6:
            raise UrlRejected("host is not a valid domain name")
        host_key = f"[{ip.compressed}]"
    return _Parsed(scheme, host, host_key, port, rest)


def _is_ip_literal(host: str) -> bool:
    """True if a browser, ``inet_aton`` or ``getaddrinfo`` could read ``host`` as an IP address."""
    if host.startswith("["):
        return True
    name = host.removesuffix(".")
    if not name:
        return False
    if _parse_ip(name) is not None:
        return True
    labels = name.split(".")
    if _NUMERIC_LABEL_RE.fullmatch(labels[-1]):
        return True
    try:
        socket.inet_aton(name)
    except (OSError, ValueError):
        return False
    return True


def _idna() -> types.ModuleType | None:
    """The ``idna`` package, imported on the first non-ASCII label (most hosts never need it)."""
    try:  # a dependency of httpx, which the project requires
        import idna  # noqa: PLC0415

        return idna
    except ImportError:  # pragma: no cover - without it, non-ASCII host names are simply rejected
        return None


def _normalise_host(host: str) -> str:
    if host.endswith("."):
        raise UrlRejected("host must not end with a dot")
    labels = host.split(".")
    out: list[str] = []
    for label in labels:
        if not label:
            raise UrlRejected("host is not a valid domain name")
        if not label.isascii():
            idna = _idna()
            if idna is None:
                raise UrlRejected("host is not a valid domain name")
            try:
                label = idna.alabel(label).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                raise UrlRejected("host is not a valid domain name") from None
        if not _LABEL_RE.fullmatch(label):
            raise UrlRejected("host is not a valid domain name")
        out.append(label)
    normalised = ".".join(out)
    if len(normalised) > 253:
        raise UrlRejected("host is not a valid domain name")
    return normalised


def _is_internal_name(host: str) -> bool:
    return host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES)


def _resolve(resolver: Resolver, host: str, port: int) -> list[str]:
    try:
        answers = resolver(host, port)
    except (OSError, UnicodeError):
        raise UrlRejected("host does not resolve") from None
    if not answers:
        raise UrlRejected("host resolves to no addresses")
    return list(answers)


def _build_url(scheme: str, host: str, port: int, rest: str) -> str:
    netloc = host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = quote(rest, safe=_PATH_SAFE) if rest else "/"
    return f"{scheme}://{netloc}{path}"


def _display(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


def _dedupe(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addresses))


# ------------------------------------------------------------------------------------------ the check


def check_url(url: str, policy: UrlPolicy, resolver: Resolver = system_resolver) -> VettedUrl:
    """Vet ``url`` against ``policy``; return the normalised URL and its vetted addresses.

    Raises :class:`UrlRejected` with one of these reasons:
    ``"url must be a string"``, ``"url is empty"``, ``"url is too long"``,
    ``"url contains a backslash"``, ``"url contains whitespace or control characters"``,
    ``"url must be absolute (scheme://host/...)"``, ``"scheme must be https"``,
    ``"url must not contain user information"``, ``"url has no host"``, ``"invalid port"``,
    ``"host is a literal IP address"``, ``"host must not end with a dot"``,
    ``"host is not a valid domain name"``, ``"host is an internal name"``,
    ``"host is not a fully qualified domain name"``, ``"port is not allowed"``,
    ``"host is not on the allowlist"``, ``"host does not resolve"``,
    ``"host resolves to no addresses"``, ``"resolves to an invalid address"``,
    ``"resolves to a private address (<ip>)"`` (any non-public address: private, loopback,
    link local, CGNAT, multicast, reserved, ...).
    """
    if not isinstance(url, str):
        raise UrlRejected("url must be a string")
    if not url:
        raise UrlRejected("url is empty")
    if len(url) > policy.max_length:
        raise UrlRejected("url is too long")
    _check_characters(url)
    parsed = _parse(url)

    if _Origin(parsed.scheme, parsed.host_key, parsed.port) in policy._origins:
        return _trusted(parsed, resolver)

    if parsed.scheme != "https":
        raise UrlRejected("scheme must be https")
    if _is_ip_literal(parsed.host):
        raise UrlRejected("host is a literal IP address")
    host = _normalise_host(parsed.host)
    if _is_internal_name(host):
        raise UrlRejected("host is an internal name")
    if "." not in host:
        raise UrlRejected("host is not a fully qualified domain name")
    if not policy.port_allowed(host, parsed.port):
        raise UrlRejected("port is not allowed")
    if policy.require_allowlist and not policy.host_allowed(host):
        raise UrlRejected("host is not on the allowlist")

    vetted: list[str] = []
    for answer in _resolve(resolver, host, parsed.port):
        addr = _parse_ip(answer)
        if addr is None:
            raise UrlRejected("resolves to an invalid address")
        if not _is_public_ip(addr):
            raise UrlRejected(f"resolves to a private address ({_display(addr)})")
        vetted.append(str(addr))
    return VettedUrl(
        url=_build_url(parsed.scheme, host, parsed.port, parsed.rest),
        scheme=parsed.scheme,
        host=host,
        port=parsed.port,
        addresses=_dedupe(vetted),
    )


# ------------------------------------------------------------------------------ what a rejection says

ALLOWLIST_REASON = "host is not on the allowlist"
# The reasons of the address check: what the host is or resolves to, not how the URL is written.
_ADDRESS_REASONS = ("host is a literal IP address", "host is an internal name", "host does not resolve",
                    "host resolves to no addresses", "resolves to an invalid address", "resolves to a private address")
SHOWN_URL_CHARS = 120


def shown_url(url: object) -> str:
    """A URL as an error message may show it: without user information, query string or fragment (where
    credentials and signed tokens live), printable, at most ``SHOWN_URL_CHARS`` characters."""
    if not isinstance(url, str):
        return "(not a string)"
    text = url.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = text.partition("://")
    head, slash, path = (rest if sep else text).partition("/")
    head = head.rpartition("@")[2]  # user information ends at the authority's last "@"
    text = f"{scheme}{sep}{head}{slash}{path}" if sep else f"{head}{slash}{path}"
    text = "".join(c if c.isprintable() and not c.isspace() else "?" for c in text)
    return text if len(text) <= SHOWN_URL_CHARS else text[: SHOWN_URL_CHARS - 3] + "..."


def _host_of(shown: str) -> str:
    authority = shown.partition("://")[2].partition("/")[0]
    if authority.startswith("["):
        return authority.partition("]")[0] + "]"
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


def media_url_problem(field: str | None, url: object, reason: str, *, redirected_to: object = None) -> str:
    """The message of a ``MEDIA_URL_REJECTED``: which URL (``field``, its position in the request such as
    ``media_urls[1]``, and the URL as ``shown_url`` shows it), and why: the host allowlist (and how an operator
    allows a host), the address check (private, loopback, link-local or metadata address; DNS; a redirect to
    such a place), or the URL's form."""
    shown = shown_url(url)
    what = f"{field} ({shown})" if field else f"media URL {shown}"
    if redirected_to is not None:
        target = shown_url(redirected_to)
        what = f"{what} redirected to {target}, which"
    else:
        target = shown
    if reason == ALLOWLIST_REASON:
        return (f"{what} is not on the media host allowlist: host {_host_of(target)} is not allowed. Media is "
                "fetched only from the media bucket and the hosts the operator lists in MEDIA_ALLOWED_HOSTS "
                "(Terraform: extra_allowed_hosts); host the file there, or ask the operator to allow the host")
    if reason.startswith(_ADDRESS_REASONS):
        return (f"{what} failed the address check: {reason}. Media is fetched only from public addresses "
                "(never private, loopback, link-local or cloud metadata ones), by a host name that resolves")
    if reason == "port is not allowed":
        return (f"{what} was refused: port is not allowed (443 only, unless the operator lists host:port in "
                "MEDIA_ALLOWED_HOSTS)")
    return f"{what} was refused: {reason}"


def _trusted(parsed: _Parsed, resolver: Resolver) -> VettedUrl:
    """A trusted (emulator) origin: no scheme or address rules, but still vetted addresses."""
    literal = parsed.host_key[1:-1] if parsed.host_key.startswith("[") else parsed.host
    addr = _parse_ip(literal)
    if addr is not None:
        addresses: tuple[str, ...] = (str(addr),)
    else:
        resolved = []
        for answer in _resolve(resolver, parsed.host, parsed.port):
            ip = _parse_ip(answer)
            if ip is None:
                raise UrlRejected("resolves to an invalid address")
            resolved.append(str(ip))
        addresses = _dedupe(resolved)
    return VettedUrl(
        url=_build_url(parsed.scheme, parsed.host_key, parsed.port, parsed.rest),
        scheme=parsed.scheme,
        host=parsed.host_key,
        port=parsed.port,
        addresses=addresses,
    )
