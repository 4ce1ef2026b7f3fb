"""A catalogue of SSRF attempts that ``shared.rules.ssrf.check_url`` must reject, and URLs it must accept.

Each attempt names the policy it is checked against ("media" or "webhook"), what the fake resolver
answers for the host (``RAISES`` = the name does not resolve), and the reason expected (a prefix of
``UrlRejected.reason``). No entry needs the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.rules.ssrf import UrlPolicy, media_url_policy, webhook_url_policy

BUCKET = "mmsgate-media"
TRUSTED_ORIGINS = ("http://localhost:9023", "http://127.0.0.1:9023")

POLICIES: dict[str, UrlPolicy] = {
    "media": media_url_policy(BUCKET, trusted_origins=TRUSTED_ORIGINS),
    "webhook": webhook_url_policy(),
}

PUBLIC_V4 = "142.250.72.16"
PUBLIC_V6 = "2607:f8b0:4005:80b::2010"
PUBLIC = (PUBLIC_V4, PUBLIC_V6)
RAISES = None  # the fake resolver raises socket.gaierror

GCS = "https://storage.googleapis.com"


@dataclass(frozen=True)
class Attempt:
    url: str
    why: str
    reason: str
    resolves: tuple[str, ...] | None = PUBLIC
    policy: str = "media"


@dataclass(frozen=True)
class Allowed:
    url: str
    why: str
    expected_url: str
    resolves: tuple[str, ...] = PUBLIC
    policy: str = "media"


LITERAL = "host is a literal IP address"
PRIVATE = "resolves to a private address"
USERINFO = "url must not contain user information"
SCHEME = "scheme must be https"
NOT_ALLOWED = "host is not on the allowlist"
BAD_NAME = "host is not a valid domain name"
INTERNAL = "host is an internal name"
PORT = "port is not allowed"
BAD_PORT = "invalid port"
CONTROL = "url contains whitespace or control characters"
BACKSLASH = "url contains a backslash"
ABSOLUTE = "url must be absolute"


REJECTED: list[Attempt] = [
    # --- loopback, in every encoding -----------------------------------------------------------
    Attempt("https://127.0.0.1/", "loopback, dotted quad", LITERAL),
    Attempt("https://127.0.0.1:443/x", "loopback with explicit port", LITERAL),
    Attempt("https://2130706433/", "loopback as a 32-bit integer", LITERAL),
    Attempt("https://0177.0.0.1/", "loopback with an octal first part", LITERAL),
    Attempt("https://0177.0000.0000.0001/", "loopback, all parts octal", LITERAL),
    Attempt("https://0x7f.0x0.0x0.0x1/", "loopback, all parts hex", LITERAL),
    Attempt("https://0x7f000001/", "loopback as one hex number", LITERAL),
    Attempt("https://0x7f.1/", "loopback, hex and short form", LITERAL),
    Attempt("https://127.1/", "loopback, short form", LITERAL),
    Attempt("https://127.0.1/", "loopback, three-part form", LITERAL),
    Attempt("https://017700000001/", "loopback as one octal number", LITERAL),
    Attempt("https://127.0.0.1./", "loopback with a trailing dot", LITERAL),
    Attempt("https://%31%32%37.0.0.1/", "percent-encoded loopback", LITERAL),
    Attempt("https://[::1]/", "IPv6 loopback", LITERAL),
    Attempt("https://[0:0:0:0:0:0:0:1]/", "IPv6 loopback, long form", LITERAL),
    Attempt("https://[::ffff:127.0.0.1]/", "IPv4-mapped loopback", LITERAL),
    Attempt("https://[::127.0.0.1]/", "IPv4-compatible loopback", LITERAL),
    Attempt("https://0/", "0 is 0.0.0.0, which reaches localhost", LITERAL),
    Attempt("https://0.0.0.0/", "unspecified address", LITERAL),
    Attempt("https://[::]/", "IPv6 unspecified address", LITERAL),
    Attempt("https://localhost/", "localhost by name", INTERNAL),
    Attempt("https://LOCALHOST/", "localhost, upper case", INTERNAL),
    Attempt("https://app.localhost/", "RFC 6761 .localhost subdomain", INTERNAL),
    Attempt("https://localhost./", "localhost with a trailing dot", "host must not end with a dot"),
    Attempt(f"{GCS}/b/o", "allowlisted host resolving to loopback (DNS rebinding)", PRIVATE, ("127.0.0.1",)),
    Attempt(
        "https://127.0.0.1.nip.io/", "wildcard DNS name for loopback", PRIVATE, ("127.0.0.1",), "webhook"
    ),
    Attempt(f"{GCS}/b/o", "allowlisted host resolving to IPv6 loopback", PRIVATE, ("::1",)),
    # --- the metadata server -------------------------------------------------------------------
    Attempt("https://169.254.169.254/computeMetadata/v1/", "metadata server by address", LITERAL),
    Attempt("http://169.254.169.254/computeMetadata/v1/", "metadata server over plain http", SCHEME),
    Attempt("https://2852039166/computeMetadata/v1/", "metadata server as an integer", LITERAL),
    Attempt("https://0xa9.0xfe.0xa9.0xfe/", "metadata server in hex", LITERAL),
    Attempt("https://0251.0376.0251.0376/", "metadata server in octal", LITERAL),
    Attempt("https://metadata.google.internal/computeMetadata/v1/", "metadata server by name", INTERNAL),
    Attempt("https://METADATA.google.internal/", "metadata server by name, mixed case", INTERNAL),
    Attempt("https://metadata/computeMetadata/v1/", "metadata server by short name", INTERNAL),
    Attempt(
        "https://metadata.google.internal./computeMetadata/v1/",
        "metadata server name with a trailing dot",
        "host must not end with a dot",
    ),
    Attempt("https://vm-1.c.project.internal/", "GCE internal DNS name", INTERNAL),
    Attempt("https://[fd00:ec2::254]/", "AWS IPv6 metadata address", LITERAL),
    Attempt("https://[::ffff:169.254.169.254]/", "IPv4-mapped metadata address", LITERAL),
    Attempt("https://[::ffff:a9fe:a9fe]/", "IPv4-mapped metadata address in hex", LITERAL),
    Attempt(f"{GCS}/b/o", "allowlisted host resolving to the metadata server", PRIVATE, ("169.254.169.254",)),
    Attempt(
        f"{GCS}/b/o", "allowlisted host resolving to mapped metadata", PRIVATE, ("::ffff:169.254.169.254",)
    ),
    Attempt(f"{GCS}/b/o", "allowlisted host resolving to fd00:ec2::254", PRIVATE, ("fd00:ec2::254",)),
    Attempt(f"{GCS}/b/o", "NAT64 form of the metadata server", PRIVATE, ("64:ff9b::a9fe:a9fe",)),
    Attempt(
        "https://hooks.example.com/",
        "webhook host resolving to metadata",
        PRIVATE,
        ("169.254.169.254",),
        "webhook",
    ),
    # --- private, CGNAT and other non-public IPv4 ------------------------------------------------
    Attempt("https://10.0.0.1/", "RFC 1918 literal", LITERAL),
    Attempt("https://192.168.1.1/", "RFC 1918 literal", LITERAL),
    Attempt("https://172.16.0.1/", "RFC 1918 literal", LITERAL),
    Attempt("https://100.64.0.1/", "CGNAT literal", LITERAL),
    Attempt(f"{GCS}/b/o", "resolves to 10/8", PRIVATE, ("10.0.0.5",)),
    Attempt(f"{GCS}/b/o", "resolves to 192.168/16", PRIVATE, ("192.168.0.10",)),
    Attempt(f"{GCS}/b/o", "resolves to 172.16/12", PRIVATE, ("172.31.255.255",)),
    Attempt(f"{GCS}/b/o", "resolves to CGNAT", PRIVATE, ("100.64.0.1",)),
    Attempt(f"{GCS}/b/o", "resolves to the top of CGNAT", PRIVATE, ("100.127.255.254",)),
    Attempt(f"{GCS}/b/o", "resolves to link local", PRIVATE, ("169.254.1.1",)),
    Attempt(f"{GCS}/b/o", "resolves to 0.0.0.0", PRIVATE, ("0.0.0.0",)),
    Attempt(f"{GCS}/b/o", "resolves to multicast", PRIVATE, ("224.0.0.1",)),
    Attempt(f"{GCS}/b/o", "resolves to reserved 240/4", PRIVATE, ("240.0.0.1",)),
    Attempt(f"{GCS}/b/o", "resolves to broadcast", PRIVATE, ("255.255.255.255",)),
    Attempt(f"{GCS}/b/o", "resolves to benchmarking 198.18/15", PRIVATE, ("198.19.0.1",)),
    Attempt(f"{GCS}/b/o", "resolves to TEST-NET-3", PRIVATE, ("203.0.113.5",)),
    Attempt(f"{GCS}/b/o", "resolves to IETF protocol assignments", PRIVATE, ("192.0.0.8",)),
    Attempt(f"{GCS}/b/o", "one public and one private answer", PRIVATE, (PUBLIC_V4, "10.1.2.3")),
    Attempt(f"{GCS}/b/o", "private answer first, public second", PRIVATE, ("192.168.7.7", PUBLIC_V4)),
    Attempt(f"{GCS}/b/o", "public IPv4 and link-local IPv6", PRIVATE, (PUBLIC_V4, "fe80::1")),
    # --- IPv6 -----------------------------------------------------------------------------------
    Attempt("https://[2607:f8b0:4005:80b::2010]/", "even a public IPv6 literal", LITERAL),
    Attempt("https://[fe80::1%25eth0]/", "link-local literal with a zone", LITERAL),
    Attempt(f"{GCS}/b/o", "resolves to ULA fc00::/7", PRIVATE, ("fd12:3456::1",)),
    Attempt(f"{GCS}/b/o", "resolves to fc00::1", PRIVATE, ("fc00::1",)),
    Attempt(f"{GCS}/b/o", "resolves to link local", PRIVATE, ("fe80::1",)),
    Attempt(f"{GCS}/b/o", "resolves to scoped link local", PRIVATE, ("fe80::1%eth0",)),
    Attempt(f"{GCS}/b/o", "resolves to multicast", PRIVATE, ("ff02::1",)),
    Attempt(f"{GCS}/b/o", "resolves to ::", PRIVATE, ("::",)),
    Attempt(f"{GCS}/b/o", "IPv4-mapped private", PRIVATE, ("::ffff:10.0.0.1",)),
    Attempt(f"{GCS}/b/o", "IPv4-compatible private", PRIVATE, ("::10.0.0.1",)),
    Attempt(f"{GCS}/b/o", "6to4 with embedded 192.168.1.1", PRIVATE, ("2002:c0a8:101::1",)),
    Attempt(f"{GCS}/b/o", "NAT64 with embedded 127.0.0.1", PRIVATE, ("64:ff9b::7f00:1",)),
    Attempt(f"{GCS}/b/o", "local-use NAT64 prefix", PRIVATE, ("64:ff9b:1::808:808",)),
    Attempt(f"{GCS}/b/o", "documentation prefix", PRIVATE, ("2001:db8::1",)),
    Attempt(f"{GCS}/b/o", "Teredo", PRIVATE, ("2001:0:4136:e378:8000:63bf:3fff:fdd2",)),
    Attempt(f"{GCS}/b/o", "site-local (deprecated)", PRIVATE, ("fec0::1",)),
    # --- userinfo tricks --------------------------------------------------------------------------
    Attempt("https://storage.googleapis.com@evil.com/", "allowlisted name as userinfo", USERINFO),
    Attempt("https://user:pass@storage.googleapis.com/b/o", "credentials on an allowlisted host", USERINFO),
    Attempt(
        "https://storage.googleapis.com:443@evil.com/", "allowlisted name and port as userinfo", USERINFO
    ),
    Attempt("https://@storage.googleapis.com/b/o", "empty userinfo", USERINFO),
    Attempt("https://evil.com#@storage.googleapis.com", "fragment hiding the real host", NOT_ALLOWED),
    Attempt("https://evil.com?@storage.googleapis.com/", "query hiding the real host", NOT_ALLOWED),
    Attempt("https://storage.googleapis.com%40evil.com/", "percent-encoded @", BAD_NAME),
    # --- backslash and parser-confusion tricks ----------------------------------------------------
    Attempt("https://storage.googleapis.com\\@evil.com/", "backslash before @", BACKSLASH),
    Attempt("https:\\\\evil.com\\b\\o", "backslashes as slashes", BACKSLASH),
    Attempt("https://evil.com\\.storage.googleapis.com/", "backslash in the host", BACKSLASH),
    Attempt("https:///storage.googleapis.com/b/o", "three slashes", "url has no host"),
    Attempt("https:/storage.googleapis.com/b/o", "one slash", ABSOLUTE),
    Attempt("https:storage.googleapis.com/b/o", "no slashes", ABSOLUTE),
    Attempt("//storage.googleapis.com/b/o", "scheme-relative", ABSOLUTE),
    Attempt("storage.googleapis.com/b/o", "no scheme at all", ABSOLUTE),
    Attempt("https://storage.googleapis.com.evil.com/", "allowlisted name as a prefix", NOT_ALLOWED),
    Attempt("https://storage.googleapis.com-evil.com/", "allowlisted name with a suffix", NOT_ALLOWED),
    Attempt("https://evilstorage.googleapis.com/", "name glued to the allowlisted host", NOT_ALLOWED),
    Attempt("https://other-bucket.storage.googleapis.com/o", "a bucket that is not ours", NOT_ALLOWED),
    Attempt(
        "https://storage.googleapis.com./b/o",
        "allowlisted host with a trailing dot",
        "host must not end with a dot",
    ),
    Attempt("https://storage..googleapis.com/b/o", "empty label", BAD_NAME),
    Attempt("https://evil.com:443:80/", "two ports", BAD_PORT),
    # --- ports ----------------------------------------------------------------------------------------
    Attempt("https://storage.googleapis.com:80/b/o", "port 80", PORT),
    Attempt("https://storage.googleapis.com:8080/b/o", "port 8080", PORT),
    Attempt("https://storage.googleapis.com:22/b/o", "port 22", PORT),
    Attempt("https://storage.googleapis.com:0/b/o", "port 0", BAD_PORT),
    Attempt("https://storage.googleapis.com:65536/b/o", "port out of range", BAD_PORT),
    Attempt("https://storage.googleapis.com:/b/o", "empty port", BAD_PORT),
    Attempt("https://storage.googleapis.com:+443/b/o", "signed port", BAD_PORT),
    Attempt("https://storage.googleapis.com:0x1bb/b/o", "hex port", BAD_PORT),
    Attempt("https://hooks.example.com:8443/dlr", "webhook on a non-443 port", PORT, PUBLIC, "webhook"),
    # --- schemes --------------------------------------------------------------------------------------
    Attempt("http://storage.googleapis.com/b/o", "plain http", SCHEME),
    Attempt("HTTP://storage.googleapis.com/b/o", "plain http, upper case", SCHEME),
    Attempt("file:///etc/passwd", "file URL", SCHEME),
    Attempt("gopher://127.0.0.1:6379/_FLUSHALL", "gopher to redis", SCHEME),
    Attempt("data:text/plain;base64,aGVsbG8=", "data URL", SCHEME),
    Attempt("ftp://storage.googleapis.com/b/o", "ftp", SCHEME),
    Attempt("javascript:alert(1)", "javascript URL", SCHEME),
    Attempt("ws://storage.googleapis.com/", "websocket", SCHEME),
    Attempt("dict://127.0.0.1:11211/stats", "dict", SCHEME),
    Attempt("http://hooks.example.com/dlr", "webhook over plain http", SCHEME, PUBLIC, "webhook"),
    # --- unicode, IDNA and invisible characters -----------------------------------------------------
    Attempt("https://st\u043erage.googleapis.com/b/o", "Cyrillic o look-alike", NOT_ALLOWED),
    Attempt("https://\uff53torage.googleapis.com/b/o", "full-width s", BAD_NAME),
    Attempt("https://storage\u3002googleapis\u3002com/b/o", "ideographic full stops", BAD_NAME),
    Attempt("https://storage.googleapis.\u217dom/b/o", "roman numeral c", BAD_NAME),
    Attempt("https://storage.googleapis.com\u200b/b/o", "zero-width space", CONTROL),
    Attempt("https://storage.goo\u00adgleapis.com/b/o", "soft hyphen", CONTROL),
    Attempt(
        "https://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/",
        "circled letters for localhost",
        BAD_NAME,
    ),
    Attempt("https://storage.goog\tleapis.com/b/o", "tab in the host (browsers strip it)", CONTROL),
    Attempt("https://storage.googleapis.com/b/o\r\nHost: evil.com", "header injection", CONTROL),
    Attempt(" https://storage.googleapis.com/b/o", "leading space", CONTROL),
    Attempt("https://storage.googleapis.com/b/o ", "trailing space", CONTROL),
    Attempt("https://storage.googleapis.com/b/\x00o", "NUL byte", CONTROL),
    Attempt("https://storage.googleapis.com\u3000/b/o", "ideographic space", CONTROL),
    # --- resolution -----------------------------------------------------------------------------------
    Attempt(f"{GCS}/b/o", "name does not resolve", "host does not resolve", RAISES),
    Attempt(f"{GCS}/b/o", "no addresses", "host resolves to no addresses", ()),
    Attempt(f"{GCS}/b/o", "resolver returned rubbish", "resolves to an invalid address", ("not-an-ip",)),
    # --- misc -----------------------------------------------------------------------------------------
    Attempt(f"{GCS}/b/" + "a" * 2000, "very long URL", "url is too long"),
    Attempt("", "empty URL", "url is empty"),
    Attempt(
        "https://intranet/",
        "single-label webhook host",
        "host is not a fully qualified domain name",
        PUBLIC,
        "webhook",
    ),
    Attempt("https://printer.local/", "mDNS name", INTERNAL, PUBLIC, "webhook"),
    Attempt("http://localhost:9024/b/o", "near miss of the trusted origin: port", SCHEME),
    Attempt("https://localhost:9023/b/o", "near miss of the trusted origin: scheme", INTERNAL),
    Attempt("http://127.0.0.2:9023/b/o", "near miss of the trusted origin: host", SCHEME),
    Attempt(
        "http://localhost:9023/b/o",
        "trusted origins are per policy (not for webhooks)",
        SCHEME,
        PUBLIC,
        "webhook",
    ),
]


ALLOWED: list[Allowed] = [
    Allowed(f"{GCS}/your-bucket/flyer.jpg", "path-style object", f"{GCS}/your-bucket/flyer.jpg"),
    Allowed(
        f"{GCS}/your-bucket/dir/map.png?generation=1717&alt=media",
        "object with a query",
        f"{GCS}/your-bucket/dir/map.png?generation=1717&alt=media",
    ),
    Allowed(
        f"{GCS}/b/o.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab12cd%2F34",
        "signed URL",
        f"{GCS}/b/o.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab12cd%2F34",
    ),
    Allowed("https://STORAGE.GoogleAPIs.com/b/A.JPG", "host case is normalised", f"{GCS}/b/A.JPG"),
    Allowed("HTTPS://storage.googleapis.com/b/o", "scheme case is normalised", f"{GCS}/b/o"),
    Allowed("https://storage.googleapis.com:443/b/o", "explicit default port", f"{GCS}/b/o"),
    Allowed(f"{GCS}/b/o#page=2", "fragment is dropped", f"{GCS}/b/o"),
    Allowed(f"{GCS}/b/caf\u00e9.jpg", "non-ASCII path is percent-encoded", f"{GCS}/b/caf%C3%A9.jpg"),
    Allowed(
        f"{GCS}/b/user@example.com.jpg", "@ in the path is not userinfo", f"{GCS}/b/user@example.com.jpg"
    ),
    Allowed("https://storage.googleapis.com", "no path", f"{GCS}/"),
    Allowed("https://storage.googleapis.com?x=1", "query without path", f"{GCS}/?x=1"),
    Allowed(
        f"https://{BUCKET}.storage.googleapis.com/flyer.jpg",
        "our bucket's virtual-host form",
        f"https://{BUCKET}.storage.googleapis.com/flyer.jpg",
    ),
    Allowed(f"{GCS}/b/o", "IPv4 answer only", f"{GCS}/b/o", (PUBLIC_V4,)),
    Allowed(f"{GCS}/b/o", "IPv6 answer only", f"{GCS}/b/o", (PUBLIC_V6,)),
    Allowed(f"{GCS}/b/o", "IPv4-mapped public answer", f"{GCS}/b/o", ("::ffff:142.250.72.16",)),
    Allowed(f"{GCS}/b/o", "NAT64 of a public address", f"{GCS}/b/o", ("64:ff9b::8efa:4810",)),
    Allowed(
        "http://localhost:9023/your-bucket/flyer.jpg",
        "trusted local emulator origin",
        "http://localhost:9023/your-bucket/flyer.jpg",
        ("127.0.0.1",),
    ),
    Allowed(
        "http://127.0.0.1:9023/download/storage/v1/b/b/o/o?alt=media",
        "trusted local emulator origin by address",
        "http://127.0.0.1:9023/download/storage/v1/b/b/o/o?alt=media",
    ),
    Allowed(
        "https://hooks.example.com/dlr",
        "webhook to a public host",
        "https://hooks.example.com/dlr",
        policy="webhook",
    ),
    Allowed(
        "https://api.customer.co.uk:443/v1/hooks?token=abc",
        "webhook with explicit 443 and a query",
        "https://api.customer.co.uk/v1/hooks?token=abc",
        policy="webhook",
    ),
    Allowed(
        "https://b\u00fccher.example/hook",
        "internationalised webhook host",
        "https://xn--bcher-kva.example/hook",
        policy="webhook",
    ),
    Allowed(
        "https://1.2.3.4.nip.io/hook",
        "numbers in a name are fine when it resolves publicly",
        "https://1.2.3.4.nip.io/hook",
        policy="webhook",
    ),
]
