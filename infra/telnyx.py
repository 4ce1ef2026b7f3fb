"""Telnyx Messaging API v2 adapter: ``TelnyxProvider`` implements ``shared.carriers.provider.Provider``.

``send`` is one call with no automatic retries (Cloud Tasks retries, and only after we have classified
the failure). Every attempt of a leg carries the leg's ``Idempotency-Key`` and a byte-identical body
(deterministic JSON; media URLs signed at a fixed time by the caller), so when an earlier attempt reached
Telnyx and only its answer was lost, Telnyx replays that answer instead of sending again.

``find`` asks Telnyx whether it already holds a leg's message: a Detail Record Search for outbound
messaging records from the leg's sender to its recipient created since the first attempt, then
``GET /v2/messages/{id}`` of each candidate, whose ``webhook_url`` names the leg (``?leg=<message_id>``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.carriers.provider import GroupOutboundMessage, Kind, Lookup, LookupState, OutboundMessage, Outcome, classify

# Connect quickly or not at all: a connect failure is safe to retry. Reading may take longer, and a
# read that times out is ambiguous (the provider may have the message).
TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=3.0)
# Lookups change nothing, so a slow answer is simply UNKNOWN; they must not hold dispatch for long.
LOOKUP_CONNECT_TIMEOUT = 2.0
LOOKUP_READ_TIMEOUT = 4.0
LOOKUP_DEADLINE = 15.0  # seconds for the whole of one find (search plus every retrieval)
# The first attempt's clock (ours) and the provider's created_at (theirs) may disagree by this much.
CLOCK_SKEW = dt.timedelta(seconds=5)
MAX_CANDIDATES = 20  # messages from the same sender to the same recipient in the window worth retrieving
SEARCH_PAGE_SIZE = 50  # Telnyx's largest page[size] for detail records


class TelnyxProvider:
    def __init__(self, base_url: str, api_key: str, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = client

    @classmethod
    def from_settings(cls) -> TelnyxProvider:
        from infra.settings import settings  # noqa: PLC0415 - tests build providers without settings

        s = settings()
        return cls(s.telnyx_base_url, s.telnyx_api_key)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            from infra.clients import http  # noqa: PLC0415

            self._client = http()
        return self._client

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json", **extra}

    # -- send ------------------------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> Outcome:
        return self._post("/v2/messages", request_body(message), message.idempotency_key)

    def send_group(self, message: GroupOutboundMessage) -> Outcome:
        """``POST /v2/messages/group_mms`` (telnyx.md §1.10): one message id for every recipient."""
        return self._post("/v2/messages/group_mms", group_request_body(message), message.idempotency_key)

    def _post(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
        try:
            response = self.client.post(
                f"{self.base_url}{path}",
                content=body,
                headers=self._headers(**{"Content-Type": "application/json", "Idempotency-Key": idempotency_key}),
                timeout=TIMEOUT,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Outcome(Kind.TRANSIENT, detail=f"connect failed: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Outcome(Kind.AMBIGUOUS, detail=f"no answer: {type(exc).__name__}")
        return _outcome(response)

    # -- find ------------------------------------------------------------------------------------------
    def find(self, message: OutboundMessage | GroupOutboundMessage, since: dt.datetime) -> Lookup:
        deadline = time.monotonic() + LOOKUP_DEADLINE
        try:
            records, complete = self._search(message, since, deadline)
        except _Unknown as exc:
            return Lookup(LookupState.UNKNOWN, detail=f"detail record search: {exc}")
        found = [_record_id(r) for r in records if _same_route(r, message)]
        ids = list(dict.fromkeys(i for i in found if i is not None))
        if len(ids) < len(set(found)):
            return Lookup(LookupState.UNKNOWN, detail="a detail record without a message id")
        if len(ids) > MAX_CANDIDATES:
            return Lookup(LookupState.UNKNOWN, detail=f"{len(ids)} candidate messages, more than {MAX_CANDIDATES}")
        problems = []
        for provider_id in ids:
            try:
                data = self._retrieve(provider_id, deadline)
            except _Unknown as exc:
                problems.append(f"{provider_id}: {exc}")
                continue
            if names_leg(data.get("webhook_url"), message.message_id):
                return Lookup(LookupState.FOUND, provider_id=provider_id, status=_status_of(data, _cld(message)),
                              detail=f"found among {len(ids)} candidate(s)")
        if problems:
            return Lookup(LookupState.UNKNOWN, detail="could not retrieve " + "; ".join(problems[:3]))
        if not complete:
            return Lookup(LookupState.UNKNOWN, detail="more detail records than one search page")
        return Lookup(LookupState.ABSENT, detail=f"none of {len(ids)} candidate(s) names the leg")

    def _search(self, message: OutboundMessage | GroupOutboundMessage, since: dt.datetime, deadline: float
                ) -> tuple[list[dict], bool]:
        """The outbound messaging records of the leg's route since ``since`` (less the skew), newest first,
        and whether that is all of them."""
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)  # our timestamps are UTC
        start = (since - CLOCK_SKEW).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {
            "filter[record_type]": "messaging",
            "filter[direction]": "outbound",
            "filter[cli]": message.from_,
            "filter[cld]": _cld(message),
            "filter[created_at][gte]": start,
            "sort": "-created_at",
            "page[number]": "1",
            "page[size]": str(SEARCH_PAGE_SIZE),
        }
        payload = self._get("/v2/detail_records", params, deadline)
        records = payload.get("data")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise _Unknown("answer without a data list")
        raw_meta = payload.get("meta")
        meta: dict = raw_meta if isinstance(raw_meta, dict) else {}
        total_pages, total_results = meta.get("total_pages"), meta.get("total_results")
        if isinstance(total_pages, int):
            complete = total_pages <= 1
        elif isinstance(total_results, int):
            complete = total_results <= len(records)
        else:  # no paging information: only a short page proves there is nothing more
            complete = len(records) < SEARCH_PAGE_SIZE
        return records, complete

    def _retrieve(self, provider_id: str, deadline: float) -> dict:
        payload = self._get(f"/v2/messages/{provider_id}", None, deadline)
        data = payload.get("data")
        if not isinstance(data, dict) or data.get("id") != provider_id:
            raise _Unknown("answer without the message record")
        return data

    def _get(self, path: str, params: dict | None, deadline: float) -> dict:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Unknown(f"no time left for GET {path}")
        timeout = httpx.Timeout(min(LOOKUP_READ_TIMEOUT, left), connect=min(LOOKUP_CONNECT_TIMEOUT, left))
        try:
            response = self.client.get(f"{self.base_url}{path}", params=params, headers=self._headers(),
                                       timeout=timeout)
        except httpx.HTTPError as exc:
            raise _Unknown(type(exc).__name__) from None
        if not response.is_success:
            code = _error(_json(response)).get("code")
            raise _Unknown(f"HTTP {response.status_code}" + (f" code {code}" if code else ""))
        payload = _json(response)
        if not isinstance(payload, dict):
            raise _Unknown("unparseable answer")
        return payload


class _Unknown(Exception):
    """A lookup step that could not tell (transport error, non-2xx, unexpected body)."""


def request_body(message: OutboundMessage) -> bytes:
    """The send body, serialised so that the same message always gives the same bytes (Telnyx compares
    a retried request's body byte for byte against the first)."""
    body: dict = {
        "from": message.from_,
        "to": message.to,
        "webhook_url": message.webhook_url,
        "use_profile_webhooks": False,
    }
    if message.text:
        body["text"] = message.text
    if message.subject:
        body["subject"] = message.subject
    if message.media_urls:
        body["media_urls"] = list(message.media_urls)
        body["type"] = "MMS"
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def group_request_body(message: GroupOutboundMessage) -> bytes:
    """The group_mms body, as deterministic as ``request_body`` (recipients in the conversation's order)."""
    body: dict = {
        "from": message.from_,
        "to": list(message.to),
        "webhook_url": message.webhook_url,
        "use_profile_webhooks": False,
    }
    if message.text:
        body["text"] = message.text
    if message.subject:
        body["subject"] = message.subject
    if message.media_urls:
        body["media_urls"] = list(message.media_urls)
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def names_leg(webhook_url: object, message_id: str) -> bool:
    """Whether a provider message's webhook URL is the one we gave this leg (``?leg=<message_id>``) or this
    conversation (``?conversation=<conversation id>``)."""
    if not isinstance(webhook_url, str):
        return False
    query = parse_qs(urlsplit(webhook_url).query)
    return query.get("leg") == [message_id] or query.get("conversation") == [message_id]


def _cld(message: OutboundMessage | GroupOutboundMessage) -> str:
    """The recipient a detail record search filters on: a group message has a record per recipient, so its
    first recipient's record stands for it."""
    return message.to if isinstance(message, OutboundMessage) else message.to[0]


def _same_route(record: dict, message: OutboundMessage | GroupOutboundMessage) -> bool:
    """Checked here too, so a search that ignored a filter cannot make another route's message a candidate."""
    direction = record.get("direction")
    return (record.get("cli") in (None, message.from_) and record.get("cld") in (None, _cld(message))
            and direction in (None, "outbound"))


def _record_id(record: dict) -> str | None:
    value = record.get("uuid") or record.get("id")  # message detail records name the message ``uuid``
    return value if isinstance(value, str) and value else None


def _status_of(data: dict, to: str) -> str | None:
    entries = [e for e in data.get("to") or [] if isinstance(e, dict)]
    for entry in entries:
        if entry.get("phone_number") == to:
            return entry.get("status")
    return entries[0].get("status") if entries else None


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _error(payload: object) -> dict:
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0]
    return {}


