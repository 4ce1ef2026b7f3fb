"""Request bodies of the template API (``/api/v1/templates``): pydantic, loaded by the templates function only."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.api.models import MAX_MEDIA, Body, Personalisation, Phone, Subject, Url, _unicode
from shared.rules.templates import MAX_NAME

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME), AfterValidator(_unicode)]


class TemplateCreate(BaseModel):
    """POST /api/v1/templates: a body with ((placeholders)), optional subject and media (as a send takes them)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    body: Body | None = None
    subject: Subject | None = None
    media_urls: list[Url] | None = Field(default=None, max_length=MAX_MEDIA)

    @model_validator(mode="after")
    def _content(self) -> Self:
        if not self.body and not self.media_urls:
            raise ValueError("at least one of body or media_urls is required")
        return self


class TemplateEdit(BaseModel):
    """PUT /api/v1/templates/{id}: the next version. A field left out keeps the latest version's value; ``null``
    clears an optional one (subject, media_urls)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    body: Body | None = None
    subject: Subject | None = None
    media_urls: list[Url] | None = Field(default=None, max_length=MAX_MEDIA)


class TemplatePreview(BaseModel):
    """POST /api/v1/templates/{id}/preview: the values, and optionally the recipient whose price to quote."""

    model_config = ConfigDict(extra="forbid")

    personalisation: Personalisation = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1, strict=True)
    to: Phone | None = None
