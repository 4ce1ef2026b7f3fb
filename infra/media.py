"""Media I/O: fetching a media URL safely, our content-addressed copy in Cloud Storage, V4 signed URLs.

``Media.prepare`` runs once per accepted request (``shared.services.sending._accept``): every distinct URL is
fetched once, concurrently; uploads are decoded; ``shared.rules.media`` checks the types and makes the total fit;
each distinct content is stored once as ``media/{tenant}/{sha256}``. ``Media.signed_urls`` runs at dispatch:
the provider is given short-lived V4 signed URLs of exactly the bytes we checked.

The fetcher (``Fetcher``) never resolves a name itself. ``shared.rules.ssrf.check_url`` resolves and vets the
host once per hop; the request then goes to ``scheme://<vetted address>:port/path`` with the original
``Host`` header and, for HTTPS, the host name as TLS SNI and as the name the certificate is verified
against. The connection pool underneath can only open connections to that hop's vetted (address, port)
pairs, and every socket operation (connect, TLS handshake, each read and write) is bounded by what is left
of the fetch's overall deadline, so a slow-drip body ends at the deadline, not at deadline + read timeout.
A redirect is followed only after its target passed the same check (at most ``MAX_REDIRECTS``). The body is
read raw (``Accept-Encoding: identity``; an encoded body is refused) and reading stops as soon as it passes
the cap: ``shared.rules.media.MAX_SOURCE_BYTES`` for a resizable image, the message limit for anything else.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import functools
import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpcore
import httpx

from infra.pinned import (
    Deadline,
    PinnedBackend,
    PinnedTransport,
    canonical_ip,
    default_ssl_context,
    host_header,
    netloc,
    path_of,
)
from shared.rules import media as rules
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.frozen import frozen
from shared.rules.media import MediaError, Upload
from shared.rules.ssrf import Resolver, UrlPolicy, UrlRejected, VettedUrl, check_url, media_url_problem, shown_url

if TYPE_CHECKING:
    from google.cloud.storage import Bucket

    from infra.settings import Settings

# What one GET answers: a redirect's Location, or the final answer's Content-Type and body.
_Answer = str | tuple[str | None, bytes]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
FETCH_WORKERS = 4  # concurrent fetches per request (at most 10 URLs: three rounds at worst)
CONNECT_TIMEOUT = 3.0  # seconds per connection attempt, within the fetch's overall deadline
STORE_WORKERS = 4
# A stored copy older than this is written again when reused, so the bucket's age-based lifecycle rule
# (media_retention_days) never deletes a copy a new leg still needs.
REFRESH_AFTER = dt.timedelta(days=1)
USER_AGENT = "mmsgate-media/1 (+https://github.com/mmsgate)"


def label(url: str) -> str:
    """A URL as error messages show it: without user information or query string (credentials, signed tokens),
    shortened, so a 2000-character URL does not fill the message."""
    return shown_url(url)


# ------------------------------------------------------------------------------------------ fetching


@frozen
class Fetched:
    url: str  # as asked for
    final_url: str  # after redirects, normalised
    content_type: str | None  # the Content-Type header of the final answer
    data: bytes


def _failed(message: str) -> MediaError:
    return MediaError(ErrorCode.MEDIA_FETCH_FAILED, message)


class Fetcher:
    """Fetches one media URL as the module docstring says. ``network_backend`` and ``ssl_context`` exist
    for tests (a backend that maps a test's public address to a local server, a test CA)."""

    def __init__(self, policy: UrlPolicy, resolver: Resolver, *, timeout: float,
                 network_backend: httpcore.NetworkBackend | None = None, ssl_context: ssl.SSLContext | None = None,
                 max_redirects: int = MAX_REDIRECTS) -> None:
        self.policy, self.resolver, self.timeout = policy, resolver, timeout
        self.max_redirects = max_redirects
        self._backend = network_backend or httpcore.SyncBackend()
        self._ssl = ssl_context or default_ssl_context()

    def fetch(self, url: str, cap_for: Callable[[bytes], int] | None = None, limit: str = "") -> Fetched:
        """``cap_for(first bytes)`` says how many bytes the body may have at most (default: the source cap);
        ``limit`` describes the message limit behind it, for the message of a MEDIA_TOO_LARGE.
        Raises ``MediaError`` (MEDIA_URL_REJECTED, MEDIA_FETCH_FAILED or MEDIA_TOO_LARGE)."""
        cap_for = cap_for or (lambda head: rules.MAX_SOURCE_BYTES)
        deadline = Deadline(self.timeout)
        name, current = label(url), url
        for hop in range(self.max_redirects + 1):
            try:
                vetted = check_url(current, self.policy, self.resolver)
            except UrlRejected as exc:
                target = current if hop else None
                raise MediaError(ErrorCode.MEDIA_URL_REJECTED,
                                 media_url_problem(None, url, exc.reason, redirected_to=target),
                                 url=url, reason=exc.reason, redirected_to=target) from None
            answer = self._get(vetted, deadline, cap_for, name, limit)
            if isinstance(answer, str):  # a redirect: its target is checked at the top of the loop
                current = urljoin(vetted.url, answer)
                continue
            content_type, data = answer
            return Fetched(url, vetted.url, content_type, data)
        raise _failed(f"{name}: more than {self.max_redirects} redirects")

    def _get(self, vetted: VettedUrl, deadline: Deadline, cap_for: Callable[[bytes], int], name: str,
             limit: str) -> _Answer:
        backend = PinnedBackend(self._backend, deadline, {(canonical_ip(a), vetted.port) for a in vetted.addresses})
        timeout = httpx.Timeout(self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout))
        headers = {"Host": host_header(vetted), "Accept": "*/*", "Accept-Encoding": "identity",
                   "User-Agent": USER_AGENT}
        extensions = {"sni_hostname": vetted.host} if vetted.scheme == "https" else {}
        path, last_error = path_of(vetted.url), None
        with httpx.Client(transport=PinnedTransport(backend, self._ssl), timeout=timeout, trust_env=False,
                          follow_redirects=False) as client:
            for address in vetted.addresses:
                target = f"{vetted.scheme}://{netloc(address, vetted.port)}{path}"
                try:
                    with client.stream("GET", target, headers=headers, extensions=extensions) as response:
                        return self._read(response, cap_for, name, limit)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    last_error = exc  # try the next vetted address
                except httpx.TimeoutException:
                    raise _failed(f"{name}: no complete answer within {self.timeout:g} s") from None
                except httpx.HTTPError as exc:
                    raise _failed(f"{name}: {type(exc).__name__}") from None
        raise _failed(f"{name}: could not connect ({type(last_error).__name__})")

    @staticmethod
    def _read(response: httpx.Response, cap_for: Callable[[bytes], int], name: str, limit: str = "") -> _Answer:
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise _failed(f"{name}: HTTP {status} without a Location")
            return location
        if not 200 <= status < 300:
            raise _failed(f"{name}: HTTP {status}")
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise _failed(f"{name}: Content-Encoding {encoding} is not accepted")
        try:
            declared = int(response.headers.get("content-length", ""))
        except ValueError:
            declared = None
        cap = rules.MAX_SOURCE_BYTES
        if declared is not None and declared > cap:
            raise rules.too_large(f"{name} is {declared} bytes; at most {cap} bytes are read")
        body, sniffed = bytearray(), False
        for chunk in response.iter_raw():
            body += chunk
            if not sniffed and len(body) >= rules.SNIFF_BYTES:
                cap, sniffed = cap_for(bytes(body[: rules.SNIFF_BYTES])), True
                if declared is not None and declared > cap:
                    raise rules.too_large(_over(name, cap, limit))
            if len(body) > cap:
                raise rules.too_large(_over(name, cap, limit))  # leaving the block closes the connection unread
        if not sniffed and len(body) > cap_for(bytes(body)):
            raise rules.too_large(_over(name, cap_for(bytes(body)), limit))
        return response.headers.get("content-type"), bytes(body)


