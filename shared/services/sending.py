"""Accepting a send: the single message and the group fan-out share one path, in named steps.

The order is the contract's: the key, the tenant, the opt-outs and the prices (one round of reads, with the
rate-limit slot) -> request-level checks (nothing written but the slot) -> per-recipient number gates -> the
balance pre-flight -> media (fetched once) -> a group's recipients pre-inserted as ``pending`` (a single
send has one row: it skips this) -> one atomic commit applies the remaining gates, debits the balance, writes
each leg ``queued``/``scheduled`` or ``failed`` and keeps the answer under the request's Idempotency-Key ->
the tasks (one, or a group's fan-out task that creates one per accepted leg).

Once that commit has happened the request is accepted, whatever happens next: a task or a customer event
that cannot be created is left to the sweeper, never answered as an error, so a client that retries
with its Idempotency-Key gets the same answer and never a second send or charge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.api.answers import error_body, meta
from shared.api.plain_requests import MAX_BODY
from shared.ports import AcceptDecision, Caller, Contended, DispatchTask, FirstRound, IdempotentAnswer, PreInsertFailed
from shared.rules import gates, ids, retention, validity
from shared.rules.errors import ApiError, ErrorCode, message_for, unauthorized
from shared.rules.frozen import frozen
from shared.rules.legs import new_leg, transition
from shared.rules.media import MediaError, MediaLimit, Upload, sender_kind
from shared.rules.records import Group, Leg, LegChanges, StoredMedia, Tenant
from shared.rules.segments import MMS_SEGMENTS, Encoded, NotGsm7, TooLong, count_segments, encode
from shared.rules.ssrf import (
    UrlPolicy,
    UrlRejected,
    check_url,
    media_url_policy,
    media_url_problem,
    webhook_url_policy,
)
from shared.rules.status import Status
from shared.services import carriers, fanout, leg_changes, observe
from shared.services.carriers import Route

if TYPE_CHECKING:  # the models import pydantic: the handlers pass plain requests where they can
    from shared.api.batch_request import BatchRequest
    from shared.api.models import GroupRequest, SendRequest, SmsFailover
    from shared.ports import Runtime
    from shared.rules.links import Marked

GROUP_REQUESTS_PER_MINUTE = 30
MAX_SCHEDULE_AHEAD = dt.timedelta(days=180)
DEFAULT_RPS = 10


@dataclass
class Recipient:
    raw: str
    message_id: str
    leg_key: str
    number: gates.Number | None = None  # parsed once, in the first round
    e164: str | None = None
    price_micros: int = 0
    error: ErrorCode | None = None
    error_message: str | None = None  # when the gate has more to say than its code (number, media)
    error_field: str | None = None  # the request field at fault: "to", "to[3]", "media_urls[1]", "from"


@frozen
class RequestProblem:
    """A gate failure of the whole request (its sender, a media URL): it fails every valid recipient."""

    code: ErrorCode
    field: str
    message: str


@frozen
class RateLimit:
    key: str
    limit: int
    window_seconds: int


@frozen
class Answer:
    """The HTTP answer of an accept. ``kept``: it is already stored under the request's Idempotency-Key."""

    status: int
    body: dict[str, Any]
    kept: bool = False


@frozen
class Texts:
    """A request's texts as they will be sent and stored: the body (smart-encoded when it is an SMS's and the
    request asks), the SMS failover text likewise, the leg's encoding and segments (an MMS is one), and what
    the accept answer reports of its SMS text (``report``)."""

    body: str | None
    failover_text: str | None
    encoding: str
    segments: int
    report: dict[str, Any]


def _sms_report(encoded: Encoded) -> dict[str, Any]:
    saved = {"segments_saved": encoded.segments_saved} if encoded.segments_saved else {}
    return {"encoding": encoded.encoding, "segments": encoded.segments, **saved}


