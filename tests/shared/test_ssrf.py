"""Tests for shared.rules.ssrf. No test touches the network: every check gets a fake resolver, and
``socket.getaddrinfo`` is replaced for the whole module so an accidental real lookup fails loudly."""

from __future__ import annotations

import ipaddress
import socket
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.rules.ssrf import (
    UrlPolicy,
    UrlRejected,
    VettedUrl,
    check_url,
    is_public_address,
    media_url_policy,
    system_resolver,
    webhook_url_policy,
)
from tests.shared.ssrf_catalogue import (
    ALLOWED,
    POLICIES,
    PUBLIC,
    PUBLIC_V4,
    PUBLIC_V6,
    REJECTED,
    Allowed,
    Attempt,
)

GCS = "https://storage.googleapis.com"
MEDIA = POLICIES["media"]
WEBHOOK = POLICIES["webhook"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to resolve a name over the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


class FakeResolver:
    def __init__(self, answers: tuple[str, ...] | list[str] | None) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if self.answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers)


def public(host: str, port: int) -> list[str]:
    return list(PUBLIC)


def reason_of(url: str, policy: UrlPolicy = MEDIA, resolver=public) -> str:
    with pytest.raises(UrlRejected) as info:
        check_url(url, policy, resolver)
    return info.value.reason


# ------------------------------------------------------------------------------------------- catalogue


def test_catalogue_is_big_enough() -> None:
    assert len(REJECTED) >= 40
    assert len({(a.url, a.resolves, a.policy) for a in REJECTED}) == len(REJECTED)


@pytest.mark.parametrize("attempt", REJECTED, ids=lambda a: a.why)
def test_catalogue_attempt_is_rejected(attempt: Attempt) -> None:
    resolver = FakeResolver(attempt.resolves)
    with pytest.raises(UrlRejected) as info:
        check_url(attempt.url, POLICIES[attempt.policy], resolver)
    assert isinstance(info.value, ValueError)
    assert info.value.reason.startswith(attempt.reason), info.value.reason
    assert str(info.value) == info.value.reason
    if not attempt.reason.startswith(("resolves", "host does not resolve", "host resolves")):
        assert resolver.calls == [], "rejected by syntax, so nothing should have been resolved"


@pytest.mark.parametrize("allowed", ALLOWED, ids=lambda a: a.why)
def test_catalogue_allowed_url_passes(allowed: Allowed) -> None:
    resolver = FakeResolver(allowed.resolves)
    vetted = check_url(allowed.url, POLICIES[allowed.policy], resolver)
    assert isinstance(vetted, VettedUrl)
    assert vetted.url == allowed.expected_url
    assert vetted.addresses
    assert len(resolver.calls) <= 1
    # Vetting is idempotent: the normalised URL passes again and normalises to itself.
    again = check_url(vetted.url, POLICIES[allowed.policy], FakeResolver(allowed.resolves))
    assert again == vetted


# ---------------------------------------------------------------------------------------- the result


def test_vetted_url_fields_and_resolver_arguments() -> None:
    resolver = FakeResolver([PUBLIC_V4, PUBLIC_V6, PUBLIC_V4])
    vetted = check_url("https://Storage.GoogleAPIs.com:443/b/o.jpg?x=1#f", MEDIA, resolver)
    assert vetted == VettedUrl(
        url=f"{GCS}/b/o.jpg?x=1",
        scheme="https",
        host="storage.googleapis.com",
        port=443,
        addresses=(PUBLIC_V4, PUBLIC_V6),
    )
    assert resolver.calls == [("storage.googleapis.com", 443)]


def test_addresses_are_canonical_text() -> None:
    vetted = check_url(f"{GCS}/b/o", MEDIA, FakeResolver(["2607:F8B0:4005:080B:0:0:0:2010"]))
    assert vetted.addresses == (PUBLIC_V6,)


def test_vetted_url_is_frozen() -> None:
    vetted = check_url(f"{GCS}/b/o", MEDIA, public)
    with pytest.raises(AttributeError):
        vetted.host = "evil.com"  # type: ignore[misc]


