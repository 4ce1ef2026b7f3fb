"""Inbound messages: ``POST /_sim/inbound`` makes a handset text one of our numbers.

The simulator builds the ``message.received`` event Telnyx would send (telnyx.md §2.5: ``direction: inbound``,
``from``, ``to[]`` with ``webhook_delivered``, ``text``, ``media[]`` with ``url``, ``content_type``, ``size``,
``hash_sha256``) and delivers it, signed, to the messaging profile's webhook URL (then its failover URL), with
the same retries as delivery reports. Each attachment is served by the simulator at ``/_sim/media/<token>`` for
``media_ttl_ms`` (the request's, else ``TELNYX_SIM_INBOUND_MEDIA_TTL_MS``) and answers 404 after: Telnyx's media
links are ephemeral, so a receiver must copy them at once. ``POST /_sim/inbound/redeliver`` sends an event
again under the same event id, as Telnyx's retries do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .wire import MESSAGING_PROFILE_ID, ORGANIZATION_ID, ApiError, bad_request, iso, now_utc

MAX_ATTACHMENTS = 10
MAX_MEDIA_BYTES = 5 * 1024 * 1024  # per attachment: room for the "too large" cases
SENDER = re.compile(r"^\+?[0-9A-Za-z]{3,31}$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass
class Blob:
    data: bytes
    content_type: str
    expires: float  # time.monotonic()


@dataclass
class InboundMessage:
    id: str
    event: dict  # the event's ``data`` (its ``id`` is the event id, the same on every delivery)
    deliveries: int = 0
    created: float = field(default_factory=time.monotonic)


class InboundStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, Blob] = {}
        self._messages: dict[str, InboundMessage] = {}

    def put_blob(self, blob: Blob) -> str:
        token = uuid.uuid4().hex
        with self._lock:
            self._blobs[token] = blob
        return token

    def blob(self, token: str) -> Blob | None:
        with self._lock:
            blob = self._blobs.get(token)
            if blob is not None and time.monotonic() >= blob.expires:
                del self._blobs[token]  # expired: gone for good, as Telnyx's links are
                return None
            return blob

    def add(self, message: InboundMessage) -> None:
        with self._lock:
            self._messages[message.id] = message

    def find(self, message_id: str | None = None, event_id: str | None = None) -> InboundMessage | None:
        with self._lock:
            for message in self._messages.values():
                if message.id == message_id or message.event["id"] == event_id:
                    return message
        return None

    def messages(self) -> list[InboundMessage]:
        with self._lock:
            return list(self._messages.values())

    def reset(self) -> None:
        with self._lock:
            self._blobs.clear()
            self._messages.clear()


def _field(body: dict, name: str, pattern: Any, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise bad_request(f"'{name}' must be {'an E.164 number' if pattern is E164 else 'a phone number'}.",
                          f"/{name}")
    return value


def build(body: Any, *, base_url: str, store: InboundStore, default_ttl_ms: int,
          profile_webhook_url: str | None, profile_webhook_failover_url: str | None) -> InboundMessage:
    """The inbound message a ``POST /_sim/inbound`` body describes, its media stored; or a 400."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    sender = _field(body, "from", SENDER)
    to = _field(body, "to", E164)
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise bad_request("'text' must be a string.", "/text")
    ttl_ms = body.get("media_ttl_ms", default_ttl_ms)
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms < 0:
        raise bad_request("'media_ttl_ms' must be a non-negative integer.", "/media_ttl_ms")
    items = body.get("media") or []
    if not isinstance(items, list) or len(items) > MAX_ATTACHMENTS:
        raise bad_request(f"'media' must be a list of at most {MAX_ATTACHMENTS} items.", "/media")
    media = []
    for i, item in enumerate(items):
        media.append(_attachment(item, i, base_url=base_url, store=store, expires=time.monotonic() + ttl_ms / 1000))
    message_id = str(uuid.uuid4())
    payload = {
        "record_type": "message", "direction": "inbound", "id": message_id, "type": "MMS" if media else "SMS",
        "messaging_profile_id": MESSAGING_PROFILE_ID, "organization_id": ORGANIZATION_ID,
        "from": {"phone_number": sender, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless",
                 "status": "received"},
        "to": [{"phone_number": to, "status": "webhook_delivered", "carrier": "Telnyx", "line_type": "Wireless"}],
        "cc": [], "text": text or "", "media": media, "encoding": "GSM-7", "parts": 1, "tags": [],
        "received_at": iso(now_utc()), "sent_at": None, "completed_at": None, "valid_until": None, "cost": None,
        "errors": [], "webhook_url": profile_webhook_url, "webhook_failover_url": profile_webhook_failover_url,
    }
    event = {"record_type": "event", "id": str(uuid.uuid4()), "event_type": "message.received",
             "occurred_at": iso(now_utc()), "payload": payload}
    message = InboundMessage(id=message_id, event=event)
    store.add(message)
    return message


def _attachment(item: Any, index: int, *, base_url: str, store: InboundStore, expires: float) -> dict:
    pointer = f"/media/{index}"
    if not isinstance(item, dict):
        raise bad_request("Each media item must be an object.", pointer)
    content_type = item.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise bad_request("'content_type' must be a string.", pointer)
    if isinstance(item.get("url"), str):  # a URL of the test's choosing, passed on as it is
        return {"url": item["url"], "content_type": content_type, "size": item.get("size"), "hash_sha256": None}
    try:
        data = base64.b64decode(item.get("data_base64") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise bad_request("'data_base64' must be base64.", pointer) from None
    if not data or len(data) > MAX_MEDIA_BYTES:
        raise bad_request(f"An attachment must have 1 to {MAX_MEDIA_BYTES} bytes.", pointer)
    token = store.put_blob(Blob(data, content_type or "application/octet-stream", expires))
    return {"url": f"{base_url}/_sim/media/{token}", "content_type": content_type, "size": len(data),
            "hash_sha256": hashlib.sha256(data).hexdigest()}


def view(message: InboundMessage) -> dict:
    payload = message.event["payload"]
    return {"id": message.id, "event_id": message.event["id"], "from": payload["from"]["phone_number"],
            "to": payload["to"][0]["phone_number"], "text": payload["text"], "media": payload["media"],
            "deliveries": message.deliveries}


def not_found_error(message: str) -> ApiError:
    return ApiError.one(404, "10005", "Resource not found", message)
