"""Twilio Programmable Messaging adapter: ``TwilioProvider`` implements ``shared.carriers.provider.Provider``.

A small httpx client, not the ``twilio`` package (cold start). Sections (§) are those of ``twilio.md``; the wire
format, status and error tables live in ``shared.carriers.twilio``.

``send`` is one form-encoded ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (§1) with no retries of
its own, under HTTP Basic auth (an ``SK`` API key and its secret, or the Account SID and Auth Token: §1 Auth).
The ``StatusCallback`` is the leg's ``webhook_url``, which already names the leg (``?leg=<message_id>``). Twilio
documents no idempotency on create (§6): every attempt carries the leg's key as ``I-Twilio-Idempotency-Token``
(it costs nothing), but nothing depends on it; an attempt whose outcome is unknown is settled by ``find``.

Timeouts as ``infra.telnyx``: a connect failure is safe to retry (TRANSIENT); a read that times out, or an
answer lost on the way, may hide a created message (AMBIGUOUS); so may a 504, a gateway's own "the upstream
did not answer in time". Any other 5xx, 408 and 429 are TRANSIENT (``shared.carriers.twilio.classify``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import time
from urllib.parse import urlencode, urlsplit

import httpx

from shared.carriers.provider import GroupOutboundMessage, Kind, Lookup, LookupState, OutboundMessage, Outcome
from shared.carriers.twilio import MESSAGE_SID, TWILIO_CAPABILITIES, classify, neutral_status

DEFAULT_BASE_URL = "https://api.twilio.com"  # §1 Auth (OAS servers)
API_VERSION = "2010-04-01"
TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=3.0)
LOOKUP_CONNECT_TIMEOUT = 2.0
LOOKUP_READ_TIMEOUT = 4.0
LOOKUP_DEADLINE = 15.0  # seconds for the whole of one find (every page)
# Our clock (the first attempt) and Twilio's date_created may disagree by this much.
CLOCK_SKEW = dt.timedelta(seconds=5)
PAGE_SIZE = 200  # §6: default 50, max 1000
MAX_PAGES = 5  # a route with more messages than this many pages is UNKNOWN, not ABSENT
# A gateway timeout: the request may have reached Twilio, like our own read timeout.
AMBIGUOUS_HTTP = frozenset({504})
GROUP_UNSUPPORTED = "GROUP_UNSUPPORTED"
_COUNT = re.compile(r"[0-9]{1,6}")


class TwilioProvider:
    def __init__(self, base_url: str, account_sid: str, auth_token: str, client: httpx.Client | None = None, *,
                 api_key_sid: str = "", api_key_secret: str = "") -> None:
        """``account_sid`` always names the account in the path (§1 Auth); the credentials are the API key and
        its secret when both are given, else the Account SID and Auth Token."""
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.account_sid = account_sid
        self._auth = (api_key_sid, api_key_secret) if api_key_sid and api_key_secret else (account_sid, auth_token)
        self._client = client

    @classmethod
    def from_settings(cls) -> TwilioProvider:
        from infra.settings import settings  # noqa: PLC0415 - tests build providers without settings

        s = settings()
        return cls(s.twilio_base_url or DEFAULT_BASE_URL, s.twilio_account_sid, s.twilio_auth_token)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            from infra.clients import http  # noqa: PLC0415

            self._client = http()
        return self._client

    @property
    def messages_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    # -- send ------------------------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> Outcome:
        try:
            response = self.client.post(
                self.base_url + self.messages_path,
                content=request_body(message),
                auth=self._auth,
                headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded",
                         "I-Twilio-Idempotency-Token": message.idempotency_key},
                timeout=TIMEOUT,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Outcome(Kind.TRANSIENT, detail=f"connect failed: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Outcome(Kind.AMBIGUOUS, detail=f"no answer: {type(exc).__name__}")
        return _outcome(response)

    def send_group(self, message: GroupOutboundMessage) -> Outcome:
        """Twilio's Messages API has no group send (``TWILIO_CAPABILITIES.group_mms``): refused without a call."""
        assert not TWILIO_CAPABILITIES.group_mms
        return Outcome(Kind.PERMANENT, code=GROUP_UNSUPPORTED, detail="Twilio does not send group MMS")

    # -- find ------------------------------------------------------------------------------------------
    def find(self, message: OutboundMessage | GroupOutboundMessage, since: dt.datetime) -> Lookup:
        """Whether Twilio holds the leg's message, by listing the route's messages (§6).

        Twilio's message resource does not return the ``StatusCallback`` (§1 Success lists its fields), so
        our ``?leg=`` marker cannot be read back. A candidate is an outbound message on the leg's route
        (``To``, ``From``) created no earlier than ``since`` less ``CLOCK_SKEW`` (a missing or unreadable
        ``date_created`` cannot exclude it) whose ``body`` is the leg's text and whose ``num_media`` is its
        media count. Then:

        - exactly one candidate in a complete listing: FOUND (its sid, its status in the neutral vocabulary);
        - none in a complete listing: ABSENT;
        - two or more: UNKNOWN. They are identical sends; nothing tells which (if any) is this leg, and
          adopting the wrong one would make this leg report another's delivery;
        - a listing cut short (more than ``MAX_PAGES`` pages, an error, the deadline, an answer of the wrong
          shape, a matching record without a sid): UNKNOWN, since the missing part may hold a candidate.

        The list is asked by ``To`` and ``From`` only: a ``DateSent`` filter (§6) is not used, because
        ``date_sent`` stays empty until Twilio hands a message to the carrier [inference], and an ambiguous
        create is most likely still queued. The window is applied here, to ``date_created``.

        Residual risk: an identical message (same route, text and media count) sent by another leg in the
        window, while this leg's own attempt never reached Twilio, is FOUND for this leg. Only a marker read
        back from Twilio could rule that out, and the list returns none.

        A group message is never sent (``send_group``), so Twilio holds none: ABSENT without a call.
        """
        if isinstance(message, GroupOutboundMessage):
            return Lookup(LookupState.ABSENT, detail="group messages are never sent to Twilio")
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)  # our timestamps are UTC
        start = since - CLOCK_SKEW
        deadline = time.monotonic() + LOOKUP_DEADLINE
        try:
            messages, complete = self._list(message, deadline)
        except _Unknown as exc:
            return Lookup(LookupState.UNKNOWN, detail=f"message list: {exc}")
        candidates = [m for m in messages if _is_candidate(m, message, start)]
        sids = [m.get("sid") for m in candidates]
        if not all(isinstance(s, str) and MESSAGE_SID.fullmatch(s) for s in sids):
            return Lookup(LookupState.UNKNOWN, detail="a matching message without a usable sid")
        if not complete:
            return Lookup(LookupState.UNKNOWN, detail=f"more messages on the route than {MAX_PAGES} pages")
        if len(set(sids)) > 1:
            return Lookup(LookupState.UNKNOWN, detail=f"{len(set(sids))} identical messages match; "
                                                      "cannot tell which is the leg")
        if not candidates:
            return Lookup(LookupState.ABSENT, detail=f"none of {len(messages)} message(s) on the route matches")
        found = candidates[0]
        status = found.get("status")
        return Lookup(LookupState.FOUND, provider_id=str(found["sid"]),
                      status=neutral_status(status) if isinstance(status, str) else None,
                      detail=f"the one match among {len(messages)} message(s) on the route")

    def _list(self, message: OutboundMessage, deadline: float) -> tuple[list[dict], bool]:
        """The route's messages, page after page up to ``MAX_PAGES``, and whether that is all of them."""
        url: str | None = self.base_url + self.messages_path
        params: dict[str, str] | None = {"To": message.to, "From": message.from_, "PageSize": str(PAGE_SIZE)}
        messages: list[dict] = []
        for _ in range(MAX_PAGES):
            assert url is not None
            payload = self._get(url, params, deadline)
            page = payload.get("messages")
            if not isinstance(page, list) or not all(isinstance(m, dict) for m in page):
                raise _Unknown("answer without a messages list")
            messages.extend(page)
            url, params = self._next(payload.get("next_page_uri")), None
            if url is None:
                return messages, True
        return messages, False

    def _next(self, next_page_uri: object) -> str | None:
        """The next page's URL: Twilio's relative ``next_page_uri`` (null at the end, §6) on our base URL, and
        only ever another page of the same list."""
        if next_page_uri is None:
            return None
        if not isinstance(next_page_uri, str) or urlsplit(next_page_uri).path != self.messages_path \
                or urlsplit(next_page_uri).netloc:
            raise _Unknown("next_page_uri is not a page of this list")
        return self.base_url + next_page_uri

    def _get(self, url: str, params: dict[str, str] | None, deadline: float) -> dict:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Unknown("no time left for the next page")
        timeout = httpx.Timeout(min(LOOKUP_READ_TIMEOUT, left), connect=min(LOOKUP_CONNECT_TIMEOUT, left))
        try:
            response = self.client.get(url, params=params, auth=self._auth,
                                       headers={"Accept": "application/json"}, timeout=timeout)
        except httpx.HTTPError as exc:
            raise _Unknown(type(exc).__name__) from None
        payload = _json(response)
        if not response.is_success:
            code = payload.get("code") if isinstance(payload, dict) else None
            raise _Unknown(f"HTTP {response.status_code}" + (f" code {code}" if code else ""))
        if not isinstance(payload, dict):
            raise _Unknown("unparseable answer")
        return payload