def test_idna_host_is_sent_to_the_resolver_in_ascii() -> None:
    resolver = FakeResolver(PUBLIC)
    vetted = check_url("https://BÜCHER.example/x", WEBHOOK, resolver)
    assert vetted.host == "xn--bcher-kva.example"
    assert resolver.calls == [("xn--bcher-kva.example", 443)]


# ------------------------------------------------------------------------------------- rule by rule


def test_rejects_non_string() -> None:
    assert reason_of(b"https://storage.googleapis.com/") == "url must be a string"  # type: ignore[arg-type]
    assert reason_of(None) == "url must be a string"  # type: ignore[arg-type]


def test_max_length_is_from_the_policy() -> None:
    short = UrlPolicy(allowed_hosts=("storage.googleapis.com",), max_length=40)
    assert check_url(f"{GCS}/b/o", short, public)
    assert reason_of(f"{GCS}/b/" + "o" * 40, short) == "url is too long"
    assert check_url(f"{GCS}/b/" + "o" * 1500, MEDIA, public)


def test_https_is_required_for_webhooks_and_media() -> None:
    assert reason_of("http://hooks.example.com/", WEBHOOK) == "scheme must be https"
    assert reason_of("http://storage.googleapis.com/b/o") == "scheme must be https"


def test_webhook_policy_accepts_any_public_host_but_not_private_ones() -> None:
    assert check_url("https://anything.example.org/x", WEBHOOK, public).host == "anything.example.org"
    assert reason_of("https://anything.example.org/x", WEBHOOK, FakeResolver(["10.9.8.7"])) == (
        "resolves to a private address (10.9.8.7)"
    )


def test_media_policy_defaults() -> None:
    policy = media_url_policy()
    assert policy.allowed_hosts == ("storage.googleapis.com",)
    assert policy.require_allowlist
    assert reason_of("https://x.storage.googleapis.com/o", policy) == "host is not on the allowlist"
    with_bucket = media_url_policy("my-bucket", extra_hosts=["cdn.example.com"])
    assert check_url("https://my-bucket.storage.googleapis.com/o", with_bucket, public)
    assert check_url("https://cdn.example.com/o", with_bucket, public)
    assert not webhook_url_policy().require_allowlist


def test_allowlist_entries_are_case_insensitive_and_ignore_trailing_dot() -> None:
    policy = UrlPolicy(allowed_hosts=("CDN.Example.COM.",))
    assert check_url("https://cdn.example.com/x", policy, public).host == "cdn.example.com"


def test_wildcard_allowlist_entry_matches_subdomains_only() -> None:
    policy = UrlPolicy(allowed_hosts=("*.example.com",))
    assert check_url("https://a.example.com/x", policy, public)
    assert check_url("https://a.b.example.com/x", policy, public)
    assert reason_of("https://example.com/x", policy) == "host is not on the allowlist"
    assert reason_of("https://badexample.com/x", policy) == "host is not on the allowlist"
    assert reason_of("https://a.example.com.evil.net/x", policy) == "host is not on the allowlist"


def test_host_port_entry_allows_that_port_for_that_host_only() -> None:
    policy = UrlPolicy(allowed_hosts=("media.example.com:8443", "other.example.com"))
    assert (
        check_url("https://media.example.com:8443/x", policy, public).url
        == "https://media.example.com:8443/x"
    )
    assert check_url("https://media.example.com/x", policy, public).port == 443
    assert reason_of("https://other.example.com:8443/x", policy) == "port is not allowed"
    assert reason_of("https://media.example.com:8444/x", policy) == "port is not allowed"


def test_wildcard_host_port_entry() -> None:
    policy = UrlPolicy(allowed_hosts=("*.example.com:8443",))
    assert check_url("https://a.example.com:8443/x", policy, public)
    assert reason_of("https://example.com:8443/x", policy) == "port is not allowed"


def test_allowed_ports_apply_to_every_host() -> None:
    policy = UrlPolicy(allowed_hosts=(), allowed_ports=(443, 8443), require_allowlist=False)
    assert check_url("https://hooks.example.com:8443/x", policy, public).port == 8443