def encode_texts(req: SendRequest | GroupRequest | BatchRequest, channel: str, body: str | None = None) -> Texts:
    """The request's SMS texts under ``smart_encoding`` and ``encoding`` (shared/rules/segments.py encode): an
    SMS's body, an MMS's SMS failover text. An MMS body is sent as written (MMS is not GSM-7 encoded; Telnyx's
    smart encoding likewise applies to SMS only). A text that ``encoding: "gsm7"`` refuses is a 400
    ``BODY_NOT_GSM7`` naming the field, the character and its position, before anything is written. ``body``:
    the request's body as it will be sent when that is not ``req.body`` (its links marked for shortening)."""
    text = req.body if body is None else body
    smart, gsm7_only = bool(req.smart_encoding), req.encoding == "gsm7"

    def sent(text: str, field: str) -> Encoded:
        try:
            return encode(text, smart=smart, gsm7_only=gsm7_only, max_length=MAX_BODY)
        except TooLong as exc:
            raise invalid_field(field, str(exc)) from None
        except NotGsm7 as exc:
            issue = f"{exc.character!r} (U+{ord(exc.character):04X}) at position {exc.position} is not in the " \
                    "GSM-7 alphabet" + ("" if smart else "; smart_encoding may replace look-alikes")
            raise ApiError(ErrorCode.BODY_NOT_GSM7, f"{field} cannot be sent in GSM-7: {issue}",
                           details=[{"field": field, "issue": issue}]) from None

    failover = req.sms_failover
    failover_sent = sent(failover.text, "sms_failover.text") if failover is not None else None
    report: dict[str, Any] = {"sms_failover": _sms_report(failover_sent)} if failover_sent else {}
    if channel == "mms":
        return Texts(text, failover_sent.text if failover_sent else None, count_segments(text or "")[0],
                     MMS_SEGMENTS, report)
    encoded = sent(text or "", "body")
    return Texts(encoded.text if text is not None else None, None, encoded.encoding, encoded.segments,
                 {**_sms_report(encoded), **report})


Render = Callable[..., tuple[int, dict[str, Any]]]  # (group_id, legs, request_id, now, *, fields) -> answer


def send_single(rt: Runtime, who: Tenant | Caller, req: SendRequest, request_id: str,
                idempotency_record: str | None = None) -> Answer:
    """A single send waits on three rounds of Firestore/Cloud Tasks round trips (docs/decisions.md): its first
    round reads the key (``who`` is a ``Caller`` whose key is not checked yet), the tenant, the recipient's
    opt-out entry and price in one batch get while it claims its rate-limit slot; then one commit creates the
    leg in its decided state with the debit and the idempotent answer; then its Cloud Task. Media, if any, is
    fetched and stored between the first round and the commit."""
    message_id = ids.new_message_id()
    recipient = Recipient(raw=req.to, message_id=message_id, leg_key=f"single:{message_id}")
    # its first round reads only the balance shard this send writes (the one its message id picks)
    tenant, first = first_round_of(rt, who, [recipient], rt.now(), _single_limit, shard_key=message_id)
    if req.template_id is not None:  # its text rendered in before anything is charged (a missing value: 400)
        from shared.services import templating  # noqa: PLC0415 - only a templated send pays for it (cold start)

        req = templating.apply(rt, tenant.id, req)
    return _accept(rt, tenant, req, [recipient], group_id=None, channel="mms" if req.is_mms else "sms",
                   request_id=request_id, render=single_answer,
                   idempotency_record=idempotency_record, first=first)


def _single_limit(tenant: Tenant) -> RateLimit:
    return RateLimit(f"{tenant.id}:rps", tenant.rps or DEFAULT_RPS, 1)


def _group_limit(tenant: Tenant) -> RateLimit:
    return RateLimit(f"{tenant.id}:group", GROUP_REQUESTS_PER_MINUTE, 60)


def _authenticated(caller: Caller, tenant: Tenant | None) -> Tenant:
    if tenant is None or tenant.disabled:
        raise unauthorized(caller.api_key)
    caller.authenticated = tenant
    return tenant


