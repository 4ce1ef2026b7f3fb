"""Batch sends, ``POST /api/v1/messages/batch``: the request, and the pure rules of its fan-out.

One payload to up to ``MAX_RECIPIENTS`` recipients, given as ``to`` (numbers) or ``recipients`` (objects with
their own metadata and client_ref). The accept answers 202 after writing the batch record; the rows are
written by chunk tasks of at most ``CHUNK`` recipients (``chunks``), each of which pre-inserts its rows as
``pending`` under ids derived from the batch id and the recipient (``leg_id``: a chunk task that runs twice
finds its rows and writes nothing twice) and applies the group gates. An optional ``sending_speed`` spreads
the legs' dispatch times evenly (``dispatch_offsets``): leg ``i`` of the batch is due ``i`` intervals after
the batch's start.

Not yet served: the function, its queue and Terraform, the reservation of the batch's cost and the
progress/cancel reads (see the issue 14 report).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared import ids
from shared.errors import ApiError, ErrorCode
from shared.models import ClientRef, Phone, _Message

MAX_RECIPIENTS = 10_000
CHUNK = 500  # recipients per chunk task: one commit of pending rows stays within Firestore's 500 writes
UNIT_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400}
CampaignRef = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class SendingSpeed(BaseModel):
    """At most ``amount`` legs handed to the provider per ``time_unit`` (Infobip's sendingSpeedLimit)."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(ge=1, le=1_000_000, strict=True)
    time_unit: Literal["minute", "hour", "day"]

    @property
    def interval_seconds(self) -> float:
        return UNIT_SECONDS[self.time_unit] / self.amount


class BatchRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Phone
    metadata: dict[str, str] | None = None
    client_ref: ClientRef | None = None


class BatchRequest(_Message):
    """The group payload, to ``to`` or ``recipients`` (one of them), with an optional speed and campaign."""

    to: list[Phone] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    recipients: list[BatchRecipient] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    sending_speed: SendingSpeed | None = None
    campaign_ref: CampaignRef | None = None

    @model_validator(mode="after")
    def _one_list(self):
        if (self.to is None) == (self.recipients is None):
            raise ValueError("give the recipients as either to or recipients (one of them)")
        return self

    def all_recipients(self) -> list[BatchRecipient]:
        if self.recipients is not None:
            return list(self.recipients)
        return [BatchRecipient(to=number) for number in self.to or []]


def check_duplicates(recipients: Iterable[BatchRecipient], field: str = "recipients") -> None:
    """A number given twice is refused before anything is written (as in a group): which of the two rows would
    carry which metadata is not for us to guess. A valid number has one E.164 spelling (shared/phone.py
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


def leg_id(batch_id: str, to: str) -> str:
    """The row of ``to`` in a batch, the same on every run of its chunk task."""
    return ids.leg_message_id(f"batch:{batch_id}:{to}")


def chunks(total: int, size: int = CHUNK) -> list[range]:
    """The recipient index ranges of the chunk tasks, in order."""
    if total < 0 or size < 1:
        raise ValueError("a batch has 0 or more recipients and chunks of at least one")
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


def chunk_task_name(batch_id: str, index: int) -> str:
    """Cloud Tasks deduplicates by name: a re-sent fan-out creates each chunk task once."""
    return ids.task_name(f"batch-chunk:{batch_id}:{index}")


def dispatch_offsets(count: int, speed: SendingSpeed | None) -> list[dt.timedelta]:
    """How long after the batch's start each leg (by its index in the batch) may be handed to the provider:
    evenly ``interval`` apart at the given speed, all at once without one."""
    if speed is None:
        return [dt.timedelta(0)] * count
    step = dt.timedelta(seconds=speed.interval_seconds)
    return [i * step for i in range(count)]


def progress(statuses: Iterable[str]) -> dict[str, object]:
    """``GET /api/v1/batches/{id}``'s counts: by status, how many are final, and the total."""
    from shared.status import Status, is_final

    by_status: dict[str, int] = {}
    final = 0
    total = 0
    for status in statuses:
        total += 1
        by_status[status] = by_status.get(status, 0) + 1
        final += is_final(Status(status), False)
    return {"total": total, "final": final, "by_status": dict(sorted(by_status.items()))}