def test_port_is_passed_to_the_resolver() -> None:
    policy = UrlPolicy(allowed_hosts=("media.example.com:8443",))
    resolver = FakeResolver(PUBLIC)
    check_url("https://media.example.com:8443/x", policy, resolver)
    assert resolver.calls == [("media.example.com", 8443)]


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "*",
        "*.",
        "a..b",
        "http://x.com",
        "x.com:0",
        "x.com:99999",
        "x.com:abc",
        "a*.example.com",
        "ex ample.com",
    ],
)
def test_bad_allowlist_entries_are_configuration_errors(entry: str) -> None:
    with pytest.raises(ValueError):
        UrlPolicy(allowed_hosts=(entry,))


def test_allowlist_must_not_be_a_bare_string() -> None:
    with pytest.raises(TypeError):
        UrlPolicy(allowed_hosts="storage.googleapis.com")  # type: ignore[arg-type]


def test_lists_are_accepted_and_stored_as_tuples() -> None:
    policy = UrlPolicy(allowed_hosts=["storage.googleapis.com"], trusted_origins=["http://localhost:1"])  # type: ignore[arg-type]
    assert policy.allowed_hosts == ("storage.googleapis.com",)
    assert hash(policy) == hash(
        UrlPolicy(allowed_hosts=("storage.googleapis.com",), trusted_origins=("http://localhost:1",))
    )


@pytest.mark.parametrize(
    "origin", ["http://localhost:9023/path", "localhost:9023", "ftp://localhost", "http://u@localhost"]
)
def test_bad_trusted_origins_are_configuration_errors(origin: str) -> None:
    with pytest.raises(ValueError):
        UrlPolicy(allowed_hosts=(), trusted_origins=(origin,))


def test_trusted_origin_default_port_and_ipv6() -> None:
    policy = UrlPolicy(allowed_hosts=(), trusted_origins=("http://localhost", "http://[::1]:9000"))
    assert check_url("http://localhost:80/x", policy, FakeResolver(["127.0.0.1"])).addresses == ("127.0.0.1",)
    vetted = check_url("http://[0:0::1]:9000/x", policy, FakeResolver(None))
    assert vetted.addresses == ("::1",)
    assert vetted.url == "http://[::1]:9000/x"


def test_trusted_origin_still_rejects_userinfo_and_unresolvable_names() -> None:
    policy = UrlPolicy(allowed_hosts=(), trusted_origins=("http://localhost:9023",))
    assert reason_of("http://u@localhost:9023/x", policy) == "url must not contain user information"
    assert reason_of("http://localhost:9023/x", policy, FakeResolver(None)) == "host does not resolve"


def test_metadata_names_are_rejected_even_if_allowlisted() -> None:
    policy = UrlPolicy(allowed_hosts=("metadata.google.internal", "metadata", "localhost"))
    for host in ("metadata.google.internal", "metadata", "localhost"):
        assert reason_of(f"https://{host}/", policy) == "host is an internal name"


def test_literal_ip_is_rejected_even_if_allowlisted() -> None:
    policy = UrlPolicy(allowed_hosts=("8.8.8.8",))
    assert reason_of("https://8.8.8.8/", policy) == "host is a literal IP address"


def test_resolver_errors_other_than_oserror_propagate() -> None:
    def broken(host: str, port: int) -> list[str]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        check_url(f"{GCS}/b/o", MEDIA, broken)


def test_reason_shows_mapped_addresses_readably() -> None:
    reason = reason_of(f"{GCS}/b/o", MEDIA, FakeResolver(["::ffff:169.254.169.254"]))
    assert reason == "resolves to a private address (::ffff:169.254.169.254)"


def test_system_resolver_deduplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple] = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        seen.append((host, port, kwargs))
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("142.250.72.16", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2607:f8b0:4005:80b::2010", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("142.250.72.16", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert system_resolver("storage.googleapis.com", 443) == ["142.250.72.16", "2607:f8b0:4005:80b::2010"]
    assert seen[0][:2] == ("storage.googleapis.com", 443)
    assert check_url(f"{GCS}/b/o", MEDIA).addresses == ("142.250.72.16", "2607:f8b0:4005:80b::2010")


def test_system_resolver_failure_is_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "nope")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert reason_of(f"{GCS}/b/o", MEDIA, system_resolver) == "host does not resolve"