def first_round_of(rt: Runtime, who: Tenant | Caller, recipients: list[Recipient], now: dt.datetime,
                   limit_of: Callable[[Tenant], RateLimit], *, countries: set[str] | None = None,
                   shard_key: str | None = None) -> tuple[Tenant, FirstRound]:
    """One round of waiting: the key (a ``Caller``'s), the tenant and its balance, the recipients' opt-out
    entries and prices in one batch get, and the rate-limit slot claimed alongside when this instance already
    knows the key valid (under the limit it last read; the fresh tenant's limit decides). Otherwise the slot
    is claimed after the reads: a key never seen valid here spends no tenant's slot. A key that names no
    tenant and is new to this instance is checked on its own first, once per instance. A batch passes no
    recipients and its ``countries``: their prices are read; its opt-outs are read by its chunk tasks. With
    ``shard_key`` (a single send) only the balance shard that key writes is read (``FirstRound.exact``)."""
    caller = who if isinstance(who, Caller) else None
    if caller is not None and caller.tenant_id is None:
        who, caller = _authenticated(caller, rt.accounts.tenant_for_api_key(caller.api_key, balance=False)), None
    for r in recipients:
        r.number = gates.parse(r.raw)
        r.e164 = r.number[0] if r.number is not None else None
    numbers = [r.e164 for r in recipients if r.e164 is not None]
    if countries is None:
        countries = {gates.country(r.number) for r in recipients if r.number is not None}
    tenant_id = caller.tenant_id if caller is not None else who.id  # type: ignore[union-attr]
    guess = caller.known if caller is not None else who

    def reads() -> FirstRound:
        assert tenant_id is not None
        return rt.accounts.first_round(tenant_id, caller.api_key if caller else None, numbers, countries,
                                       shard_key=shard_key)

    guessed = limit_of(guess) if isinstance(guess, Tenant) else None
    if guessed is not None:
        first, claimed = rt.concurrently(
            reads, lambda: rt.limits.claim(guessed.key, guessed.limit, guessed.window_seconds, now))
    else:
        first, claimed = reads(), None
    if caller is not None:
        tenant = _authenticated(caller, first.tenant)
    elif first.tenant is None:
        raise unauthorized("?")
    else:
        tenant = first.tenant
    limit = limit_of(tenant)
    if claimed is None or guessed is None or guessed.key != limit.key or (
            claimed[0] is None and limit.limit > guessed.limit):
        claimed = rt.limits.claim(limit.key, limit.limit, limit.window_seconds, now)
    slot, retry_after = claimed
    if slot is None or slot >= limit.limit:
        raise ApiError(ErrorCode.RATE_LIMITED, f"Rate limit of {limit.limit} requests per {limit.window_seconds} s "
                       "exceeded", headers={"Retry-After": str(retry_after)})
    return tenant, first


def send_group(rt: Runtime, who: Tenant | Caller, req: GroupRequest, request_id: str,
               idempotency_record: str | None = None) -> Answer:
    duplicates = sorted({n for n in req.to if req.to.count(n) > 1})
    if duplicates:
        raise ApiError(ErrorCode.DUPLICATE_RECIPIENTS, "Each recipient may appear only once",
                       details=[{"field": "to", "issue": f"duplicate recipient {n}"} for n in duplicates])
    group_id = ids.new_group_id()
    recipients = []
    for raw in req.to:
        key = ids.leg_key(group_id, raw)
        recipients.append(Recipient(raw=raw, message_id=ids.leg_message_id(key), leg_key=key))
    # The key, the tenant, the opt-outs and prices in one round, as a single send's (the group keeps its
    # pending pre-insert: no recipient dropped between rows).
    tenant, first = first_round_of(rt, who, recipients, rt.now(), _group_limit)
    if req.template_id is not None:
        from shared.services import templating  # noqa: PLC0415 - only a templated send pays for it (cold start)

        req = templating.apply(rt, tenant.id, req)
    # The group endpoint is the group MMS product: every leg is an MMS, media or not.
    return _accept(rt, tenant, req, recipients, group_id=group_id, channel="mms", request_id=request_id,
                   render=group_answer, idempotency_record=idempotency_record,
                   first=first)


def media_policy(rt: Runtime) -> UrlPolicy:
    s = rt.settings
    return media_url_policy(s.media_bucket, s.media_allowed_hosts, s.media_trusted_origins)


