"""The messages already sent, as resources: GET /api/v1/messages (search), GET /api/v1/messages/{id},
GET /api/v1/messages/group/{group_id}, GET /api/v1/pricing/messaging; the cancels, DELETE /api/v1/messages/{id}
and DELETE /api/v1/messages/group/{group_id}; the redaction of a final message, POST
/api/v1/messages/{id}/redact. (A batch's progress and cancel: functions/batch.py; the opt-out API:
functions/optouts.py.)"""

import re

import functions_framework
from flask import Request

from infra.runtime import runtime
from infra.web import Context, Reply, meta, serve
from shared.rules.errors import ApiError, ErrorCode
from shared.services import canceling, reading, redaction

_GROUP = re.compile(r"^/api/v1/messages/group/([A-Za-z0-9_]{1,64})/?$")
_MESSAGE = re.compile(r"^/api/v1/messages/([A-Za-z0-9_]{1,64})/?$")
_PRICING = re.compile(r"^/api/v1/pricing/messaging/?$")
_SEARCH = re.compile(r"^/api/v1/messages$")
_REDACT = re.compile(r"^/api/v1/messages/([A-Za-z0-9_]{1,64})/redact/?$")


@functions_framework.http
def messages(request: Request) -> tuple[str, int, dict[str, str]]:
    return serve(request, _route, methods=("GET", "DELETE", "POST"))


def _route(ctx: Context) -> Reply:
    if ctx.request.method == "POST":
        return _redact(ctx)
    return _cancel(ctx) if ctx.request.method == "DELETE" else _reads(ctx)


def _redact(ctx: Context) -> Reply:
    if match := _REDACT.match(ctx.request.path):
        data = redaction.redact(runtime(), ctx.tenant_id, match[1])
        return Reply(200, {"data": data, "meta": meta(ctx.request_id)})
    if _GROUP.match(ctx.request.path) or _MESSAGE.match(ctx.request.path) or _PRICING.match(ctx.request.path):
        raise ApiError(ErrorCode.METHOD_NOT_ALLOWED, "POST is not allowed here",
                       headers={"Allow": "GET" if _PRICING.match(ctx.request.path) else "DELETE, GET"})
    raise ApiError(ErrorCode.NOT_FOUND, "No such resource")


def _cancel(ctx: Context) -> Reply:
    path = ctx.request.path
    if match := _GROUP.match(path):
        body = canceling.cancel_group(runtime(), ctx.tenant_id, match[1])
        return Reply(200, {**body, "meta": meta(ctx.request_id)})
    if match := _MESSAGE.match(path):
        data = canceling.cancel_message(runtime(), ctx.tenant_id, match[1])
        return Reply(200, {"data": data, "meta": meta(ctx.request_id)})
    if _PRICING.match(path):
        raise ApiError(ErrorCode.METHOD_NOT_ALLOWED, "DELETE is not allowed here", headers={"Allow": "GET"})
    raise ApiError(ErrorCode.NOT_FOUND, "No such resource")


def _reads(ctx: Context) -> Reply:
    path = ctx.request.path
    if _SEARCH.match(path):
        body = reading.search(runtime(), ctx.tenant_id, ctx.request.args.to_dict(flat=False))
        return Reply(200, {**body, "meta": meta(ctx.request_id)})
    if match := _GROUP.match(path):
        data = reading.group(runtime(), ctx.tenant_id, match[1])
    elif match := _MESSAGE.match(path):
        data = reading.message(runtime(), ctx.tenant_id, match[1])
    elif _PRICING.match(path):
        data = reading.pricing(runtime(), ctx.request.args.get("country"))
    else:
        raise ApiError(ErrorCode.NOT_FOUND, "No such resource")
    return Reply(200, {"data": data, "meta": meta(ctx.request_id)})
