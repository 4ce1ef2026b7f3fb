"""Telnyx Messaging API v2 client: one send call, no automatic retries (Cloud Tasks retries, and only
after we have classified the failure; a blind retry after a timeout can send twice)."""

from __future__ import annotations

import httpx

from infra.clients import http
from infra.settings import settings
from shared.provider import Kind, OutboundMessage, Outcome, classify

# Connect quickly or not at all: a connect failure is safe to retry. Reading may take longer, and a
# read that times out is ambiguous (the provider may have the message).
TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=3.0)


def send(message: OutboundMessage) -> Outcome:
    s = settings()
    body = {
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
    try:
        response = http().post(
            f"{s.telnyx_base_url}/v2/messages",
            json=body,
            headers={"Authorization": f"Bearer {s.telnyx_api_key}", "Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return Outcome(Kind.TRANSIENT, detail=f"connect failed: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return Outcome(Kind.AMBIGUOUS, detail=f"no answer: {type(exc).__name__}")
    return _outcome(response)


def _outcome(response: httpx.Response) -> Outcome:
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.is_success:
        provider_id = (payload.get("data") or {}).get("id")
        if not provider_id:
            return Outcome(Kind.AMBIGUOUS, http_status=response.status_code, detail="accepted without an id")
        return Outcome(Kind.ACCEPTED, provider_id=provider_id, http_status=response.status_code, raw=payload)
    error = (payload.get("errors") or [{}])[0] if isinstance(payload, dict) else {}
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
