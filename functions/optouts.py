"""The opt-out API: GET /api/v1/opt-outs, GET|PUT|DELETE /api/v1/opt-outs/{number}, POST /api/v1/opt-outs/import."""

from __future__ import annotations

import re

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, meta, parse, serve
from shared.rules.errors import ApiError, ErrorCode
from shared.services import optouts as opt_out_list

PREFIX = re.compile(r"^/api/v1/opt-outs(?:/|$)")
_LIST = re.compile(r"^/api/v1/opt-outs/?$")
_IMPORT = re.compile(r"^/api/v1/opt-outs/import/?$")
_ONE = re.compile(r"^/api/v1/opt-outs/([^/]{1,64})/?$")
# 10,000 numbers of up to 16 characters, quoted, with separators and some room for formatting.
IMPORT_MAX_BYTES = 512 * 1024


@functions_framework.http
def optouts(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, route, methods=("GET", "PUT", "DELETE", "POST"))


def _not_allowed(ctx: Context, allow: str) -> ApiError:
    return ApiError(ErrorCode.METHOD_NOT_ALLOWED, f"{ctx.request.method} is not allowed here", headers={"Allow": allow})


def route(ctx: Context) -> Reply:
    path, method, tenant_id = ctx.request.path, ctx.request.method, ctx.tenant_id
    if _IMPORT.match(path):
        if method != "POST":
            raise _not_allowed(ctx, "POST")
        from shared.api.models import OptOutImport  # noqa: PLC0415 - pydantic, for this route only

        req, _ = parse(ctx.request, OptOutImport, max_bytes=IMPORT_MAX_BYTES)
        data = opt_out_list.import_numbers(runtime(), tenant_id, req)
        return Reply(200, {"data": data, "meta": meta(ctx.request_id)})
    if _LIST.match(path):
        if method != "GET":
            raise _not_allowed(ctx, "GET")
        body = opt_out_list.listing(runtime(), tenant_id, ctx.request.args.to_dict(flat=False))
        return Reply(200, {**body, "meta": meta(ctx.request_id)})
    if match := _ONE.match(path):
        status = 200
        if method == "GET":
            data = opt_out_list.get(runtime(), tenant_id, match[1])
        elif method == "PUT":
            status, data = opt_out_list.put(runtime(), tenant_id, match[1])
        elif method == "DELETE":
            data = opt_out_list.delete(runtime(), tenant_id, match[1])
        else:
            raise _not_allowed(ctx, "DELETE, GET, PUT")
        return Reply(status, {"data": data, "meta": meta(ctx.request_id)})
    raise ApiError(ErrorCode.NOT_FOUND, "No such resource")
