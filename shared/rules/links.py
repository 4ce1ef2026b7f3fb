"""Link shortening and click tracking (issue 25, Infobip's ``tracking`` object), the pure part.

``find_urls`` finds the links of a message body as a reader's phone would: ``http://``, ``https://`` and bare
``www.`` forms, with their query strings and fragments; parentheses that balance stay in the URL (as in
Wikipedia links), and trailing punctuation ``. , ; : ! ? ) ' "`` that ends a sentence does not. ``rewrite``
puts each URL's replacement in its place. ``plan`` gives every distinct URL of one recipient's body its own
code, so a click names exactly one message and recipient (shared/services/links.py stores the plan).

A code is 72 random bits (``secrets``), URL-safe: unguessable, so no code can be derived from another, and
the redirect answers only what was stored under the code it is given.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from shared.rules.errors import ApiError, ErrorCode
from shared.rules.frozen import frozen

CODE_BYTES = 9  # 72 bits: at least 64 (issue 25), and a multiple of 3 bytes encodes without padding
CODE_CHARS = 12
_CODE = re.compile(rf"[A-Za-z0-9_-]{{{CODE_CHARS}}}")
MAX_URL = 2000  # the longest URL stored (as a webhook URL may be: shared/rules/ssrf.py)
MAX_HOSTNAME = 253
PATH = "/l/"  # the redirect's route under the link origin (tools/gateway.py, the API Gateway spec)

# A URL starts at a scheme or at "www." not glued to a Latin word before it ("awww.x", "xhttp://" are no links);
# CJK text runs into a link with no space, so a letter of those scripts may come right before one.
_START = re.compile(r"(?<![A-Za-z0-9_@.+/-])(?:https?://(?=[^\s/?#])|www\.(?=[^\s.]))", re.IGNORECASE)
# What a URL cannot hold unencoded: whitespace, <>" and `, the curly quotes, and the CJK and full-width
# punctuation a sentence in those scripts puts right after a link.
_STOP = r"\s<>\"`\u2018-\u201f\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
_REST = re.compile(f"[^{_STOP}]*")
_TRAILING = ".,;:!?'\")"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@frozen
class Found:
    """One URL in a body: its span (``body[start:end] == url``)."""

    start: int
    end: int
    url: str


def _trim(url: str) -> str:
    """``url`` without the punctuation that ends the sentence around it; a ``)`` stays while it closes a ``(``
    of the URL itself (``https://en.wikipedia.org/wiki/Mercury_(planet)``)."""
    while url and url[-1] in _TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def find_urls(body: str) -> list[Found]:
    """Every URL of ``body``, in order (the same URL twice is found twice)."""
    found: list[Found] = []
    at = 0
    while (start := _START.search(body, at)) is not None:
        rest = _REST.match(body, start.end())
        end = rest.end() if rest else start.end()
        url = _trim(body[start.start():end])
        prefix = len(start.group(0))
        if len(url) > prefix and len(url) <= MAX_URL:
            found.append(Found(start.start(), start.start() + len(url), url))
            at = start.start() + len(url)
        else:
            at = start.end()
    return found


def rewrite(body: str, mapping: Mapping[str, str]) -> str:
    """``body`` with each URL that ``mapping`` names replaced (others, and all other text, unchanged)."""
    parts: list[str] = []
    at = 0
    for found in find_urls(body):
        replacement = mapping.get(found.url)
        if replacement is None:
            continue
        parts += [body[at:found.start], replacement]
        at = found.end
    return "".join(parts) + body[at:]


def target(url: str) -> str:
    """Where a found URL sends a click: a bare ``www.`` form gets ``https://`` (a redirect needs a scheme)."""
    return url if re.match(r"https?://", url, re.IGNORECASE) else "https://" + url


def new_code(token: Callable[[int], str] = secrets.token_urlsafe) -> str:
    return token(CODE_BYTES)


def is_code(value: str) -> bool:
    """Could ``value`` be a code at all (checked before any read: a crafted path costs nothing)."""
    return _CODE.fullmatch(value) is not None


def short_link(origin: str, code: str, *, remove_protocol: bool = False) -> str:
    """The short link of ``code`` under ``origin`` (``https://host``: the deployment's or a custom domain)."""
    link = f"{origin.rstrip('/')}{PATH}{code}"
    return re.sub(r"^https?://", "", link) if remove_protocol else link


def custom_origin(domain: str) -> str:
    return f"https://{domain}"


def is_hostname(value: str) -> bool:
    """A DNS name of two labels or more, lower-case letters, digits and ``-``, no port, path or IP address."""
    if not value or len(value) > MAX_HOSTNAME or value != value.lower():
        return False
    labels = value.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return False
    return all(_LABEL.fullmatch(label) for label in labels)


@frozen
class Tracking:
    """A send's ``tracking`` object. ``shorten_urls`` and ``track_clicks`` default to on, as Infobip's do."""

    shorten_urls: bool = True
    track_clicks: bool = True
    tracking_url: str | None = None
    remove_protocol: bool = False
    custom_domain: str | None = None

    @property
    def active(self) -> bool:
        return self.shorten_urls


_FIELDS = {"shorten_urls": bool, "track_clicks": bool, "tracking_url": str, "remove_protocol": bool,
           "custom_domain": str}


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                    details=[{"field": f"tracking.{field}" if field else "tracking", "issue": issue}])


def parse_tracking(value: Any) -> Tracking | None:
    """A request's ``tracking`` (None: absent). Raises a 400 naming the field for anything else than the
    object this module describes. ``tracking_url`` is checked for shape here; the service checks it against
    the SSRF rules (it resolves the host) before anything is stored."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("", "must be an object")
    for key, item in value.items():
        kind = _FIELDS.get(key)
        if kind is None:
            raise _invalid(key, "unknown field")
        if item is not None and not isinstance(item, kind):
            raise _invalid(key, "must be a boolean" if kind is bool else "must be a string")
    flags = {k: value[k] for k in ("shorten_urls", "track_clicks", "remove_protocol") if value.get(k) is not None}
    tracking = Tracking(**flags, tracking_url=value.get("tracking_url") or None,
                        custom_domain=value.get("custom_domain") or None)
    if tracking.tracking_url is not None:
        if len(tracking.tracking_url) > MAX_URL:
            raise _invalid("tracking_url", f"must be at most {MAX_URL} characters")
        if not tracking.track_clicks:
            raise _invalid("tracking_url", "needs track_clicks")
    if tracking.custom_domain is not None and not is_hostname(tracking.custom_domain):
        raise _invalid("custom_domain", "must be a lower-case host name such as go.example.com (no scheme, "
                       "port or path)")
    if not tracking.shorten_urls:
        # Without a short link there is nothing to click through, nothing to count.
        for field in ("track_clicks", "remove_protocol", "custom_domain"):
            if value.get(field):
                raise _invalid(field, "needs shorten_urls")
    return tracking


@frozen
class Link:
    """One short link: the URL a click on ``code`` is sent to, and whose click it is. ``expires_at`` is the
    message's retention: the redirect refuses a link past it, and Firestore TTL deletes the document."""

    code: str
    url: str
    tenant_id: str
    message_id: str
    recipient: str
    track_clicks: bool
    tracking_url: str | None
    created_at: dt.datetime
    expires_at: dt.datetime

    def to_doc(self) -> dict[str, Any]:
        return {"code": self.code, "url": self.url, "tenant_id": self.tenant_id, "message_id": self.message_id,
                "recipient": self.recipient, "track_clicks": self.track_clicks, "tracking_url": self.tracking_url,
                "created_at": self.created_at, "expires_at": self.expires_at}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Link:
        return cls(code=doc["code"], url=doc["url"], tenant_id=doc["tenant_id"], message_id=doc["message_id"],
                   recipient=doc["recipient"], track_clicks=bool(doc.get("track_clicks")),
                   tracking_url=doc.get("tracking_url"), created_at=doc["created_at"], expires_at=doc["expires_at"])

    def live(self, now: dt.datetime) -> bool:
        return now < self.expires_at


def plan(body: str, tracking: Tracking, *, origin: str, tenant_id: str, message_id: str, recipient: str,
         now: dt.datetime, expires_at: dt.datetime, code: Callable[[], str] = new_code) -> tuple[str, list[Link]]:
    """One recipient's body with its URLs shortened, and the links to store (one per distinct URL: the same
    URL twice in a body is one link). ``origin``: the deployment's link origin, unless ``custom_domain``."""
    if not tracking.active:
        return body, []
    base = custom_origin(tracking.custom_domain) if tracking.custom_domain else origin
    mapping: dict[str, str] = {}
    links: list[Link] = []
    for found in find_urls(body):
        if found.url in mapping:
            continue
        link = Link(code=code(), url=target(found.url), tenant_id=tenant_id, message_id=message_id,
                    recipient=recipient, track_clicks=tracking.track_clicks, tracking_url=tracking.tracking_url,
                    created_at=now, expires_at=expires_at)
        mapping[found.url] = short_link(base, link.code, remove_protocol=tracking.remove_protocol)
        links.append(link)
    return rewrite(body, mapping), links


def click_data(link: Link, *, at: dt.datetime, user_agent: str | None) -> dict[str, Any]:
    """A ``link.clicked`` event's ``data`` (docs/webhooks.md)."""
    clicked = at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"message_id": link.message_id, "recipient": link.recipient, "url": link.url, "clicked_at": clicked,
            "user_agent": (user_agent or "")[:512] or None}


