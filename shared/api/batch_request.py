"""The batch send's request body (``POST /api/v1/messages/batch``): pydantic, loaded by the batch route only."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from shared.api.models import MAX_METADATA_KEYS, ClientRef, Personalisation, Phone, _Message, check_metadata
from shared.rules.batching import MAX_RECIPIENTS

# A chunk document holds CHUNK recipients' own fields within Firestore's 1 MiB (shared/rules/batching.py).
MAX_RECIPIENT_BYTES = 2_048
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
    personalisation: Personalisation | None = None  # this recipient's values (over the request's own)

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata(value)

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        # Every recipient's own fields are stored in its chunk document (1 MiB for CHUNK recipients).
        size = len(self.client_ref or "") + sum(len(k) + len(v) for k, v in (self.metadata or {}).items())
        size += sum(len(k) + len(v) for k, v in (self.personalisation or {}).items())
        if size > MAX_RECIPIENT_BYTES:
            raise ValueError(f"a recipient's metadata, client_ref and personalisation may hold at most "
                             f"{MAX_RECIPIENT_BYTES} characters together")
        return self


class BatchRequest(_Message):
    """The group payload, to ``to`` or ``recipients`` (one of them), with an optional speed and campaign."""

    to: list[Phone] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    recipients: list[BatchRecipient] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    sending_speed: SendingSpeed | None = None
    campaign_ref: CampaignRef | None = None

    @model_validator(mode="after")
    def _one_list(self) -> Self:
        if (self.to is None) == (self.recipients is None):
            raise ValueError("give the recipients as either to or recipients (one of them)")
        shared_keys = set(self.metadata or {})
        for i, r in enumerate(self.recipients or []):
            if r.metadata and len(shared_keys | set(r.metadata)) > MAX_METADATA_KEYS:
                raise ValueError(f"recipients[{i}].metadata and metadata together have more than "
                                 f"{MAX_METADATA_KEYS} keys")
            if r.personalisation is not None and self.template_id is None:
                raise ValueError(f"recipients[{i}].personalisation goes with template_id")
        return self

    def all_recipients(self) -> list[BatchRecipient]:
        if self.recipients is not None:
            return list(self.recipients)
        return [BatchRecipient(to=number) for number in self.to or []]
