"""Accepting a send: the single message and the group fan-out share one path.

The order is the contract's: request-level checks (nothing written) -> every recipient pre-inserted
as ``pending`` in one batch -> one transaction applies the per-recipient gates, debits the balance
and moves each leg to ``queued``/``scheduled`` or ``failed`` -> one Cloud Task per accepted leg, created
concurrently. A leg whose task could not be created stays ``queued`` and the sweeper re-enqueues it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared import ids
from shared.errors import ApiError, ErrorCode, message_for
from shared.legs import new_events, new_leg, transition
from shared.media import MediaError, Upload
from shared.models import GroupRequest, SendRequest
from shared.phone import InvalidNumber, is_nanp, parse_e164, region_of
from shared.segments import MMS_SEGMENTS, count_segments
from shared.ssrf import UrlPolicy, UrlRejected, check_url, media_url_policy, webhook_url_policy
from shared.status import Status

if TYPE_CHECKING:
    from infra.runtime import Runtime

_log = logging.getLogger("mmsgate")

GROUP_REQUESTS_PER_MINUTE = 30
MAX_SCHEDULE_AHEAD = dt.timedelta(days=180)
DEFAULT_RPS = 10


@dataclass
class Recipient:
    raw: str
    e164: str | None = None
    message_id: str = ""
    leg_key: str = ""
    price_micros: int = 0
    error: ErrorCode | None = None
    error_message: str | None = None  # when the gate has more to say than its code (media)


@dataclass
class Acceptance:
    group_id: str | None
    legs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RateLimit:
    key: str
    limit: int
    window_seconds: int


def send_single(rt: Runtime, tenant: dict, req: SendRequest, request_id: str) -> Acceptance:
    message_id = ids.new_message_id()
    recipient = Recipient(raw=req.to, message_id=message_id, leg_key=f"single:{message_id}")
    limit = RateLimit(f"{tenant['id']}:rps", int(tenant.get("rps") or DEFAULT_RPS), 1)
    return _accept(rt, tenant, req, [recipient], group_id=None, channel="mms" if req.is_mms else "sms",
                   request_id=request_id, limit=limit)


def send_group(rt: Runtime, tenant: dict, req: GroupRequest, request_id: str) -> Acceptance:
    duplicates = sorted({n for n in req.to if req.to.count(n) > 1})
    if duplicates:
        raise ApiError(ErrorCode.DUPLICATE_RECIPIENTS, "Each recipient may appear only once",
                       details=[{"field": "to", "issue": f"duplicate recipient {n}"} for n in duplicates])
    group_id = ids.new_group_id()
    recipients = []
    for raw in req.to:
        key = ids.leg_key(group_id, raw)
        recipients.append(Recipient(raw=raw, message_id=ids.leg_message_id(key), leg_key=key))
    # The group endpoint is the group MMS product: every leg is an MMS, media or not.
    limit = RateLimit(f"{tenant['id']}:group", GROUP_REQUESTS_PER_MINUTE, 60)
    return _accept(rt, tenant, req, recipients, group_id=group_id, channel="mms", request_id=request_id,
                   limit=limit)


def media_policy(rt: Runtime) -> UrlPolicy:
    s = rt.settings
    return media_url_policy(s.media_bucket, s.media_allowed_hosts, s.media_trusted_origins)


def _request_checks(rt: Runtime, tenant: dict, req: SendRequest | GroupRequest,
                    channel: str) -> tuple[str, ErrorCode | None]:
    """Checks that concern the whole request. Shape errors raise (nothing is written); gate failures
    are returned, to fail every recipient's row."""
    now = rt.now()
    if req.scheduled_at is not None:
        if req.scheduled_at <= now:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                           details=[{"field": "scheduled_at", "issue": "must be in the future"}])
        if req.scheduled_at > now + MAX_SCHEDULE_AHEAD:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                           details=[{"field": "scheduled_at", "issue": "must be at most 180 days ahead"}])
    if req.webhook_url:
        try:
            check_url(req.webhook_url, webhook_url_policy(rt.settings.media_trusted_origins), rt.resolver)
        except UrlRejected as exc:
            raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                           details=[{"field": "webhook_url", "issue": exc.reason}]) from None

    sender = req.from_ or tenant.get("default_from") or ""
    capabilities = (tenant.get("senders") or {}).get(sender)
    if not capabilities or not capabilities.get(channel, False):
        return sender, ErrorCode.SENDER_NOT_ALLOWED
    policy = media_policy(rt)
    for url in req.all_media_urls:
        try:
            check_url(url, policy, rt.resolver)
        except UrlRejected:
            return sender, ErrorCode.MEDIA_URL_REJECTED
    return sender, None