# -------------------------------------------------------------------------------- is_public_address


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "142.250.72.16",
        "34.120.0.1",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.169.0.1",
        "223.255.255.255",
        "198.17.255.255",
        "198.20.0.0",
        "2607:f8b0:4005:80b::2010",
        "2a00:1450:4001::1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses(ip: str) -> None:
    assert is_public_address(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.0",
        "10.255.255.255",
        "100.64.0.0",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.0.1",
        "169.254.169.254",
        "172.16.0.0",
        "172.31.255.255",
        "192.0.0.1",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.0.1",
        "198.18.0.0",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.251",
        "239.255.255.250",
        "240.0.0.0",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "::a00:1",
        "fc00::",
        "fdff:ffff::1",
        "fe80::",
        "febf:ffff::1",
        "fec0::1",
        "ff00::",
        "ff02::fb",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "2002:a00::",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "2001:db8::",
        "2001::1",
        "2001:10::1",
        "3fff::1",
        "100::1",
        "5f00::1",
        "4000::1",
        "1000::1",
        "fe80::1%eth0",
        "",
        "not an ip",
        "256.0.0.1",
        "1.2.3",
        "0x7f.0.0.1",
        "127.1",
        " 8.8.8.8",
    ],
)
def test_non_public_addresses(ip: str) -> None:
    assert not is_public_address(ip)


def test_is_public_address_rejects_non_strings() -> None:
    assert not is_public_address(None)  # type: ignore[arg-type]
    assert not is_public_address(0x08080808)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ properties

NON_PUBLIC_NETWORKS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    "2001:db8::/32",
    "2001::/23",
    "64:ff9b:1::/48",
    "100::/64",
    "3fff::/20",
]
NON_PUBLIC_V4 = [n for n in NON_PUBLIC_NETWORKS if ":" not in n]
PUBLIC_NETWORKS = ["8.0.0.0/8", "34.64.0.0/10", "142.250.0.0/15", "2607:f8b0::/32", "2a00:1450::/32"]


@st.composite
def address_in(draw, networks: list[str]) -> str:
    net = ipaddress.ip_network(draw(st.sampled_from(networks)))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return str(net.network_address + offset)


@st.composite
def embedded_forms(draw) -> str:
    """A non-public IPv4 address, possibly wrapped in an IPv6 form that embeds it."""
    v4 = ipaddress.IPv4Address(draw(address_in(NON_PUBLIC_V4)))
    form = draw(st.sampled_from(["plain", "mapped", "compat", "nat64", "6to4"]))
    n = int(v4)
    if form == "plain":
        return str(v4)
    if form == "mapped":
        return f"::ffff:{v4}"
    if form == "compat":
        return str(ipaddress.IPv6Address(n))
    if form == "nat64":
        return str(ipaddress.IPv6Address((0x64FF9B << 96) | n))
    tail = draw(st.integers(0, 2**80 - 1))
    return str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | tail))


SAFE_PATH = st.text(alphabet=string.ascii_letters + string.digits + "-._~/%=&+,;:!$'()*", max_size=80)


@settings(max_examples=150, deadline=None)
@given(
    bad=st.one_of(address_in(NON_PUBLIC_NETWORKS), embedded_forms()),
    good=st.lists(address_in(PUBLIC_NETWORKS), max_size=3),
    position=st.integers(0, 3),
    policy_name=st.sampled_from(["media", "webhook"]),
)
def test_any_non_public_answer_rejects(bad: str, good: list[str], position: int, policy_name: str) -> None:
    answers = list(good)
    answers.insert(min(position, len(answers)), bad)
    reason = reason_of(f"{GCS}/b/o", POLICIES[policy_name], FakeResolver(answers))
    assert reason.startswith("resolves to a private address (")


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 2**32 - 1), form=st.sampled_from(["{n}", "0x{n:x}", "0X{n:X}", "0{n:o}", "{n}."]))
def test_any_integer_ipv4_literal_is_rejected(n: int, form: str) -> None:
    host = form.format(n=n)
    assert reason_of(f"https://{host}/x", WEBHOOK) == "host is a literal IP address"