def _accept(rt: Runtime, tenant: Tenant, req: SendRequest | GroupRequest, recipients: list[Recipient], *,
            group_id: str | None, channel: str, request_id: str, render: Render,
            idempotency_record: str | None, first: FirstRound) -> Answer:
    now = rt.now()
    route, request_error = request_checks(rt, tenant, req, channel, now,
                                         recipients[0].e164 if recipients else None)
    sender = route.sender
    timing = plan_timing(req, now)
    # Short links are marked in before the body is encoded and priced: each recipient's own codes (issued below)
    # are as long as the marks, so every recipient's body counts the segments and costs what this one does.
    marked = None
    if req.tracking is not None:  # only a tracked send loads the link rules (cold start)
        from shared.rules.links import parse_tracking  # noqa: PLC0415
        from shared.services import links  # noqa: PLC0415

        tracking = parse_tracking(req.tracking)
        links.vet(rt, tracking)
        marked = links.prepare(rt, req.body, tracking)
    texts = encode_texts(req, channel, marked.body if marked else None)
    # Its first round read the lists and claimed its rate-limit slot.
    _gate(recipients, request_error, first, channel, texts.segments, listed=group_id is not None)
    _balance_preflight(rt, tenant, recipients, first.exact)
    try:
        media = prepare_media(rt, tenant, req, sender) if any(r.error is None for r in recipients) else ()
    except MediaError as exc:  # a request-level gate: every valid recipient's row ends failed with it
        media = ()
        field = media_field(req, exc)
        for r in recipients:
            if r.error is not ErrorCode.INVALID_PHONE_NUMBER:
                r.error, r.error_message, r.error_field = exc.code, exc.message, field
    fields = {r.message_id: r.error_field for r in recipients if r.error_field}
    legs = _build_legs(tenant, req, recipients, group_id=group_id, sender=sender, channel=channel, texts=texts,
                       media=media, request_id=request_id, now=now)
    window = req.delivery_window.window() if req.delivery_window else None
    # kept the tenant's retention from when they are due: a send scheduled past it is not deleted unsent
    kept_until = retention.delete_at(tenant, timing.scheduled_at or now)
    legs = [leg.with_(scheduled_at=timing.scheduled_at, valid_until=timing.valid_until, delivery_window=window,
                      delete_at=kept_until, carrier=route.carrier) for leg in legs]
    if marked is not None:
        legs = _with_links(rt, legs, marked, kept_until)
    group = Group(id=group_id, tenant_id=tenant.id, total=len(legs), created_at=now, request_id=request_id,
                  message_ids=tuple(leg.id for leg in legs), delete_at=kept_until,
                  conversation_id=legs[0].conversation_id,
                  ) if group_id else None

    def answer(accepted: list[Leg]) -> IdempotentAnswer | None:
        if idempotency_record is None:
            return None
        status, body = render(group_id, accepted, request_id, now, fields=fields, report=texts.report)
        return IdempotentAnswer(idempotency_record, status, body)

    target = Status.SCHEDULED if timing.scheduled_at else Status.QUEUED
    accepted = _commit(rt, tenant, group, legs, recipients, target=target, now=now, answer=answer,
                       version=first.version)
    _after_accept(rt, accepted)
    status, body = render(group_id, accepted, request_id, now, fields=fields, report=texts.report)
    return Answer(status, body, kept=idempotency_record is not None)


def _with_links(rt: Runtime, legs: list[Leg], marked: Marked, expires_at: dt.datetime) -> list[Leg]:
    """Each leg's body with short links of its own (a click names one message), the links stored before the
    commit that writes the legs (shared/services/links.py store)."""
    from shared.services import links  # noqa: PLC0415 - a tracked send's, already loaded by _accept

    out, issued = [], []
    for leg in legs:
        body, made = links.issue(rt, leg.body, marked, tenant_id=leg.tenant_id, message_id=leg.id, recipient=leg.to,
                                 expires_at=expires_at)
        out.append(leg.with_(body=body))
        issued += made
    links.store(rt, issued)
    return out


def plan_timing(req: SendRequest | GroupRequest | BatchRequest, now: dt.datetime) -> validity.Timing:
    """When the legs are due (a closed delivery window defers them to its next opening) and until when they
    are valid; a timing the request makes impossible is a 400 naming the field."""
    try:
        return validity.plan(now, scheduled_at=req.scheduled_at, validity_period=req.validity_period,
                             expires_at=req.expires_at,
                             window=req.delivery_window.window() if req.delivery_window else None)
    except validity.FieldError as exc:
        raise invalid_field(exc.field, exc.issue) from None