def _outcome(response: httpx.Response) -> Outcome:
    payload = _json(response)
    if response.is_success:
        data = payload.get("data") if isinstance(payload, dict) else None
        provider_id = data.get("id") if isinstance(data, dict) else None
        if not provider_id:
            return Outcome(Kind.AMBIGUOUS, http_status=response.status_code, detail="accepted without an id")
        return Outcome(Kind.ACCEPTED, provider_id=provider_id, http_status=response.status_code,
                       raw=payload if isinstance(payload, dict) else {})
    error = _error(payload)
    code = str(error.get("code")) if error.get("code") is not None else None
    return Outcome(
        classify(response.status_code, code),
        http_status=response.status_code,
        code=code,
        detail=error.get("detail") or error.get("title") or response.reason_phrase,
        retry_after=_retry_after(response),
    )


def _retry_after(response: httpx.Response) -> float | None:
    for header in ("retry-after", "x-ratelimit-reset"):
        value = response.headers.get(header)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None


# -- module-level entry points, for callers that hold the module (infra.runtime) -------------------------
def send(message: OutboundMessage) -> Outcome:
    return TelnyxProvider.from_settings().send(message)


def send_group(message: GroupOutboundMessage) -> Outcome:
    return TelnyxProvider.from_settings().send_group(message)


def find(message: OutboundMessage | GroupOutboundMessage, since: dt.datetime) -> Lookup:
    return TelnyxProvider.from_settings().find(message, since)
