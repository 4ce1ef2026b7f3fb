"""Batch sends: the accept, the chunk tasks that write the rows, progress, and cancel (docs/decisions.md,
"Batches").

The accept (``accept_batch``) answers 202 after one commit: the batch record, its recipients in chunk
documents of at most ``batching.CHUNK``, the reservation of its whole cost on the tenant's balance shards, and
the answer kept under the request's Idempotency-Key. Nothing of the batch is lost after that commit, whatever
dies next: the chunk tasks it then creates are named (creating one twice creates it once), and a chunk whose
work is not done (``todo``) is given a new task by the sweeper (shared/services/sweeping.py).

A chunk task (``run_chunk``) writes its rows in one commit of ``create``s, each in its decided state (queued,
scheduled at its turn under ``sending_speed``, or failed by a gate, with the reservation of those the late
gate failed released in the same commit): run twice, its create fails and it reads the rows instead. It then
reads the batch again: canceled since, it cancels its own cancelable rows; otherwise it creates their dispatch
tasks (named after each leg). Each leg then goes through dispatch like any other.

Cancel (``cancel_batch``) marks the batch canceled and every chunk as having work, in one commit, and creates a
cancel task per chunk. Either a chunk's rows were committed before that commit (its cancel task finds them and
cancels what has not gone to the provider, each through ``change``, which races dispatch's claim exactly as a
single message's cancel does), or after it (the chunk task, reading the batch after its own commit, sees the
cancel). A canceled leg is refunded its reserved price; a chunk not yet written writes its rows canceled.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING, Any

from shared.api.answers import meta
from shared.ports import BatchAcceptDecision, DispatchTask, IdempotentAnswer
from shared.rules import batching, ids, retention
from shared.rules import links as link_rules
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.legs import iso, new_leg
from shared.rules.media import MediaError
from shared.rules.records import Batch, BatchStatus, Leg, StoredMedia, Tenant
from shared.rules.segments import count_segments
from shared.rules.status import Status, is_final
from shared.rules.templates import placeholders, render
from shared.services import leg_changes, links, observe, templating
from shared.services.canceling import CANCELABLE, cancel_step
from shared.services.leg_changes import change
from shared.services.sending import (
    Answer,
    RateLimit,
    controls,
    encode_texts,
    first_round_of,
    invalid_field,
    media_field,
    plan_timing,
    prepare_media,
    request_checks,
)

if TYPE_CHECKING:
    from shared.api.batch_request import BatchRequest
    from shared.ports import Caller, Runtime

BATCH_REQUESTS_PER_MINUTE = 10
MAX_SPREAD = dt.timedelta(days=180)  # the last leg's turn, as far ahead as a scheduled send may be


def _batch_limit(tenant: Tenant) -> RateLimit:
    return RateLimit(f"{tenant.id}:batch", BATCH_REQUESTS_PER_MINUTE, 60)


def accept_batch(rt: Runtime, who: Tenant | Caller, req: BatchRequest, request_id: str,
                 idempotency_record: str | None = None) -> Answer:
    items = req.all_recipients()
    batching.check_duplicates(items, "recipients" if req.recipients is not None else "to")
    now = rt.now()
    numbers = batching.numbers_of(items)
    tenant, first = first_round_of(rt, who, [], now, _batch_limit, countries=batching.countries_of(numbers))
    req, personalised = templating.apply_batch(rt, tenant.id, req)  # a template's text in (unchanged without)
    channel = "mms" if req.is_mms else "sms"
    route, request_error = request_checks(rt, tenant, req, channel, now, next((n[0] for n in numbers if n), None))
    sender = route.sender
    if request_error is not None:  # it would fail every recipient: refused whole, nothing written
        raise ApiError(request_error.code, request_error.message,
                       details=[{"field": request_error.field, "issue": request_error.message}])
    timing = plan_timing(req, now)
    # A template's rows are counted and priced one by one on their rendered text (batching.gate_recipients); the
    # template's own text is smart-encoded and checked here like any body (its placeholders are plain ASCII).
    # Links marked in before encoding and pricing (shared/services/sending.py _accept); each row gets its own
    # codes in its chunk task, as long as the marks, so the segments priced here are the row's.
    tracking = link_rules.parse_tracking(req.tracking)
    links.vet(rt, tracking)
    marked = links.prepare(rt, req.body, tracking)
    texts = encode_texts(req, channel, marked.body if marked else None)
    if marked is not None and personalised:
        personalised = _personalised_marked(marked, texts.body, channel, personalised)
    gated = batching.gate_recipients(items, channel, texts.segments, first.prices, numbers, personalised)
    start = timing.scheduled_at or now
    interval = req.sending_speed.interval_seconds if req.sending_speed else _default_interval(rt)
    count = sum(r.error_code is None for r in gated)
    _check_spread(req, start, interval, count, timing.valid_until, now)
    # the cheap 402 before any media is fetched (the commit decides again on the balance as it then is)
    batching.reserve(gated, tenant, now)
    media = _media(rt, tenant, req, sender) if count else ()
    batch_id = ids.new_batch_id()
    window = req.delivery_window.window() if req.delivery_window else None
    template = new_leg(
        message_id="", leg_key="", tenant_id=tenant.id, group_id=None, to="", from_=sender, body=texts.body,
        subject=req.subject, media_urls=req.all_media_urls, channel=channel, encoding=texts.encoding,
        segments=texts.segments, scheduled_at=None, webhook_url=req.webhook_url or tenant.webhook_url,
        metadata=req.metadata or {}, request_id=request_id, now=now,
    ).with_(**controls(tenant, req, sender, now, failover_text=texts.failover_text)).with_(
        media=media, batch_id=batch_id, valid_until=timing.valid_until, delivery_window=window, carrier=route.carrier,
        delete_at=retention.delete_at(tenant, start))  # each leg's counts from its own turn (batching.chunk_rows)
    # the batch and its chunks are kept as long as its last leg
    delete_at = retention.delete_at(tenant, start + dt.timedelta(seconds=max(count - 1, 0) * interval))

    def decide(current: Tenant) -> BatchAcceptDecision:
        reservation = batching.reserve(gated, current, now)
        batch = Batch(
            id=batch_id, tenant_id=tenant.id, status=BatchStatus.ACCEPTED, total=len(items),
            accepted=reservation.accepted, rejected=len(items) - reservation.accepted,
            chunks=len(batching.chunks(len(items))), reserved_micros=reservation.cost_micros, template=template,
            created_at=now, request_id=request_id, start_at=start, interval_seconds=interval,
            campaign_ref=req.campaign_ref, validity_seconds=req.validity_period,
            sending_speed=req.sending_speed.model_dump() if req.sending_speed else None, delete_at=delete_at,
            tracking=marked.to_doc() if marked else None)
        return BatchAcceptDecision(
            batch=batch, chunks=batching.split(batch_id, tenant.id, reservation.recipients, now, delete_at),
            balance_micros=reservation.balance_micros, usage_day=reservation.usage_day,
            usage_count=reservation.usage_count)

    def answer(batch: Batch) -> IdempotentAnswer | None:
        if idempotency_record is None:
            return None
        return IdempotentAnswer(idempotency_record, 202, _answer_body(batch, request_id, now, texts.report))

    batch = rt.batches.accept(tenant.id, first.version, decide, answer)
    observe.metric("batch.accepted", tenant_id=tenant.id, count=batch.accepted)
    errors = rt.queue.enqueue_batch_chunks(batch.id, range(batch.chunks))
    for index, error in errors.items():
        if error is not None:  # the sweeper creates it (the chunk is still todo)
            observe.log_error("batch chunk task not created; the sweeper will", batch_id=batch.id, chunk=index,
                              error=type(error).__name__)
    return Answer(202, _answer_body(batch, request_id, now, texts.report), kept=idempotency_record is not None)


def _personalised_marked(marked: link_rules.Marked, text: str | None, channel: str,
                         personalised: list[tuple[dict[str, str], int]]) -> list[tuple[dict[str, str], int]]:
    """Each recipient's values with the segments of its own text as its row will hold it: the template's text
    with its links marked, then its values rendered in (a value cannot bring a link: templates escape them). A
    link that holds a placeholder would send every click to the template's text, not the recipient's URL:
    refused."""
    for _, url in marked.marks:
        if placeholders(url):
            raise invalid_field("tracking", f"the link {url[:100]} holds a placeholder: a shortened link is the "
                                "same for every recipient; put the placeholder outside the link")
    if channel == "mms":
        return personalised
    return [(values, count_segments(render(text, values) or "")[1]) for values, _ in personalised]


def _default_interval(rt: Runtime) -> float:
    """A batch without ``sending_speed`` goes at ``BATCH_LEGS_PER_SECOND``, below the dispatch queue's rate: its
    legs wait as scheduled tasks for their turn instead of filling the queue that every tenant's sends share
    (and none sits ``queued`` long enough for the sweeper to send it again)."""
    rate = rt.settings.batch_legs_per_second
    return 1.0 / rate if rate > 0 else 0.0


def _answer_body(batch: Batch, request_id: str, now: dt.datetime, report: dict[str, Any]) -> dict[str, Any]:
    """The batch as accepted, with its SMS text's encoding and segments (``encode_texts``)."""
    return {"data": {**view(batch), **report}, "meta": meta(request_id, now)}


