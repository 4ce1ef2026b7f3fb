"""Batch sends, ``POST /api/v1/messages/batch``: the pure rules of the accept and its chunks.

One payload to up to ``MAX_RECIPIENTS`` recipients, given as ``to`` (numbers) or ``recipients`` (objects with
their own metadata and client_ref). The accept gates what it can at once (numbers, NANP for MMS, prices:
``gate_recipients``), reserves the cost of the rest against the balance (``reserve``: 402 when it cannot be
covered, the daily quota applied in order) and writes the batch with its recipients split into chunks of at
most ``CHUNK``. Each chunk task writes its rows (``chunk_rows``) under ids derived from the batch id and the
recipient (``leg_id``): a chunk task that runs twice finds its rows and writes nothing twice. The late gate
(opt-outs) fails a row and releases its reservation in the same commit. An optional ``sending_speed`` spreads
the legs' dispatch times evenly: the recipient in sending ``slot`` i is due i intervals after the start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from shared.rules import gates, ids
from shared.rules.errors import ApiError, ErrorCode, message_for
from shared.rules.frozen import frozen
from shared.rules.legs import transition
from shared.rules.records import Batch, BatchChunk, BatchStatus, ChunkRecipient, HistoryEntry, Leg, Rates, Tenant
from shared.rules.segments import MMS_SEGMENTS, count_segments
from shared.rules.status import Status
from shared.rules.templates import render

if TYPE_CHECKING:
    from shared.rules.records import LegChanges

MAX_RECIPIENTS = 10_000
# Recipients per chunk task: its one commit (the rows, and the refund of those that fail a late gate) stays
# within Firestore's 500 writes per commit, and a chunk document (at most MAX_RECIPIENT_BYTES of each
# recipient's own fields) within its 1 MiB.
CHUNK = 400
# The route's body limit (other routes take 64 KB): 10,000 recipients of about 400 bytes each.
MAX_BODY_BYTES = 4 * 1024 * 1024


class Recipient(Protocol):
    """One recipient of a batch as the rules read it (``shared.api.batch_request.BatchRecipient`` is one)."""

    @property
    def to(self) -> str: ...
    @property
    def metadata(self) -> dict[str, str] | None: ...
    @property
    def client_ref(self) -> str | None: ...


def check_duplicates(recipients: Iterable[Recipient], field: str = "recipients") -> None:
    """A number given twice is refused before anything is written (as in a group): which of the two rows would
    carry which metadata is not for us to guess. A valid number has one E.164 spelling (shared/rules/phone.py
    refuses any other), so equal numbers are equal strings."""
    seen: dict[str, int] = {}
    repeated: list[dict[str, str]] = []
    suffix = ".to" if field == "recipients" else ""
    for i, r in enumerate(recipients):
        if r.to in seen:
            repeated.append({"field": f"{field}[{i}]{suffix}", "issue": f"repeats {field}[{seen[r.to]}] ({r.to})"})
        else:
            seen[r.to] = i
    if repeated:
        raise ApiError(ErrorCode.DUPLICATE_RECIPIENTS, "Each recipient may appear only once",
                       details=repeated[:20])


def leg_key(batch_id: str, to: str) -> str:
    return f"batch:{batch_id}:{to}"


def leg_id(batch_id: str, to: str) -> str:
    """The row of ``to`` in a batch, the same on every run of its chunk task."""
    return ids.leg_message_id(leg_key(batch_id, to))


def chunks(total: int, size: int = CHUNK) -> list[range]:
    """The recipient index ranges of the chunk tasks, in order."""
    if total < 0 or size < 1:
        raise ValueError("a batch has 0 or more recipients and chunks of at least one")
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


def chunk_task_name(batch_id: str, index: int, purpose: str = "write") -> str:
    """Cloud Tasks deduplicates by name: an accept (``write``) or a cancel (``cancel``) that creates its chunk
    tasks again creates each once; the sweeper names its own (``sweep-<minute>``)."""
    return ids.task_name(f"batch-chunk:{batch_id}:{index}:{purpose}")


CHUNK_KEY = "batch_chunk"


def chunk_payload(batch_id: str, index: int) -> dict[str, Any]:
    return {CHUNK_KEY: {"batch_id": batch_id, "index": index}}


def chunk_of(body: dict[str, Any]) -> tuple[str, int]:
    """The (batch id, chunk index) a chunk task names; ValueError if it is not one of ours."""
    item = body.get(CHUNK_KEY)
    if not isinstance(item, dict):
        raise ValueError("not a chunk task")
    batch_id, index = item.get("batch_id"), item.get("index")
    if not (isinstance(batch_id, str) and batch_id.startswith("bat_") and "/" not in batch_id
            and len(batch_id) <= 64 and type(index) is int and 0 <= index < MAX_RECIPIENTS // CHUNK + 1):
        raise ValueError("not a chunk task")
    return batch_id, index


Number = gates.Number


def numbers_of(items: Sequence[Recipient]) -> list[Number | None]:
    """Each recipient's number parsed once (None: not a valid number): the accept needs the countries before
    its first round of reads and the rest after, and 10,000 parses are a good part of the time to 202."""
    return [gates.parse(item.to) for item in items]


def countries_of(numbers: Iterable[Number | None]) -> set[str]:
    return {gates.country(n) for n in numbers if n is not None}


def gate_recipients(items: Sequence[Recipient], channel: str, segments: int,
                    prices: dict[str, Rates | None], numbers: Sequence[Number | None] | None = None,
                    personalised: Sequence[tuple[dict[str, str], int]] | None = None) -> list[ChunkRecipient]:
    """The accept's gates (shared/rules/gates.py) but the opt-out list, which each chunk task reads when it
    writes its rows. A recipient that fails one carries its error code (its row is written failed, nothing
    reserved). ``numbers``: ``numbers_of(items)``, when the caller has it already. ``personalised``: each
    recipient's template values and the segments of its own rendered body (priced by those)."""
    out = []
    for i, (item, number) in enumerate(zip(items, numbers if numbers is not None else numbers_of(items),
                                           strict=True)):
        price, error = 0, gates.number_gate(number, channel)
        if error is None and number is not None:
            price, error = gates.list_gate(number, (), prices, channel,
                                           personalised[i][1] if personalised else segments)
        out.append(ChunkRecipient(to=number[0] if number is not None else item.to,
                                  price_micros=price if error is None else 0,
                                  error_code=error.value if error else None, metadata=dict(item.metadata or {}),
                                  client_ref=item.client_ref,
                                  personalisation=personalised[i][0] if personalised else None))
    return out


