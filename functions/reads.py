"""GET /api/v1/messages (search), GET /api/v1/messages/{id}, GET /api/v1/messages/group/{group_id},
GET /api/v1/pricing/messaging; the cancels, DELETE /api/v1/messages/{id} and DELETE
/api/v1/messages/group/{group_id}; the redaction of a final message, POST /api/v1/messages/{id}/redact; a
batch's progress and its cancel, GET and DELETE /api/v1/batches/{id}; and the opt-out API, /api/v1/opt-outs...
(functions/optouts.py)."""

import re

import functions_framework

from infra.runtime import runtime
from infra.web import Reply, meta, serve
from shared.rules.errors import ApiError, ErrorCode
from shared.services import canceling, reading, redaction

_GROUP = re.compile(r"^/api/v1/messages/group/([A-Za-z0-9_]{1,64})/?$")
_MESSAGE = re.compile(r"^/api/v1/messages/([A-Za-z0-9_]{1,64})/?$")
_PRICING = re.compile(r"^/api/v1/pricing/messaging/?$")
_SEARCH = re.compile(r"^/api/v1/messages$")
_REDACT = re.compile(r"^/api/v1/messages/([A-Za-z0-9_]{1,64})/redact/?$")
_BATCH = re.compile(r"^/api/v1/batches/([A-Za-z0-9_]{1,64})/?$")


@functions_framework.http
def reads(request):
    return serve(request, _route, methods=("GET", "DELETE", "POST", "PUT"))


def _route(ctx) -> Reply:
    if ctx.request.path.startswith("/api/v1/opt-outs"):
        from functions import optouts  # noqa: PLC0415 - the opt-out API (functions/optouts.py)

        return optouts.route(ctx)
    if ctx.request.path.startswith("/api/v1/batches"):
        return _batch(ctx)
    if ctx.request.method == "PUT":
        allow = "GET" if _PRICING.match(ctx.request.path) else "DELETE, GET"
        raise ApiError(ErrorCode.METHOD_NOT_ALLOWED, "PUT is not allowed here", headers={"Allow": allow})
    if ctx.request.method == "POST":
        return _redact(ctx)
    return _cancel(ctx) if ctx.request.method == "DELETE" else _reads(ctx)


def _batch(ctx) -> Reply:
    from shared.services import batch_sending  # noqa: PLC0415 - the batch reads only

    match = _BATCH.match(ctx.request.path)
    if match is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No such resource")
    if ctx.request.method == "GET":
        return Reply(200, {"data": batch_sending.batch_progress(runtime(), ctx.tenant_id, match[1]),
                           "meta": meta(ctx.request_id)})
    if ctx.request.method == "DELETE":
        return Reply(202, {"data": batch_sending.cancel_batch(runtime(), ctx.tenant_id, match[1]),
                           "meta": meta(ctx.request_id)})
    raise ApiError(ErrorCode.METHOD_NOT_ALLOWED, f"{ctx.request.method} is not allowed here",
                   headers={"Allow": "DELETE, GET"})


def _redact(ctx) -> Reply:
    if match := _REDACT.match(ctx.request.path):
        data = redaction.redact(runtime(), ctx.tenant_id, match[1])
        return Reply(200, {"data": data, "meta": meta(ctx.request_id)})
    if _GROUP.match(ctx.request.path) or _MESSAGE.match(ctx.request.path) or _PRICING.match(ctx.request.path):
        raise ApiError(ErrorCode.METHOD_NOT_ALLOWED, "POST is not allowed here",
                       headers={"Allow": "GET" if _PRICING.match(ctx.request.path) else "DELETE, GET"})
    raise ApiError(ErrorCode.NOT_FOUND, "No such resource")


def _cancel(ctx) -> Reply:
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


def _reads(ctx) -> Reply:
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