class _Unknown(Exception):
    """A lookup step that could not tell (transport error, non-2xx, unexpected body)."""


def request_body(message: OutboundMessage) -> bytes:
    """The create form (§1), the same bytes for every attempt of a leg. ``subject`` has no Twilio parameter
    and is not sent."""
    fields = [("To", message.to), ("From", message.from_)]
    if message.text:
        fields.append(("Body", message.text))
    fields += [("MediaUrl", url) for url in message.media_urls]
    fields.append(("StatusCallback", message.webhook_url))
    return urlencode(fields).encode("ascii")


def _is_candidate(record: dict, message: OutboundMessage, start: dt.datetime) -> bool:
    direction = record.get("direction")
    if direction is not None and not (isinstance(direction, str) and direction.startswith("outbound")):
        return False
    if record.get("to") != message.to or record.get("from") != message.from_:
        return False  # checked here too: a list that ignored a filter cannot make another route's a candidate
    if (record.get("body") or "") != (message.text or ""):
        return False
    num_media = str(record.get("num_media"))  # a string (§1 Success); absent or unreadable excludes nothing
    if _COUNT.fullmatch(num_media) and int(num_media) != len(message.media_urls):
        return False
    created = _rfc2822(record.get("date_created"))
    return created is None or created >= start


def _rfc2822(value: object) -> dt.datetime | None:
    """Twilio's dates (§1 Success: ``Thu, 24 Aug 2023 05:01:45 +0000``); None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _outcome(response: httpx.Response) -> Outcome:
    payload = _json(response)
    body = payload if isinstance(payload, dict) else {}
    if response.is_success:
        sid = body.get("sid")
        if not isinstance(sid, str) or not MESSAGE_SID.fullmatch(sid):
            return Outcome(Kind.AMBIGUOUS, http_status=response.status_code, detail="accepted without a sid")
        return Outcome(Kind.ACCEPTED, provider_id=sid, http_status=response.status_code, raw=body)
    raw_code = body.get("code")  # {"code": <int>, "message": ..., "more_info": ..., "status": <http>} (§1 Errors)
    code = str(raw_code) if isinstance(raw_code, int | str) and not isinstance(raw_code, bool) else None
    kind = Kind.AMBIGUOUS if response.status_code in AMBIGUOUS_HTTP else classify(response.status_code, code)
    message = body.get("message")
    return Outcome(kind, http_status=response.status_code, code=code,
                   detail=message if isinstance(message, str) and message else response.reason_phrase,
                   retry_after=_retry_after(response), raw=body)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


# -- module-level entry points, for callers that hold the module (as infra.telnyx) ------------------------------
def send(message: OutboundMessage) -> Outcome:
    return TwilioProvider.from_settings().send(message)


def send_group(message: GroupOutboundMessage) -> Outcome:
    return TwilioProvider.from_settings().send_group(message)


def find(message: OutboundMessage | GroupOutboundMessage, since: dt.datetime) -> Lookup:
    return TwilioProvider.from_settings().find(message, since)