def _check_spread(req: BatchRequest, start: dt.datetime, interval: float, count: int,
                  valid_until: dt.datetime | None, now: dt.datetime) -> None:
    """A speed that would put the last recipient's turn beyond what we keep (180 days), or after an absolute
    validity (``expires_at``: it would expire unsent), is refused before anything is written."""
    if not count or not interval:
        return
    last = start + dt.timedelta(seconds=(count - 1) * interval)
    if last > now + MAX_SPREAD:
        raise invalid_field("sending_speed", f"the last of {count} recipients would be due after 180 days: send faster")
    if req.expires_at is not None and valid_until is not None and last >= valid_until:
        raise invalid_field("sending_speed", f"the last of {count} recipients would be due at "
                       f"{last.isoformat(timespec='seconds')}, after expires_at")


def _media(rt: Runtime, tenant: Tenant, req: BatchRequest, sender: str) -> tuple[StoredMedia, ...]:
    """Fetched and stored once for the whole batch, to fit ``sender``'s limit; a media failure refuses the request
    (it would fail every recipient)."""
    try:
        return prepare_media(rt, tenant, req, sender)
    except MediaError as exc:
        field = media_field(req, exc)
        raise ApiError(exc.code, exc.message, details=[{"field": field, "issue": exc.message}]) from None