# -- the accept's links: one shape priced, each recipient its own codes ------------------------------------------

MARK_NONCE_CHARS = CODE_CHARS - 4  # a request's random prefix; each distinct URL's number makes up the code


@frozen
class Marked:
    """A body with each distinct URL replaced by a placeholder short link: as long as every real one and of the
    same characters (a code is URL-safe ASCII, all GSM-7), so the marked body prices and encodes exactly as any
    recipient's will, before any link is stored. ``marks``: (placeholder code, URL it stands for). A placeholder
    is the request's random ``nonce`` and the URL's number: no text of the sender's can collide with one."""

    body: str
    marks: tuple[tuple[str, str], ...]
    base: str
    remove_protocol: bool
    track_clicks: bool
    tracking_url: str | None

    def placeholder(self, code: str) -> str:
        return short_link(self.base, code, remove_protocol=self.remove_protocol)

    def to_doc(self) -> dict[str, Any]:
        return {"body": self.body, "marks": [{"code": code, "url": url} for code, url in self.marks],
                "base": self.base, "remove_protocol": self.remove_protocol, "track_clicks": self.track_clicks,
                "tracking_url": self.tracking_url}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Marked:
        return cls(body=doc["body"], marks=tuple((m["code"], m["url"]) for m in doc.get("marks") or ()),
                   base=doc["base"], remove_protocol=bool(doc.get("remove_protocol")),
                   track_clicks=bool(doc.get("track_clicks")), tracking_url=doc.get("tracking_url"))