def _price(rates: dict | None, channel: str, segments: int) -> int | None:
    if not rates or f"{channel}_micros" not in rates:
        return None
    return int(rates[f"{channel}_micros"]) * (segments if channel == "sms" else 1)


def _accept(rt: Runtime, tenant: dict, req: SendRequest | GroupRequest, recipients: list[Recipient], *,
            group_id: str | None, channel: str, request_id: str, limit: RateLimit) -> Acceptance:
    now = rt.now()
    sender, request_error = _request_checks(rt, tenant, req, channel)
    encoding, segments = count_segments(req.body or "")
    if channel == "mms":
        segments = MMS_SEGMENTS

    # Per-recipient gates that need no transaction.
    for r in recipients:
        try:
            r.e164 = parse_e164(r.raw)
        except InvalidNumber:
            r.error = ErrorCode.INVALID_PHONE_NUMBER
            continue
        if request_error:
            r.error = request_error
        elif channel == "mms" and not is_nanp(r.e164):
            r.error = ErrorCode.MMS_NANP_ONLY
    # The rate limit, the opt-out list and the prices are independent reads: one round trip of waiting.
    eligible = [r.e164 for r in recipients if r.e164 and not r.error]
    (allowed, retry_after), (opted_out, prices) = rt.concurrently(
        lambda: rt.store.hit_window(limit.key, limit.limit, limit.window_seconds, now),
        lambda: rt.store.gate_reads(tenant["id"], eligible, {region_of(n) or "ZZ" for n in eligible}),
    )
    if not allowed:
        raise ApiError(ErrorCode.RATE_LIMITED,
                       f"Rate limit of {limit.limit} requests per {limit.window_seconds} s exceeded",
                       headers={"Retry-After": str(retry_after)})
    for r in recipients:
        if r.error:
            continue
        if r.e164 in opted_out:
            r.error = ErrorCode.RECIPIENT_OPTED_OUT
            continue
        price = _price(prices.get(region_of(r.e164) or "ZZ"), channel, segments)
        if price is None:
            r.error = ErrorCode.PRICE_UNAVAILABLE
        else:
            r.price_micros = price

    # Pre-flight: a request the balance cannot cover writes nothing.
    cost = sum(r.price_micros for r in recipients if not r.error)
    if cost > int(tenant.get("balance_micros", 0)):
        raise ApiError(ErrorCode.INSUFFICIENT_BALANCE,
                       f"The balance cannot cover this request ({cost / 1e6:.4f} USD needed)")

    # Media, once per request whatever the number of recipients (docs/media.md). It comes after every
    # cheaper check, so a request answered 402, or one no recipient can receive, fetches nothing; and
    # before anything is written, so an instance that dies mid-fetch leaves no pending row. A media
    # failure is a request-level gate: every recipient's row ends failed with the media error.
    media: list[dict] = []
    if (req.all_media_urls or req.media) and any(r.error is None for r in recipients):
        uploads = [Upload(m.content_type, m.data, m.filename) for m in req.media or []]
        try:
            media = rt.media.prepare(tenant["id"], req.all_media_urls, uploads, media_policy(rt))
        except MediaError as exc:
            for r in recipients:
                if r.error is not ErrorCode.INVALID_PHONE_NUMBER:
                    r.error, r.error_message = exc.code, exc.message

    legs = [
        new_leg(message_id=r.message_id, leg_key=r.leg_key, tenant_id=tenant["id"], group_id=group_id,
                to=r.e164 or r.raw, from_=sender, body=req.body, subject=req.subject,
                media_urls=req.all_media_urls, channel=channel, encoding=encoding, segments=segments,
                scheduled_at=req.scheduled_at, webhook_url=req.webhook_url or tenant.get("webhook_url"),
                metadata=req.metadata or {}, request_id=request_id, now=now)
        for r in recipients
    ]
    for leg in legs:
        leg["media"] = media  # our stored copies; dispatch signs URLs of these (media_urls stay as asked)
    group = None
    if group_id:
        group = {"id": group_id, "tenant_id": tenant["id"], "total": len(legs), "created_at": now,
                 "request_id": request_id, "message_ids": [leg["id"] for leg in legs]}
    by_id = {r.message_id: r for r in recipients}
    target = Status.SCHEDULED if req.scheduled_at else Status.QUEUED

    def decide(account: dict, stored: list[dict | None]):
        quota = account.get("daily_quota")
        balance = int(account.get("balance_micros", 0))
        day = now.strftime("%Y-%m-%d")
        used = int(account.get("usage_count", 0)) if account.get("usage_day") == day else 0
        updates: dict[str, dict] = {}
        outcome: list[dict] = []
        for leg in stored:
            r = by_id[leg["id"]]
            error = r.error
            if error is None and quota is not None and used + 1 > int(quota):
                error = ErrorCode.QUOTA_EXCEEDED
            if error is None and r.price_micros > balance:
                error = ErrorCode.INSUFFICIENT_BALANCE
            if error is None:
                balance -= r.price_micros
                used += 1
                change = transition(leg, target, cause="accepted", now=now,
                                    fields={"price_micros": r.price_micros})
            else:
                change = transition(leg, Status.FAILED, cause=f"gate {error.value}", now=now,
                                    fields={"error_code": error.value,
                                            "error_message": r.error_message or message_for(error)})
            updates[leg["id"]] = change
            outcome.append({**leg, **change})
        spent = int(account.get("balance_micros", 0)) - balance
        account_updates = {"usage_day": day, "usage_count": used}
        if spent:
            account_updates["balance_micros"] = balance
        return account_updates, updates, outcome

    try:
        accepted = rt.store.record_and_accept(group, legs, decide)
    except rt.store.PreInsertFailed as exc:
        raise ApiError(ErrorCode.INTERNAL, "Could not record the recipients; nothing was sent") from exc
    except rt.store.Contended:
        # The rows exist as pending and nothing was charged; the sweeper never sends a pending leg.
        raise ApiError(ErrorCode.RATE_LIMITED, "Too many concurrent requests for this account; retry shortly",
                       headers={"Retry-After": "1"}) from None
    _after_accept(rt, legs, accepted)
    return Acceptance(group_id=group_id, legs=accepted)