def run_chunk(rt: Runtime, batch_id: str, index: int) -> tuple[int, str]:
    """One chunk task's delivery (see the module docstring). 500 asks Cloud Tasks to deliver it again: every
    step is safe to repeat."""
    state = rt.batches.chunk_state(batch_id, index)
    if state is None:
        return 200, "no such chunk"
    batch, chunk = state.batch, state.chunk
    now = rt.now()
    message_ids = [batching.leg_id(batch_id, r.to) for r in chunk.recipients]
    sendable = [r.to for r in chunk.recipients if r.error_code is None and r.slot is not None]
    existing, (opted_out, _) = rt.concurrently(lambda: rt.batches.rows(message_ids[:1]),
                                               lambda: rt.accounts.gate_reads(batch.tenant_id, sendable, []))
    rows: list[Leg]
    if existing:
        rows = rt.batches.rows(message_ids)
    else:
        rows, refund = batching.chunk_rows(batch, chunk, opted_out, _relative_validity(batch), now)
        if batch.tracking:
            rows = _with_links(rt, batch, rows)
        if leg_changes.write_batch_rows(rt, rows, refund, f"batch-chunk:{batch_id}:{index}"):
            observe.metric("leg.accepted", tenant_id=batch.tenant_id,
                           count=sum(leg.status in (Status.QUEUED, Status.SCHEDULED) for leg in rows))
        else:
            rows = rt.batches.rows(message_ids)
    current = rt.batches.get(batch_id)  # read after the rows' commit: a cancel before it is seen here
    if current is None or current.status is BatchStatus.CANCELED:
        decide = functools.partial(cancel_step, tenant_id=batch.tenant_id, now=now)
        targets = [leg.id for leg in rows if leg.status in CANCELABLE]
        if targets:
            rt.concurrently(*(functools.partial(change, rt, message_id, decide) for message_id in targets))
        outcome = f"{len(targets)} canceled"
    else:
        tasks = [DispatchTask(leg.id, ids.task_name(leg.leg_key), leg.scheduled_at, batch_id)
                 for leg in rows if leg.status in (Status.QUEUED, Status.SCHEDULED)]
        errors = rt.queue.enqueue_dispatch_many(tasks) if tasks else {}
        failed = [message_id for message_id, error in errors.items() if error is not None]
        if failed:
            observe.log_error("batch chunk: dispatch tasks not created; it will be retried", batch_id=batch_id,
                              chunk=index, failed=len(failed))
            return 500, f"{len(failed)} of {len(tasks)} dispatch tasks not created"
        outcome = f"{len(rows)} rows, {len(tasks)} tasks"
    rt.batches.chunk_done(chunk, state.version, now)
    return 200, outcome