def _over(name: str, cap: int, limit: str = "") -> str:
    if cap >= rules.MAX_SOURCE_BYTES:
        return f"{name} is larger than {cap} bytes, the most read for an image"
    return f"{name} is larger than {cap} bytes and only images can be downscaled" + (f": {limit}" if limit else "")


# ---------------------------------------------------------------------------------------- the service


def object_name(tenant_id: str, sha256: str) -> str:
    return f"media/{tenant_id}/{sha256}"


class Media:
    """``rt.media``: prepares a request's media at accept time and signs a leg's media at dispatch."""

    def __init__(self, settings: Settings, resolver: Resolver, *,
                 network_backend: httpcore.NetworkBackend | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings, self.resolver = settings, resolver
        self._backend, self._ssl = network_backend, ssl_context
        self._lock = threading.Lock()
        self._credentials: Any = None  # google.auth credentials, made on first signing

    @functools.cached_property
    def bucket(self) -> Bucket:
        from infra.clients import storage  # noqa: PLC0415

        return storage().bucket(self.settings.media_bucket)

    # -- accept time ---------------------------------------------------------------------------------
    def prepare(self, tenant_id: str, urls: Sequence[str], uploads: Sequence[Upload], policy: UrlPolicy,
                limit: rules.MediaLimit | None = None) -> list[dict]:
        """Fetch, check, convert, fit and store a request's media; the leg's ``media`` entries, in order (URLs,
        then uploads). ``limit``: the sender's (``MediaLimit.for_sender``); none is the deployment's
        ``MEDIA_MAX_BYTES``. An attachment re-encoded to be sent (converted, downscaled) keeps its original in
        Cloud Storage too (``original_object``). Raises ``MediaError`` for a media rule, ``ApiError(INTERNAL)`` if
        storing fails."""
        limit = limit or rules.MediaLimit(self.settings.media_max_bytes)
        fetched = self._fetch_all(urls, policy, limit)
        items = [rules.Item(rules.check_type(f.content_type, f.data, label=label(f.url), generic_ok=True),
                            f.data, label(f.url)) for f in fetched]
        for i, upload in enumerate(uploads):
            name = f"media[{i}]"
            content_type = rules.check_type(upload.content_type, upload.data, label=name, generic_ok=False)
            items.append(rules.Item(content_type, upload.data, name, upload.filename))
        items = rules.fit(items, limit.max_bytes, limit.kind)

        refs: list[dict[str, object]] = []
        distinct: dict[str, rules.Item] = {}
        for item in items:
            digest = hashlib.sha256(item.data).hexdigest()
            ref: dict[str, object] = {"object": object_name(tenant_id, digest), "content_type": item.content_type,
                   "size": len(item.data), "sha256": digest}
            if item.filename:
                ref["filename"] = item.filename
            if item.original is not None:
                original = hashlib.sha256(item.original).hexdigest()
                ref.update(original_size=len(item.original), original_sha256=original,
                           original_content_type=item.original_content_type or item.content_type,
                           original_object=object_name(tenant_id, original), downscaled=item.downscaled)
                distinct.setdefault(object_name(tenant_id, original),
                                    rules.Item(item.original_content_type or item.content_type, item.original,
                                               item.label))
            refs.append(ref)
            distinct.setdefault(object_name(tenant_id, digest), item)
        try:
            self._store_all(distinct)
        except Exception as exc:
            from infra import log  # noqa: PLC0415 - only on this rare path

            log.error("media not stored", error=repr(exc))
            raise ApiError(ErrorCode.INTERNAL, "Could not store the media; nothing was sent") from exc
        return refs

    def fetcher(self, policy: UrlPolicy) -> Fetcher:
        return Fetcher(policy, self.resolver, timeout=self.settings.media_fetch_timeout_seconds,
                       network_backend=self._backend, ssl_context=self._ssl)

    def _fetch_all(self, urls: Sequence[str], policy: UrlPolicy, limit: rules.MediaLimit) -> list[Fetched]:
        """Each URL once, ``FETCH_WORKERS`` at a time. The first failure ends the request at once; fetches
        still running end by their own deadline."""
        if not urls:
            return []
        fetcher = self.fetcher(policy)
        cap_for = functools.partial(rules.source_cap, limit=limit.max_bytes)
        said = limit.describe()
        if len(urls) == 1:
            return [fetcher.fetch(urls[0], cap_for, said)]
        pool = cf.ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(urls)), thread_name_prefix="media-fetch")
        try:
            futures = {pool.submit(fetcher.fetch, url, cap_for, said): i for i, url in enumerate(urls)}
            results: list[Fetched | None] = [None] * len(urls)
            for future in cf.as_completed(futures):
                results[futures[future]] = future.result()
            return results  # type: ignore[return-value]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _store_all(self, items: dict[str, rules.Item]) -> None:
        if len(items) <= 1:
            for name, item in items.items():
                self._store(name, item)
            return
        workers = min(STORE_WORKERS, len(items))
        with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="media-store") as pool:
            for future in [pool.submit(self._store, name, item) for name, item in items.items()]:
                future.result()

    def _store(self, name: str, item: rules.Item) -> bool:
        """Content-addressed: the same bytes are stored once (written again only to refresh an old copy)."""
        existing = self.bucket.get_blob(name)
        if existing is not None and existing.size == len(item.data):
            created = existing.time_created
            if created is None or dt.datetime.now(dt.UTC) - created < REFRESH_AFTER:
                return False
        self.bucket.blob(name).upload_from_string(item.data, content_type=item.content_type)
        return True

    # -- redaction -----------------------------------------------------------------------------------
    def remove_unused(self, name: str, in_use: Callable[[], bool]) -> str:
        """Delete stored object ``name`` unless ``in_use()`` says another message still refers to it:
        ``deleted``, ``in use`` or ``absent``. The delete is conditioned on the generation read before the
        check, so a send that stores the same bytes again meanwhile (a new generation) keeps its copy."""
        from google.api_core import exceptions as gexc  # noqa: PLC0415

        blob = self.bucket.get_blob(name)
        if blob is None:
            return "absent"
        if in_use():
            return "in use"
        try:
            blob.delete(if_generation_match=blob.generation)
        except gexc.NotFound:
            return "absent"
        except gexc.PreconditionFailed:
            return "in use"
        return "deleted"

    # -- dispatch time -------------------------------------------------------------------------------
    def signed_urls(self, media: Sequence[dict], signed_at: dt.datetime | None = None) -> list[str]:
        """V4 signed GET URLs of the leg's stored copies, valid for MEDIA_URL_TTL_SECONDS from ``signed_at``.

        The same ``signed_at`` gives byte-identical URLs (RSA PKCS#1 v1.5 signatures are deterministic), so
        every attempt of a leg sends the provider the same body under the same Idempotency-Key; dispatch
        passes the leg's first claim time. ``None`` signs as of now. With IAM signBlob (production) Google
        may rotate the service account's signing key between two attempts: the URLs then differ, Telnyx
        answers 422 for the reused key, and that 422 is AMBIGUOUS (shared.carriers.provider.classify), resolved by
        ``Provider.find``, never by a blind resend.
        """
        from google.cloud.storage._signing import generate_signed_url_v4  # noqa: PLC0415
        from google.cloud.storage.blob import _quote  # noqa: PLC0415

        at = signed_at or dt.datetime.now(dt.UTC)
        at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
        # Blob.generate_signed_url always signs as of now; the library's own V4 signer takes the time as
        # ``_request_timestamp`` (google-cloud-storage 3.x), so the URL is built as generate_signed_url
        # builds it (path-style resource, the client's endpoint and universe) with that time.
        timestamp = at.strftime("%Y%m%dT%H%M%SZ")
        expiration = dt.timedelta(seconds=self.settings.media_url_ttl_seconds)
        signer = self._signer()
        client = self.bucket.client
        return [
            generate_signed_url_v4(
                signer.get("credentials") or client._credentials,
                resource=f"/{self.bucket.name}/{_quote(m['object'], safe=b'/~')}",
                expiration=expiration, api_access_endpoint=client.api_endpoint, method="GET",
                response_type=m["content_type"], service_account_email=signer.get("service_account_email"),
                access_token=signer.get("access_token"), universe_domain=client.universe_domain,
                _request_timestamp=timestamp)
            for m in media
        ]

    def _signer(self) -> dict:
        """Locally, the stack's RSA key (MEDIA_SIGNING_KEY, a service-account JSON); in production, IAM
        signBlob as the function's own service account (no key exists anywhere)."""
        with self._lock:
            key = self.settings.media_signing_key
            if key:
                if self._credentials is None:
                    from google.oauth2 import service_account  # noqa: PLC0415

                    self._credentials = service_account.Credentials.from_service_account_info(json.loads(key))
                return {"credentials": self._credentials}
            import google.auth  # noqa: PLC0415
            from google.auth.transport.requests import Request  # noqa: PLC0415

            if self._credentials is None:
                self._credentials, _ = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/cloud-platform"])
            if not self._credentials.valid:
                self._credentials.refresh(Request())
            return {"service_account_email": self._credentials.service_account_email,
                    "access_token": self._credentials.token}
