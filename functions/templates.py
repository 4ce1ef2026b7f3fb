"""The template API: POST|GET /api/v1/templates, GET|PUT|DELETE /api/v1/templates/{id}, POST
/api/v1/templates/{id}/preview (shared/services/templating.py)."""

from __future__ import annotations

import re

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, meta, parse, serve
from shared.rules.errors import ApiError, ErrorCode
from shared.services import templating

_LIST = re.compile(r"^/api/v1/templates/?$")
_ONE = re.compile(r"^/api/v1/templates/([A-Za-z0-9_]{1,64})/?$")
_PREVIEW = re.compile(r"^/api/v1/templates/([A-Za-z0-9_]{1,64})/preview/?$")


@functions_framework.http
def templates(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, route, methods=("GET", "POST", "PUT", "DELETE"))


def _not_allowed(ctx: Context, allow: str) -> ApiError:
    return ApiError(ErrorCode.METHOD_NOT_ALLOWED, f"{ctx.request.method} is not allowed here", headers={"Allow": allow})


def route(ctx: Context) -> Reply:
    from shared.api import templates as shapes  # noqa: PLC0415 - pydantic, for the bodies of this function only

    path, method, tenant_id = ctx.request.path, ctx.request.method, ctx.tenant_id
    status = 200
    if _LIST.match(path):
        if method == "GET":
            body = templating.listing(runtime(), tenant_id, ctx.request.args.to_dict(flat=False))
            return Reply(200, {**body, "meta": meta(ctx.request_id)})
        if method != "POST":
            raise _not_allowed(ctx, "GET, POST")
        create, _ = parse(ctx.request, shapes.TemplateCreate)
        status, data = 201, templating.create(runtime(), tenant_id, create)
    elif match := _PREVIEW.match(path):
        if method != "POST":
            raise _not_allowed(ctx, "POST")
        values, _ = parse(ctx.request, shapes.TemplatePreview)
        data = templating.preview(runtime(), tenant_id, match[1], values)
    elif match := _ONE.match(path):
        if method == "GET":
            data = templating.get(runtime(), tenant_id, match[1], ctx.request.args.to_dict(flat=False))
        elif method == "PUT":
            edit, _ = parse(ctx.request, shapes.TemplateEdit)
            data = templating.edit(runtime(), tenant_id, match[1], edit)
        elif method == "DELETE":
            data = templating.archive(runtime(), tenant_id, match[1])
        else:
            raise _not_allowed(ctx, "DELETE, GET, PUT")
    else:
        raise ApiError(ErrorCode.NOT_FOUND, "No such resource")
    return Reply(status, {"data": data, "meta": meta(ctx.request_id)})