def request_checks(rt: Runtime, tenant: Tenant, req: SendRequest | GroupRequest | BatchRequest, channel: str,
                   now: dt.datetime, recipient: str | None) -> tuple[Route, RequestProblem | None]:
    """Checks that concern the whole request, and its carrier and sender (shared/services/carriers.py: the
    first recipient's sticky sender). Shape errors raise (nothing is written); gate failures are returned, to
    fail every recipient's row."""
    if req.scheduled_at is not None:
        if req.scheduled_at <= now:
            raise invalid_field("scheduled_at", "must be in the future")
        if req.scheduled_at > now + MAX_SCHEDULE_AHEAD:
            raise invalid_field("scheduled_at", "must be at most 180 days ahead")
    for name, url in (("webhook_url", req.webhook_url), ("webhook_failover_url", req.webhook_failover_url)):
        if url:
            try:
                check_url(url, webhook_url_policy(rt.settings.media_trusted_origins), rt.resolver)
            except UrlRejected as exc:
                raise invalid_field(name, exc.reason) from None

    route = carriers.route(rt, tenant, req.from_, req.carrier, channel, recipient)
    if getattr(req, "conversation", False) and route.carrier != "telnyx":
        # A group conversation is one group MMS, which only Telnyx sends (shared/carriers: capabilities).
        if req.from_ or req.carrier:
            raise invalid_field("carrier" if req.carrier else "from",
                                f"{route.carrier} cannot send a group conversation (group MMS); Telnyx can")
        route = carriers.route(rt, tenant, None, "telnyx", channel, recipient)
    sender = route.sender
    failover_checks(tenant, req.sms_failover, sender, channel)
    capabilities = tenant.senders.get(sender)
    if capabilities is None or not capabilities.allows(channel):
        code = ErrorCode.SENDER_NOT_ALLOWED
        return route, RequestProblem(code, "from", message_for(code))
    policy = media_policy(rt)
    for field, url in media_url_fields(req):
        try:
            check_url(url, policy, rt.resolver)
        except UrlRejected as exc:
            return route, RequestProblem(ErrorCode.MEDIA_URL_REJECTED, field, media_url_problem(field, url, exc.reason))
    return route, None


def media_url_fields(req: SendRequest | GroupRequest | BatchRequest) -> list[tuple[str, str]]:
    """Each distinct media URL of the request (``all_media_urls``' order) with the field it was first given in:
    ``media_url`` or ``media_urls[i]``."""
    named = ([("media_url", req.media_url)] if req.media_url else []) + [
        (f"media_urls[{i}]", url) for i, url in enumerate(req.media_urls or [])]
    first: dict[str, str] = {}
    for field, url in named:
        first.setdefault(url, field)
    return [(field, url) for url, field in first.items()]


def media_field(req: SendRequest | GroupRequest | BatchRequest, exc: MediaError) -> str:
    """The request field a media failure is about; its message says it too when the fetch refused a URL (a redirect,
    an address that changed since the request's own check): rewritten here with the URL's position."""
    if exc.url is not None:
        for field, url in media_url_fields(req):
            if url == exc.url:
                if exc.code is ErrorCode.MEDIA_URL_REJECTED and exc.reason is not None:
                    exc.message = media_url_problem(field, url, exc.reason, redirected_to=exc.redirected_to)
                return field
    return "media_urls" if req.all_media_urls else "media"


def failover_checks(tenant: Tenant, failover: SmsFailover | None, sender: str, channel: str) -> None:
    """An SMS failover belongs to an MMS, and goes from one of the tenant's SMS-capable senders (the MMS's
    own sender unless it names another). Refused before anything is written."""
    if failover is None:
        return
    if channel != "mms":
        raise invalid_field("sms_failover", "applies only to an MMS (a message with media)")
    failover_from = failover.from_ or sender
    capabilities = tenant.senders.get(failover_from)
    if capabilities is None or not capabilities.sms:
        issue = ("not an SMS-capable sender of this account" if failover.from_
                 else "the message's sender cannot send SMS: name an SMS-capable sender")
        raise ApiError(ErrorCode.SENDER_NOT_ALLOWED, "The SMS failover sender is not one of this account's "
                       "SMS-capable numbers", details=[{"field": "sms_failover.from", "issue": issue}])