@frozen
class Reservation:
    recipients: list[ChunkRecipient]  # each with its slot (sending order), or an error
    cost_micros: int
    accepted: int
    balance_micros: int  # the tenant's balance after the reservation
    usage_day: str
    usage_count: int  # the day's usage after it


def reserve(recipients: Sequence[ChunkRecipient], tenant: Tenant, now: dt.datetime) -> Reservation:
    """Reserve the cost of every recipient that passed the accept's gates, in order, up to the daily quota
    (the rest fail ``QUOTA_EXCEEDED``, as in a group). A cost the balance cannot cover refuses the request
    (402): a batch is not sent in part for want of money."""
    day = now.strftime("%Y-%m-%d")
    used = tenant.used_on(day)
    room = None if tenant.daily_quota is None else max(tenant.daily_quota - used, 0)
    out, cost, slot = [], 0, 0
    for r in recipients:
        if r.error_code is not None:
            out.append(r)
        elif room is not None and slot >= room:
            out.append(dataclasses.replace(r, price_micros=0, error_code=ErrorCode.QUOTA_EXCEEDED.value))
        else:
            out.append(dataclasses.replace(r, slot=slot))
            cost += r.price_micros
            slot += 1
    if cost > tenant.balance_micros:
        raise ApiError(ErrorCode.INSUFFICIENT_BALANCE, f"The balance cannot cover this batch ({cost / 1e6:.4f} USD "
                       f"needed, {tenant.balance_micros / 1e6:.4f} USD available)")
    return Reservation(out, cost, slot, tenant.balance_micros - cost, day, used + slot)