def _with_links(rt: Runtime, batch: Batch, rows: list[Leg]) -> list[Leg]:
    """Each row's body with short links of its own, stored before the rows' commit. Codes are random: a chunk
    task that runs twice writes its rows once (the second commit's creates fail and it reads the rows), so one
    leg never holds two bodies; the losing run's links name no stored body and expire with its retention."""
    marked = link_rules.Marked.from_doc(batch.tracking or {})
    out, issued = [], []
    for row in rows:
        expires_at = row.delete_at or batch.delete_at or batch.template.delete_at
        if expires_at is None:  # every leg has a retention (shared/rules/retention.py); kept as a guard
            out.append(row)
            continue
        body, made = links.issue(rt, row.body, marked, tenant_id=batch.tenant_id, message_id=row.id,
                                 recipient=row.to, expires_at=expires_at)
        out.append(row.with_(body=body))
        issued += made
    links.store(rt, issued)
    return out


def _relative_validity(batch: Batch) -> dt.timedelta | None:
    """A ``validity_period`` counts from each leg's own turn (an ``expires_at`` is the same for all)."""
    seconds = batch.validity_seconds
    return dt.timedelta(seconds=seconds) if seconds else None


def view(batch: Batch, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The public representation of a batch; with ``counts`` (rows by status), its progress."""
    last = batching.due_at(batch, batch.accepted - 1) if batch.accepted else batch.start_at
    data: dict[str, Any] = {
        "id": batch.id, "batch_id": batch.id, "status": batch.status.value, "campaign_ref": batch.campaign_ref,
        "sending_speed": batch.sending_speed, "channel": batch.template.channel, "total": batch.total,
        "accepted": batch.accepted, "rejected": batch.rejected,
        "reserved": {"amount": f"{batch.reserved_micros / 1_000_000:.4f}", "currency": "USD"},
        "first_dispatch_at": iso(batch.start_at), "last_dispatch_at": iso(last),
        "created_at": iso(batch.created_at), "canceled_at": iso(batch.canceled_at),
    }
    if counts is not None:
        by_status = {status: n for status, n in sorted(counts.items()) if n}
        written = sum(by_status.values())
        final = sum(n for status, n in by_status.items() if is_final(Status(status)))
        data["progress"] = {"total": batch.total, "written": written, "final": final, "by_status": by_status}
        if batch.status is BatchStatus.ACCEPTED and final == batch.total:
            data["status"] = "completed"
    return data


def _own(rt: Runtime, tenant_id: str, batch_id: str) -> Batch:
    batch = rt.batches.get(batch_id) if batch_id.startswith("bat_") else None
    if batch is None or batch.tenant_id != tenant_id:
        raise ApiError(ErrorCode.NOT_FOUND, "No batch with that id")
    return batch


def _counts(rt: Runtime, batch: Batch) -> dict[str, int]:
    # a ``sent`` row may be final (no report expected) or not: the ``final`` flag is counted apart
    return rt.batches.count_by_status(batch.tenant_id, batch.id, [s.value for s in Status])


def batch_progress(rt: Runtime, tenant_id: str, batch_id: str) -> dict[str, Any]:
    """``GET /api/v1/batches/{id}``: the batch and its rows counted by status."""
    batch = _own(rt, tenant_id, batch_id)
    return view(batch, _counts(rt, batch))


def cancel_batch(rt: Runtime, tenant_id: str, batch_id: str) -> dict[str, Any]:
    """``DELETE /api/v1/batches/{id}``: the batch canceled, its chunks' cancel tasks created; the rows become
    ``canceled`` (refunded) as those run. Repeating it answers the same; a batch whose every row is final
    already has nothing left to cancel (409)."""
    current = _own(rt, tenant_id, batch_id)
    if current.status is BatchStatus.ACCEPTED:
        counts = _counts(rt, current)
        if view(current, counts)["status"] == "completed":
            raise ApiError(ErrorCode.NOT_CANCELABLE, "The batch is completed: every message is final",
                           details=[{"field": "status", "issue": "completed"}])
    batch = rt.batches.cancel(batch_id, tenant_id, rt.now())
    if batch is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No batch with that id")
    errors = rt.queue.enqueue_batch_chunks(batch.id, range(batch.chunks), purpose="cancel")
    for index, error in errors.items():
        if error is not None:
            observe.log_error("batch cancel task not created; the sweeper will", batch_id=batch.id, chunk=index,
                              error=type(error).__name__)
    return view(batch, _counts(rt, batch))