def invalid_field(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid", details=[{"field": field, "issue": issue}])


def _gate(recipients: list[Recipient], request_error: RequestProblem | None, first: FirstRound, channel: str,
          segments: int, *, listed: bool) -> None:
    """Each recipient through the accept's gates (shared/rules/gates.py), with the lists its first round read.
    ``listed``: the recipients are the request's ``to`` list (a group), so a field names its position."""
    for i, r in enumerate(recipients):
        r.error = gates.number_gate(r.number, channel, request_error.code if request_error else None)
        if r.error is ErrorCode.INVALID_PHONE_NUMBER:
            r.error_field = f"to[{i}]" if listed else "to"
            r.error_message = gates.invalid_number_message(r.raw, r.error_field)
        elif request_error is not None and r.error is request_error.code:
            r.error_field, r.error_message = request_error.field, request_error.message
        if r.error is None and r.number is not None:
            r.price_micros, r.error = gates.list_gate(r.number, first.opted_out, first.prices, channel, segments)


def _balance_preflight(rt: Runtime, tenant: Tenant, recipients: list[Recipient], exact: bool = True) -> None:
    """A request the balance cannot cover writes nothing. A first round that read one balance shard saw that
    shard's money, at most the balance: a cost it does not cover reads the exact balance (every shard) first."""
    cost = sum(r.price_micros for r in recipients if not r.error)
    balance = tenant.balance_micros
    if cost > balance and not exact:
        full = rt.accounts.get_tenant(tenant.id)
        balance = full.balance_micros if full is not None else balance
    if cost > balance:
        raise ApiError(ErrorCode.INSUFFICIENT_BALANCE, f"The balance cannot cover this request ({cost / 1e6:.4f} USD "
                       "needed)")


def prepare_media(rt: Runtime, tenant: Tenant, req: SendRequest | GroupRequest | BatchRequest, sender: str
                  ) -> tuple[StoredMedia, ...]:
    """Media, fetched and stored once per request whatever the number of recipients (docs/media.md), made to fit
    the limit of ``sender``'s kind. Callers come here after every cheaper check, so a request answered 402, or
    one no recipient can receive, fetches nothing; and before anything is written (or charged), so an instance
    that dies mid-fetch leaves no pending row. Raises ``MediaError``: what it fails is the caller's (every row of
    a single or group, the whole batch)."""
    if not (req.all_media_urls or req.media):
        return ()
    uploads = [Upload(m.content_type, m.data, m.filename) for m in req.media or []]
    refs = rt.media.prepare(tenant.id, req.all_media_urls, uploads, media_policy(rt), media_limit(rt, tenant, sender))
    return tuple(StoredMedia.from_doc(ref) for ref in refs)


def media_limit(rt: Runtime, tenant: Tenant, sender: str) -> MediaLimit:
    """The sender's carrier limit (its kind: toll-free 600 KB, long code 1 MB, ...), within MEDIA_MAX_BYTES."""
    capabilities = tenant.senders.get(sender)
    kind = capabilities.kind if capabilities is not None else sender_kind(sender)
    return MediaLimit.for_sender(kind, rt.settings.media_max_bytes)


def _build_legs(tenant: Tenant, req: SendRequest | GroupRequest, recipients: list[Recipient], *,
                group_id: str | None, sender: str, channel: str, texts: Texts,
                media: tuple[StoredMedia, ...], request_id: str, now: dt.datetime) -> list[Leg]:
    return [
        new_leg(message_id=r.message_id, leg_key=r.leg_key, tenant_id=tenant.id, group_id=group_id,
                to=r.e164 or r.raw, from_=sender, body=texts.body, subject=req.subject, media_urls=req.all_media_urls,
                channel=channel, encoding=texts.encoding, segments=texts.segments, scheduled_at=req.scheduled_at,
                webhook_url=req.webhook_url or tenant.webhook_url, metadata=req.metadata or {},
                request_id=request_id, now=now).with_(
            **_with_media(controls(tenant, req, sender, now, group_id, failover_text=texts.failover_text), media))
        for r in recipients
    ]


def _with_media(changes: LegChanges, media: tuple[StoredMedia, ...]) -> LegChanges:
    """The request's leg fields and our stored copies of its media (dispatch signs them)."""
    return {**changes, "media": media}


def controls(tenant: Tenant, req: SendRequest | GroupRequest | BatchRequest, sender: str, now: dt.datetime,
             group_id: str | None = None, *, failover_text: str | None = None) -> LegChanges:
    """The leg fields of webhook control, SMS failover, retention and group conversation a request sets
    (docs/decisions.md). ``failover_text``: the SMS failover text as it will be sent (``encode_texts``)."""
    failover = req.sms_failover
    conversation = bool(getattr(req, "conversation", False)) and group_id is not None  # a group request's
    return {
        "conversation_id": ids.conversation_id(group_id) if conversation and group_id else None,
        "webhook_failover_url": req.webhook_failover_url or tenant.webhook_failover_url,
        "request_dlr": req.request_dlr,
        "client_ref": req.client_ref,
        "sms_failover": ({"text": failover_text or failover.text, "from": failover.from_ or sender}
                         if failover else None),
        "delete_at": retention.delete_at(tenant, now),
        "template_id": req.template_id, "template_version": req.template_version,
    }


def gate(legs: list[Leg], recipients: dict[str, Recipient], account: Tenant, target: Status,
         now: dt.datetime) -> AcceptDecision:
    """The accept's decision (pure): quota and balance per leg, in order; each leg queued or failed."""
    day = now.strftime("%Y-%m-%d")
    balance, used = account.balance_micros, account.used_on(day)
    decided = []
    for leg in legs:
        r = recipients[leg.id]
        error = r.error
        if error is None and account.daily_quota is not None and used + 1 > account.daily_quota:
            error = ErrorCode.QUOTA_EXCEEDED
        if error is None and r.price_micros > balance:
            error = ErrorCode.INSUFFICIENT_BALANCE
        if error is None:
            balance -= r.price_micros
            used += 1
            moved = transition(leg, target, cause="accepted", now=now, price_micros=r.price_micros)
        else:
            moved = transition(leg, Status.FAILED, cause=f"gate {error.value}", now=now, error_code=error.value,
                               error_message=r.error_message or message_for(error))
        decided.append(moved or leg)
    return AcceptDecision(legs=decided, balance_micros=balance, usage_day=day, usage_count=used)


def _commit(rt: Runtime, tenant: Tenant, group: Group | None, legs: list[Leg], recipients: list[Recipient], *,
            target: Status, now: dt.datetime, answer: Callable[[list[Leg]], IdempotentAnswer | None], version: Any
            ) -> list[Leg]:
    """The accept's one atomic commit, conditioned on the balance the first round read: a single send's leg is
    created already gated (``accept_one``); a group's pending pre-insert is gated (``accept``)."""
    by_id = {r.message_id: r for r in recipients}

    def decide(account: Tenant, stored: list[Leg]) -> AcceptDecision:
        return gate(stored, by_id, account, target, now)

    try:
        if group is None:
            accepted = leg_changes.accept_one(rt, legs[0], tenant, version, decide, answer)
        else:
            accepted = leg_changes.accept(rt, group, legs, decide, answer, version)
    except PreInsertFailed as exc:
        raise ApiError(ErrorCode.INTERNAL, "Could not record the recipients; nothing was sent") from exc
    except Contended:
        # Nothing was charged; a group's rows exist as pending, and the sweeper never sends a pending leg.
        raise ApiError(ErrorCode.RATE_LIMITED, "Too many concurrent requests for this account; retry shortly",
                       headers={"Retry-After": "1"}) from None
    observe.metric("leg.accepted", tenant_id=tenant.id,
                   count=sum(leg.status in (Status.QUEUED, Status.SCHEDULED) for leg in accepted))
    return accepted


def _after_accept(rt: Runtime, after: list[Leg]) -> None:
    """Create the dispatch tasks of accepted legs (the accept's commit announced the failed ones' events). Never
    raises: the request is accepted already, and the sweeper re-enqueues a queued leg whose task is missing."""
    tasks = [DispatchTask(leg.id, ids.task_name(leg.leg_key), leg.scheduled_at)
             for leg in after if leg.status in (Status.QUEUED, Status.SCHEDULED)]
    if any(leg.conversation_id for leg in after):  # a conversation's legs share one dispatch task
        from shared.services import conversation  # noqa: PLC0415 - the group_mms dispatch: not a send's cold path

        tasks = conversation.one_task(tasks, after)
    if tasks:
        try:
            errors = fanout.enqueue(rt, after[0].group_id, tasks)  # a group's several: one task creates them
        except Exception as exc:  # noqa: BLE001 - see the docstring
            errors = {task.message_id: exc for task in tasks}
        for message_id, error in errors.items():
            if error is not None:
                observe.log_error("dispatch task not created; the sweeper will re-enqueue", message_id=message_id,
                                  error=type(error).__name__)


# The request field a single send's gate failure is about (none for the account's own limits).
_GATE_FIELDS = {
    ErrorCode.INVALID_PHONE_NUMBER: "to", ErrorCode.MMS_NANP_ONLY: "to", ErrorCode.RECIPIENT_OPTED_OUT: "to",
    ErrorCode.PRICE_UNAVAILABLE: "to", ErrorCode.SENDER_NOT_ALLOWED: "from",
    ErrorCode.MEDIA_URL_REJECTED: "media_urls", ErrorCode.MEDIA_FETCH_FAILED: "media_urls",
    ErrorCode.MEDIA_TYPE_UNSUPPORTED: "media_urls", ErrorCode.MEDIA_TOO_LARGE: "media_urls",
}


def single_answer(group_id: str | None, legs: list[Leg], request_id: str, now: dt.datetime, *,
                  fields: dict[str, str] | None = None, report: dict[str, Any] | None = None) -> tuple[int, dict]:
    """The single send answers like the message it created; a failed gate answers as an error that names
    the field at fault in ``details`` (``fields``: what the accept knew of it, such as ``media_urls[1]``) and
    carries the stored message's id in ``error.message_id`` (the failed message can be read like any other).
    ``report``: its SMS text's encoding and segments (``Texts.report``), added to an accepted answer."""
    leg = legs[0]
    if leg.status is Status.FAILED:
        code = ErrorCode(leg.error_code or ErrorCode.INTERNAL.value)
        field = (fields or {}).get(leg.id) or _GATE_FIELDS.get(code)
        if field == "media_urls" and not leg.media_urls:
            field = "media"  # inline blobs only
        details = [{"field": field, "issue": leg.error_message or message_for(code)}] if field else None
        error = ApiError(code, leg.error_message, details=details)
        body = error_body(error, request_id, now)
        body["error"]["message_id"] = leg.id
        return error.status, body
    data = {"id": leg.id, "status": leg.status.value, "channel": leg.channel, "segments": leg.segments,
            "carrier": leg.carrier, **(report or {})}
    return 200, {"data": data, "meta": meta(request_id, now)}


def group_answer(group_id: str | None, legs: list[Leg], request_id: str, now: dt.datetime, *,
                 fields: dict[str, str] | None = None, report: dict[str, Any] | None = None) -> tuple[int, dict]:
    """One item per recipient, keyed ``id`` as in every read (``message_id`` repeats it). The summary counts
    what this answer decided: ``accepted`` (queued for sending), ``scheduled``, ``failed``; ``succeeded`` repeats
    ``accepted``. ``message_id`` and ``succeeded`` are the first contract's names and stay for good
    (docs/releasing.md). ``report``: its SMS failover text's encoding and segments (``Texts.report``)."""
    messages = []
    summary = {"total": len(legs), "accepted": 0, "failed": 0, "scheduled": 0}
    for leg in legs:
        item: dict[str, Any] = {"id": leg.id, "message_id": leg.id, "to": leg.to, "status": leg.status.value}
        if leg.status is Status.FAILED:
            item["error_code"] = leg.error_code
            item["error_message"] = leg.error_message
            summary["failed"] += 1
        elif leg.status is Status.SCHEDULED:
            summary["scheduled"] += 1
        else:
            summary["accepted"] += 1
        messages.append(item)
    summary["succeeded"] = summary["accepted"]
    status = 207 if summary["failed"] else 200
    extra = {"conversation_id": legs[0].conversation_id} if legs and legs[0].conversation_id else {}
    return status, {"group_id": group_id, **extra, "messages": messages, "summary": summary, **(report or {}),
                    "meta": meta(request_id, now)}