def split(batch_id: str, tenant_id: str, recipients: Sequence[ChunkRecipient], now: dt.datetime,
          delete_at: dt.datetime | None) -> list[BatchChunk]:
    return [BatchChunk(batch_id=batch_id, tenant_id=tenant_id, index=i, recipients=tuple(recipients[r.start:r.stop]),
                       todo=True, updated_at=now, delete_at=delete_at)
            for i, r in enumerate(chunks(len(recipients)))]


def due_at(batch: Batch, slot: int) -> dt.datetime:
    """When the recipient in sending ``slot`` may be handed to the provider."""
    return batch.start_at + dt.timedelta(seconds=slot * batch.interval_seconds)


def personalised(template: Leg, values: dict[str, str]) -> LegChanges:
    """A row's body and subject rendered from the batch template's text, with their encoding and segments."""
    body, subject = render(template.body, values), render(template.subject, values)
    encoding, segments = count_segments(body or "")
    return {"body": body, "subject": subject, "encoding": encoding,
            "segments": MMS_SEGMENTS if template.channel == "mms" else segments}


# A leg due this close to now is queued, not scheduled (its task is created to run at once).
ON_TIME = dt.timedelta(seconds=1)


def chunk_rows(batch: Batch, chunk: BatchChunk, opted_out: set[str], validity: dt.timedelta | None,
               now: dt.datetime) -> tuple[list[Leg], int]:
    """The rows a chunk task writes, each in its decided state, and the reservation its late gates release.
    ``validity``: a relative validity period, counted from each leg's own turn (an absolute one is the
    template's)."""
    rows, refund = [], 0
    template = batch.template
    for r in chunk.recipients:
        leg = template.with_(
            id=leg_id(batch.id, r.to), leg_key=leg_key(batch.id, r.to), to=r.to,
            metadata={**template.metadata, **r.metadata}, client_ref=r.client_ref or template.client_ref,
            created_at=batch.created_at, status=Status.PENDING, status_since=batch.created_at, updated_at=now,
            history=(HistoryEntry(at=batch.created_at, from_=None, to=Status.PENDING.value,
                                  cause="request received"),))
        if r.personalisation is not None:  # the batch's template text, with this recipient's values
            leg = leg.with_(**personalised(template, r.personalisation))
        moved: Leg | None
        if r.error_code is not None or r.slot is None:
            code = ErrorCode(r.error_code or ErrorCode.INTERNAL.value)
            moved = transition(leg, Status.FAILED, cause=f"gate {code.value}", now=now, error_code=code.value,
                               error_message=message_for(code))
        elif batch.status is BatchStatus.CANCELED:
            moved = transition(leg, Status.CANCELED, cause="batch canceled by the customer", now=now)
            refund += r.price_micros
        elif r.to in opted_out:
            moved = transition(leg, Status.FAILED, cause=f"gate {ErrorCode.RECIPIENT_OPTED_OUT.value}", now=now,
                               error_code=ErrorCode.RECIPIENT_OPTED_OUT.value,
                               error_message=message_for(ErrorCode.RECIPIENT_OPTED_OUT))
            refund += r.price_micros
        else:
            at = due_at(batch, r.slot)
            scheduled = at > now + ON_TIME
            valid_until = at + validity if validity is not None else template.valid_until
            # kept the tenant's retention from its own turn (the template's counts from the batch's start)
            delete_at = template.delete_at + (at - batch.start_at) if template.delete_at else None
            moved = transition(leg, Status.SCHEDULED if scheduled else Status.QUEUED, cause="accepted", now=now,
                               price_micros=r.price_micros, scheduled_at=at if scheduled else None,
                               valid_until=valid_until, delete_at=delete_at)
        assert moved is not None  # a pending row may enter any of these
        rows.append(moved)
    return rows, refund
