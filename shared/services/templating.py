"""Templates with personalisation (GOV.UK Notify's model): the template API, and a send's template resolved.

``/api/v1/templates``: create, list, read (any version), edit (a new version; the old ones stay readable),
archive (``DELETE``: sends refuse it, its versions stay readable for the messages that used it), and preview
(the rendered body, subject, encoding, segments and, for a recipient, the price a send would charge).

A send that names ``template_id`` (single, group, batch) has its body, subject and media taken from the template's
latest version (or ``template_version``), rendered with ``personalisation`` (a batch: each recipient's own over
the request's) before anything is charged or stored: a missing value is a 400 naming it. The message records
the template's id and version. Rules: shared/rules/templates.py.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from shared.ports import Contended
from shared.rules import ids
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.legs import iso
from shared.rules.paging import page_query
from shared.rules.segments import MMS_SEGMENTS, count_segments
from shared.rules.ssrf import UrlRejected, check_url, media_url_policy, media_url_problem
from shared.rules.templates import (
    MissingPersonalisation,
    Rendered,
    Template,
    TemplateProblem,
    render_all,
    used_values,
)

if TYPE_CHECKING:
    from shared.api.batch_request import BatchRequest
    from shared.api.models import GroupRequest, SendRequest
    from shared.api.templates import TemplateCreate, TemplateEdit, TemplatePreview
    from shared.ports import Runtime

R = TypeVar("R", "SendRequest", "GroupRequest", "BatchRequest")

# The send's limits (shared/api/models.py), repeated so this module does not import pydantic on a send's plain path.
MAX_BODY = 1600
MAX_SUBJECT = 64
MAX_RECIPIENT_BYTES = 2_048  # shared/api/batch_request.py: a recipient's own fields in its chunk document
_ID = re.compile(r"^tpl_[a-z2-7]{1,60}$")


def view(template: Template) -> dict[str, Any]:
    return {"id": template.id, "name": template.name, "version": template.version, "body": template.body,
            "subject": template.subject, "media_urls": list(template.media_urls),
            "placeholders": template.placeholders, "archived": template.archived,
            "created_at": iso(template.created_at), "updated_at": iso(template.updated_at),
            "archived_at": iso(template.archived_at)}


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid", details=[{"field": field, "issue": issue}])


def _busy() -> ApiError:
    return ApiError(ErrorCode.RATE_LIMITED, "Too many concurrent edits of this template; retry shortly",
                    headers={"Retry-After": "1"})


def _not_found() -> ApiError:
    # Another tenant's template is indistinguishable from a missing one.
    return ApiError(ErrorCode.NOT_FOUND, "No template with that id")


def _check_media(rt: Runtime, urls: Sequence[str]) -> None:
    """The media URLs a send would check, checked when the template is saved (and again by each send)."""
    s = rt.settings
    policy = media_url_policy(s.media_bucket, s.media_allowed_hosts, s.media_trusted_origins)
    for i, url in enumerate(urls):
        try:
            check_url(url, policy, rt.resolver)
        except UrlRejected as exc:
            field = f"media_urls[{i}]"
            problem = media_url_problem(field, url, exc.reason)
            raise ApiError(ErrorCode.MEDIA_URL_REJECTED, problem,
                           details=[{"field": field, "issue": problem}]) from None


def create(rt: Runtime, tenant_id: str, req: TemplateCreate) -> dict[str, Any]:
    urls = tuple(dict.fromkeys(req.media_urls or ()))
    _check_media(rt, urls)
    now = rt.now()
    template = Template(id=ids.new_template_id(), tenant_id=tenant_id, version=1, name=req.name, body=req.body,
                        subject=req.subject, media_urls=urls, created_at=now, updated_at=now)
    return view(rt.templates.create(template))


def _version_arg(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise _invalid("version", "a whole number from 1")
    return int(raw)


def get(rt: Runtime, tenant_id: str, template_id: str, args: Mapping[str, list[str]]) -> dict[str, Any]:
    unknown = sorted(set(args) - {"version"})
    if unknown:
        raise _invalid(unknown[0], "unknown query parameter")
    version = _version_arg(args["version"][-1] if args.get("version") else None)
    template = rt.templates.get(tenant_id, template_id, version) if _ID.match(template_id) else None
    if template is None:
        raise _not_found()
    return view(template)


def listing(rt: Runtime, tenant_id: str, args: Mapping[str, list[str]]) -> dict[str, Any]:
    """``GET /api/v1/templates``: a page of the tenant's templates (latest versions, archived ones marked) in id
    order, and the cursor of the next (the last id of the page: it can only move within the caller's own)."""
    limit, after = page_query(args)
    if after is not None and not _ID.match(after):
        raise ApiError(ErrorCode.INVALID_CURSOR, "The cursor is not one this list handed out",
                       details=[{"field": "cursor", "issue": "use next_cursor from the previous page as it is"}])
    found = rt.templates.list(tenant_id, after, limit + 1)
    page, more = found[:limit], len(found) > limit
    return {"data": [view(t) for t in page],
            "pagination": {"limit": limit, "has_more": more, "next_cursor": page[-1].id if more else None}}


def edit(rt: Runtime, tenant_id: str, template_id: str, req: TemplateEdit) -> dict[str, Any]:
    """``PUT``: the next version, from the fields given over the latest version's. An archived template is not
    edited (404, as a send would not find it)."""
    given = req.model_fields_set
    if not given:
        raise _invalid("body", "give at least one of name, body, subject, media_urls")
    if "name" in given and req.name is None:
        raise _invalid("name", "cannot be null")
    if "media_urls" in given and req.media_urls:
        _check_media(rt, req.media_urls)
    now = rt.now()

    def next_version(latest: Template) -> Template:
        if latest.archived:
            return latest
        changes: dict[str, Any] = {k: getattr(req, k) for k in ("name", "body", "subject") if k in given}
        if "media_urls" in given:
            changes["media_urls"] = tuple(dict.fromkeys(req.media_urls or ()))
        return dataclasses.replace(latest, **changes, version=latest.version + 1, updated_at=now)

    if not _ID.match(template_id):
        raise _not_found()
    # the content rule (body or media) is checked on the version it would make, before it is written
    current = rt.templates.get(tenant_id, template_id)
    if current is None or current.archived:
        raise _not_found()
    candidate = next_version(current)
    if not candidate.body and not candidate.media_urls:
        raise _invalid("body", "a template needs a body or media_urls")
    try:
        saved = rt.templates.update(tenant_id, template_id, next_version)
    except Contended:
        raise _busy() from None
    if saved is None or saved.archived:
        raise _not_found()
    return view(saved)


def archive(rt: Runtime, tenant_id: str, template_id: str) -> dict[str, Any]:
    try:
        template = rt.templates.archive(tenant_id, template_id, rt.now()) if _ID.match(template_id) else None
    except Contended:
        raise _busy() from None
    if template is None:
        raise _not_found()
    return view(template)


def _rendered(template: Template, values: Mapping[str, str], field: str = "personalisation") -> Rendered:
    try:
        return render_all(template.body, template.subject, values, max_body=MAX_BODY, max_subject=MAX_SUBJECT)
    except MissingPersonalisation as exc:
        raise ApiError(ErrorCode.MISSING_PERSONALISATION, str(exc),
                       details=[{"field": f"{field}.{name}", "issue": "missing"} for name in exc.names]) from None
    except TemplateProblem as exc:
        issue_field = exc.field.replace("personalisation", field, 1)
        raise _invalid(issue_field, exc.issue) from None


def counts(template: Template, body: str | None) -> tuple[str, str, int]:
    """(channel, encoding, segments) of a message made from the template: media makes it an MMS (one message)."""
    channel = "mms" if template.media_urls else "sms"
    encoding, segments = count_segments(body or "")
    return channel, encoding, MMS_SEGMENTS if channel == "mms" else segments


def preview(rt: Runtime, tenant_id: str, template_id: str, req: TemplatePreview) -> dict[str, Any]:
    """The message a send with these values would make; with ``to``, its price as the send would charge it."""
    template = rt.templates.get(tenant_id, template_id, req.version) if _ID.match(template_id) else None
    if template is None:
        raise _not_found()
    out = _rendered(template, req.personalisation)
    channel, encoding, segments = counts(template, out.body)
    price = None
    if req.to is not None:
        from shared.rules import gates  # noqa: PLC0415 - phonenumbers: only a preview that quotes a price

        number = gates.parse(req.to)
        if number is None:
            raise ApiError(ErrorCode.INVALID_PHONE_NUMBER, gates.invalid_number_message(req.to, "to"),
                           details=[{"field": "to", "issue": gates.invalid_number_message(req.to, "to")}])
        if channel == "mms" and not number[2]:
            raise ApiError(ErrorCode.MMS_NANP_ONLY, details=[{"field": "to", "issue": "not a NANP number"}])
        rates = rt.accounts.get_rates(gates.country(number))
        micros = rates.price(channel, segments) if rates else None
        if micros is None:
            raise ApiError(ErrorCode.PRICE_UNAVAILABLE, details=[{"field": "to", "issue": "no price for it"}])
        price = {"amount": f"{micros / 1_000_000:.4f}", "currency": "USD"}
    return {"template_id": template.id, "version": template.version, "body": out.body, "subject": out.subject,
            "media_urls": list(template.media_urls), "channel": channel, "encoding": encoding, "segments": segments,
            "price": price}


def usable(rt: Runtime, tenant_id: str, template_id: str, version: int | None) -> Template:
    """The template a send names, or a 400 naming ``template_id``: unknown, another tenant's, or archived."""
    template = rt.templates.get(tenant_id, template_id, version) if _ID.match(template_id) else None
    if template is None or template.archived:
        issue = "archived" if template is not None else (
            f"no version {version} of this template" if version is not None and rt.templates.get(
                tenant_id, template_id) is not None else "no such template")
        raise ApiError(ErrorCode.TEMPLATE_NOT_FOUND, details=[{"field": "template_id", "issue": issue}])
    return template


def apply(rt: Runtime, tenant_id: str, req: R) -> R:
    """A single or group send's request with the template's content rendered in (unchanged without a template).
    Every error is raised before anything is stored or charged."""
    if req.template_id is None:
        return req
    template = usable(rt, tenant_id, req.template_id, req.template_version)
    out = _rendered(template, req.personalisation or {})
    return req.model_copy(update={"body": out.body, "subject": out.subject,
                                  "media_urls": list(template.media_urls) or None,
                                  "template_version": template.version})


def apply_batch(rt: Runtime, tenant_id: str, req: BatchRequest
                ) -> tuple[BatchRequest, list[tuple[dict[str, str], int]] | None]:
    """A batch's request with the template in, and each recipient's values with the segments of its own text
    (None: every recipient has the same text, rendered into the request). Every recipient is rendered here, so a
    value missing for any of them is a 400 naming ``recipients[i].personalisation.<name>`` before anything is
    written."""
    if req.template_id is None:
        return req, None
    template = usable(rt, tenant_id, req.template_id, req.template_version)
    shared = dict(req.personalisation or {})
    update: dict[str, Any] = {"media_urls": list(template.media_urls) or None, "template_version": template.version}
    if req.recipients is None or not any(r.personalisation for r in req.recipients):
        out = _rendered(template, shared)
        return req.model_copy(update={**update, "body": out.body, "subject": out.subject}), None
    per: list[tuple[dict[str, str], int]] = []
    names = template.placeholders
    for i, r in enumerate(req.recipients):
        values = {**shared, **(r.personalisation or {})}
        out = _rendered(template, values, f"recipients[{i}].personalisation")
        kept = used_values(values, names)
        # what the recipient's chunk document holds for it stays within its share of the 1 MiB document
        size = sum(len(k) + len(v) for k, v in kept.items()) + len(r.client_ref or "") + sum(
            len(k) + len(v) for k, v in (r.metadata or {}).items())
        if size > MAX_RECIPIENT_BYTES:
            raise _invalid(f"recipients[{i}].personalisation", f"the values this recipient uses (its own and the "
                           f"request's), its metadata and client_ref hold {size} characters; at most "
                           f"{MAX_RECIPIENT_BYTES} together")
        per.append((kept, counts(template, out.body)[2]))
    # the rows are rendered from the template's text by the chunk tasks (shared/rules/batching.chunk_rows)
    return req.model_copy(update={**update, "body": template.body, "subject": template.subject}), per