@st.composite
def inet_aton_forms(draw) -> str:
    """Any dotted form inet_aton accepts: 1-4 parts, each decimal, octal or hex; the last fills the rest."""
    count = draw(st.integers(1, 4))
    parts = [draw(st.integers(0, 255)) for _ in range(count - 1)]
    parts.append(draw(st.integers(0, 2 ** (8 * (5 - count)) - 1)))
    out = []
    for p in parts:
        style = draw(st.sampled_from(["dec", "oct", "hex"]))
        out.append(str(p) if style == "dec" else (f"0{p:o}" if style == "oct" else f"0x{p:x}"))
    return ".".join(out)


@settings(max_examples=150, deadline=None)
@given(host=inet_aton_forms())
def test_any_inet_aton_form_is_rejected(host: str) -> None:
    assert reason_of(f"https://{host}/", WEBHOOK) == "host is a literal IP address"


@settings(max_examples=100, deadline=None)
@given(addr=st.one_of(address_in(PUBLIC_NETWORKS), address_in(NON_PUBLIC_NETWORKS)))
def test_any_bracketed_ipv6_literal_is_rejected(addr: str) -> None:
    v6 = ipaddress.IPv6Address(addr) if ":" in addr else ipaddress.IPv6Address(f"::ffff:{addr}")
    assert reason_of(f"https://[{v6}]/", WEBHOOK) == "host is a literal IP address"


@settings(max_examples=150, deadline=None)
@given(
    path=SAFE_PATH,
    query=st.one_of(st.none(), SAFE_PATH.map(lambda s: s.replace("/", ""))),
    answers=st.lists(address_in(PUBLIC_NETWORKS), min_size=1, max_size=4),
    host=st.sampled_from(["storage.googleapis.com", "mmsgate-media.storage.googleapis.com"]),
)
def test_allowed_host_public_answers_and_safe_path_pass(
    path: str, query: str | None, answers: list[str], host: str
) -> None:
    url = f"https://{host}/{path}" + (f"?{query}" if query is not None else "")
    vetted = check_url(url, MEDIA, FakeResolver(answers))
    assert vetted.url == url
    assert vetted.host == host
    assert vetted.port == 443
    assert set(vetted.addresses) == {str(ipaddress.ip_address(a)) for a in answers}


@settings(max_examples=200, deadline=None)
@given(url=st.text(max_size=60))
def test_arbitrary_text_only_ever_raises_url_rejected(url: str) -> None:
    try:
        vetted = check_url(url, WEBHOOK, public)
    except UrlRejected as exc:
        assert exc.reason
    else:
        assert vetted.scheme == "https"
        assert vetted.port == 443


@settings(max_examples=200, deadline=None)
@given(rest=st.text(max_size=40))
def test_arbitrary_suffix_never_escapes_the_allowlist(rest: str) -> None:
    try:
        vetted = check_url(f"https://storage.googleapis.com{rest}", MEDIA, public)
    except UrlRejected:
        return
    assert vetted.host == "storage.googleapis.com"
    assert vetted.port == 443


@settings(max_examples=200, deadline=None)
@given(v4=st.integers(0, 2**32 - 1))
def test_embedded_forms_agree_with_the_ipv4_address(v4: int) -> None:
    addr = ipaddress.IPv4Address(v4)
    expected = is_public_address(str(addr))
    assert is_public_address(f"::ffff:{addr}") == expected
    assert is_public_address(str(ipaddress.IPv6Address((0x64FF9B << 96) | v4))) == expected
    assert is_public_address(str(ipaddress.IPv6Address((0x2002 << 112) | (v4 << 80) | 1))) == expected
    if v4 > 1:
        assert is_public_address(str(ipaddress.IPv6Address(v4))) == expected


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 2**32 - 1))
def test_public_ipv4_is_global_in_the_stdlib_sense(n: int) -> None:
    addr = ipaddress.IPv4Address(n)
    if is_public_address(str(addr)):
        assert addr.is_global and not addr.is_multicast and not addr.is_reserved