def _after_accept(rt: Runtime, before: list[dict], after: list[dict]) -> None:
    """Create the dispatch tasks of accepted legs and the customer events of failed ones."""
    to_dispatch = [
        (leg["id"], ids.task_name(leg["leg_key"]), leg.get("scheduled_at"))
        for leg in after
        if leg["status"] in (Status.QUEUED.value, Status.SCHEDULED.value)
    ]
    if to_dispatch:
        for message_id, error in rt.queue.enqueue_dispatch_many(to_dispatch).items():
            if error is not None:
                _log.error("dispatch task not created; the sweeper will re-enqueue",
                           extra={"fields": {"message_id": message_id, "error": repr(error)}})
    for leg_before, leg_after in zip(before, after, strict=True):
        for event_id in new_events(leg_before, leg_after):
            rt.queue.enqueue_notify(event_id, leg_after["id"])


def single_response(acceptance: Acceptance) -> tuple[int, dict]:
    """The single send answers like the message it created; a failed gate answers as an error."""
    leg = acceptance.legs[0]
    if leg["status"] == Status.FAILED.value:
        code = ErrorCode(leg["error_code"])
        raise ApiError(code, leg["error_message"], details=[{"field": "message_id", "issue": leg["id"]}])
    return 200, {"id": leg["id"], "status": leg["status"], "channel": leg["channel"],
                  "segments": leg["segments"]}


def group_response(acceptance: Acceptance) -> tuple[int, dict]:
    messages = []
    summary = {"total": len(acceptance.legs), "succeeded": 0, "failed": 0, "scheduled": 0}
    for leg in acceptance.legs:
        item = {"message_id": leg["id"], "to": leg["to"], "status": leg["status"]}
        if leg["status"] == Status.FAILED.value:
            item["error_code"] = leg["error_code"]
            item["error_message"] = leg["error_message"]
            summary["failed"] += 1
        elif leg["status"] == Status.SCHEDULED.value:
            summary["scheduled"] += 1
        else:
            summary["succeeded"] += 1
        messages.append(item)
    status = 207 if summary["failed"] else 200
    return status, {"group_id": acceptance.group_id, "messages": messages, "summary": summary}