def mark(body: str, tracking: Tracking, *, origin: str, nonce: str) -> Marked:
    """``body`` with each distinct URL replaced by its placeholder short link (``nonce``: MARK_NONCE_CHARS
    code characters, random per request)."""
    if len(nonce) != MARK_NONCE_CHARS or not _CODE.fullmatch(nonce + "0000"):
        raise ValueError("a nonce is MARK_NONCE_CHARS code characters")
    base = custom_origin(tracking.custom_domain) if tracking.custom_domain else origin
    marks: dict[str, str] = {}
    for found in find_urls(body):
        marks.setdefault(found.url, f"{nonce}{len(marks):04d}")
    shape = Marked(body="", marks=tuple((code, target(url)) for url, code in marks.items()), base=base,
                   remove_protocol=tracking.remove_protocol, track_clicks=tracking.track_clicks,
                   tracking_url=tracking.tracking_url)
    mapping = {url: shape.placeholder(code) for url, code in marks.items()}
    return Marked(body=rewrite(body, mapping), marks=shape.marks, base=base, remove_protocol=shape.remove_protocol,
                  track_clicks=shape.track_clicks, tracking_url=shape.tracking_url)


def issue(text: str, marked: Marked, *, tenant_id: str, message_id: str, recipient: str, now: dt.datetime,
          expires_at: dt.datetime, code: Callable[[], str] = new_code) -> tuple[str, list[Link]]:
    """One recipient's text: ``text`` (the marked body as it is sent: smart-encoded, a template rendered into
    it) with each placeholder replaced by a fresh code of its own, and the links to store for them."""
    links: list[Link] = []
    for placeholder, url in marked.marks:
        shown = marked.placeholder(placeholder)
        if shown not in text:
            continue
        link = Link(code=code(), url=url, tenant_id=tenant_id, message_id=message_id, recipient=recipient,
                    track_clicks=marked.track_clicks, tracking_url=marked.tracking_url, created_at=now,
                    expires_at=expires_at)
        text = text.replace(shown, marked.placeholder(link.code))
        links.append(link)
    return text, links
