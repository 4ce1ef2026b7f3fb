"""The HTTP edge shared by the public functions: request ids, body limits, JSON parsing, API-key
authentication, and one error envelope for every 4xx and 5xx (never an HTML page or a traceback)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from infra import log
from shared.api.version import VERSION
from shared.ports import Caller
from shared.rules import idempotency as rules
from shared.rules.errors import ApiError, ErrorCode, unauthorized
from shared.rules.ids import new_request_id
from shared.rules.records import Tenant

if TYPE_CHECKING:
    from flask import Flask, Request
    from pydantic import BaseModel, ValidationError
    from werkzeug.exceptions import HTTPException

MAX_BODY_BYTES = 64 * 1024
# Our request bodies nest four levels at most; json.loads and pydantic recurse, so a body nested a few
# thousand levels deep would end in RecursionError (a 500) rather than a 400.
MAX_JSON_DEPTH = 32
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
M = TypeVar("M", bound="BaseModel")  # imported lazily at run time: the reads function never parses a body
P = TypeVar("P")


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    kept: bool = False  # already stored under the request's Idempotency-Key (by the accept's own commit)


@dataclass
class Context:
    request: Request  # what functions-framework hands us
    request_id: str
    tenant: Tenant | None = None
    caller: Caller | None = None  # defer_auth: the key, checked by the service's first round of reads

    @property
    def tenant_id(self) -> str:
        assert self.tenant is not None
        return self.tenant.id

    @property
    def who(self) -> Tenant | Caller:
        """The authenticated tenant, or the caller whose key the service checks itself (``defer_auth``)."""
        who = self.tenant or self.caller
        assert who is not None
        return who


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp() -> str:
    return now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meta(request_id: str) -> dict[str, str]:
    """The request's id, the answer's time and the version of mmsgate that answered (docs/releasing.md)."""
    return {"request_id": request_id, "timestamp": timestamp(), "version": VERSION}


def error_body(error: ApiError, request_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"code": error.code.value, "message": error.message}
    if error.details:
        payload["details"] = error.details
    return {"error": payload, "meta": meta(request_id)}


def serve(request: Request, service: Callable[[Context], Reply], *, methods: tuple[str, ...],
          authenticate: bool = True, defer_auth: bool = False) -> tuple[str, int, dict[str, str]]:
    """Run one request through ``service``; every outcome becomes JSON with the request id.

    ``defer_auth``: the service checks the API key itself, in its first round of reads (``ctx.caller``), so
    the key's document is read alongside the documents the request needs anyway. With an Idempotency-Key,
    ``idempotent`` checks it beside its claim of the key. Any request refused before its key was checked is
    checked then: an unknown key is always answered 401, whatever else is wrong with the request."""
    rid = request_id_of(request)
    token = log.request_id.set(rid)
    try:
        ctx = Context(request=request, request_id=rid)
        try:
            if request.method not in methods:
                raise ApiError(ErrorCode.METHOD_NOT_ALLOWED, f"{request.method} is not allowed here",
                               headers={"Allow": ", ".join(methods)})
            if authenticate and defer_auth:
                ctx.caller = _caller(request)
            elif authenticate:
                ctx.tenant = _authenticate(request)
            try:
                reply = service(ctx)
            finally:
                if ctx.caller is not None:
                    ctx.tenant = ctx.caller.authenticated
        except ApiError as error:
            exc = error
            if ctx.caller is not None and ctx.tenant is None and exc.code is not ErrorCode.UNAUTHORIZED:
                try:  # refused before the service checked the key: an unknown key is 401 first
                    ctx.tenant = _authenticate(request)
                except ApiError as unauthorized:
                    exc = unauthorized
            if exc.status >= 500:
                log.error("request failed", code=exc.code.value, path=request.path)
            reply = Reply(exc.status, error_body(exc, rid), exc.headers)
        except Exception:  # noqa: BLE001 - the envelope, never a traceback, reaches the caller
            log.error("unhandled error", exc_info=True, path=request.path)
            reply = Reply(500, error_body(ApiError(ErrorCode.INTERNAL, "Internal error"), rid))
        headers = {"Content-Type": "application/json", "X-Request-Id": rid, **(reply.headers or {})}
        log.info("request", method=request.method, path=request.path, status=reply.status,
                 tenant=ctx.tenant.id if ctx.tenant else None)
        return json.dumps(reply.body), reply.status, headers
    finally:
        log.request_id.reset(token)


def request_id_of(request: Request) -> str:
    """The caller's ``X-Request-Id`` if it is a sane one, else a new id."""
    supplied = request.headers.get("X-Request-Id", "")
    return supplied if _REQUEST_ID.fullmatch(supplied) else new_request_id()


def _caller(request: Request) -> Caller:
    from infra.runtime import runtime

    api_key = request.headers.get("X-API-Key", "")
    if not 0 < len(api_key) <= 200:
        raise unauthorized(api_key)
    return runtime().accounts.caller(api_key)


def _authenticate(request: Request) -> Tenant:
    from infra.runtime import runtime

    api_key = request.headers.get("X-API-Key", "")
    # No handler behind this looks at the balance (an accept reads it again, with its shards, in its first round).
    tenant = runtime().accounts.tenant_for_api_key(api_key, balance=False) if 0 < len(api_key) <= 200 else None
    if tenant is None or tenant.disabled:
        raise unauthorized(api_key)
    return tenant


def raw_body(request: Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"Request body is larger than {max_bytes} bytes")
    data = request.stream.read(max_bytes + 1) if length is None else request.get_data(cache=True)
    if len(data) > max_bytes:
        raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"Request body is larger than {max_bytes} bytes")
    return data


def parse(request: Request, model: type[M], *, max_bytes: int = MAX_BODY_BYTES) -> tuple[M, bytes]:
    """The request body as ``model``, and the raw bytes (idempotency hashes them). ``max_bytes``: the route's
    own body limit, where it needs more than the 64 KB every other route takes (the opt-out import)."""
    payload, data = _json_object(request, max_bytes)
    return _validated(model, payload), data


def parse_plain(request: Request, plain: Callable[[dict[str, Any]], P | None], model: Callable[[], type[M]]
                ) -> tuple[P | M, bytes]:
    """``parse``, where a body ``plain`` accepts needs no model (shared/api/plain_requests.py: pydantic is not even
    imported for the common bodies, which keeps it off the cold path); any other is validated by ``model()``."""
    payload, data = _json_object(request, MAX_BODY_BYTES)
    checked = plain(payload)
    return (checked if checked is not None else _validated(model(), payload)), data


def _validated(model: type[M], payload: dict[str, Any]) -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid",
                       details=validation_details(exc)) from None


def _json_object(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    mimetype = (request.mimetype or "").lower()
    if mimetype != "application/json":
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
    data = raw_body(request, max_bytes)
    if _nesting(data) > MAX_JSON_DEPTH:
        raise ApiError(ErrorCode.INVALID_JSON, f"Request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(ErrorCode.INVALID_JSON, "Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(ErrorCode.INVALID_JSON, "Request body must be a JSON object")
    return payload, data


_STRUCTURE = re.compile(rb'[\[\]{}"\\]')


def _nesting(data: bytes) -> int:
    """The deepest bracket nesting of a JSON text, outside strings (only an estimate for broken JSON, which
    json.loads refuses anyway). It runs before parsing, so no parser ever recurses that deep."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _STRUCTURE.finditer(data):
        at = match.start()
        if at == escaped_at:
            continue
        char = data[at:at + 1]
        if in_string:
            if char == b"\\":
                escaped_at = at + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """A pydantic ValidationError as the envelope's ``details``."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "body"
        issue = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            issue = "unknown field"
        details.append({"field": field.replace("from_", "from"), "issue": issue})
    return details


def idempotent(ctx: Context, raw: bytes, produce: Callable[[str | None], Reply], *, route: str) -> Reply:
    """Stripe-style ``Idempotency-Key`` (the rules: shared/rules/idempotency.py): the first answer is kept for
    24 h and replayed for the same key and body; another body is 422; a concurrent duplicate is 409. Rate
    limits (429) and our own failures (5xx) are not kept, so the caller's retry runs for real. ``produce``
    gets the record id: an accept keeps its answer there in the same commit that accepts (``Reply.kept``), so
    an accepted request is never released, whatever fails after its commit. ``route`` is the operation's
    canonical path (``/api/v1/messages/sms``), whatever spelling of it reached us."""
    from infra.runtime import runtime

    key = ctx.request.headers.get("Idempotency-Key")
    if key is None:
        return _reply_of(lambda: produce(None), ctx.request_id)
    rules.check_key(key)
    payload_hash = rules.payload_hash(raw)
    store = runtime().idempotency

    def begin(tenant_id: str) -> tuple[str, Any]:
        record = rules.record_id(tenant_id, route, key)
        return record, store.begin(record, payload_hash, now(), rules.LEASE_SECONDS, rules.TTL_SECONDS)

    caller = ctx.caller
    if ctx.tenant is None and caller is not None and caller.tenant_id is not None:
        # defer_auth: the key is checked in the same round as the claim (its record is the tenant's the key
        # names). A key that turns out unknown gets its 401, and a claim it made is released.
        tenant_id = caller.tenant_id
        tenant, (record_id, (state, record)) = runtime().concurrently(
            lambda: runtime().accounts.tenant_for_api_key(caller.api_key, balance=False), lambda: begin(tenant_id))
        if tenant is None or tenant.disabled or tenant.id != tenant_id:
            if state == rules.Claim.NEW:
                store.release(record_id)
            raise unauthorized(caller.api_key)
        ctx.tenant = caller.authenticated = tenant
    else:
        if ctx.tenant is None and caller is not None:  # a key that names no tenant, new to this instance
            ctx.tenant = caller.authenticated = _authenticate(ctx.request)
        record_id, (state, record) = begin(ctx.tenant_id)
    replay = rules.stored_answer(rules.Claim(state), record)
    if replay is not None:
        return Reply(replay.status, replay.body, replay.headers)
    try:
        reply = _reply_of(lambda: produce(record_id), ctx.request_id)
    except BaseException:
        store.release(record_id)
        raise
    if reply.kept:
        return reply
    if rules.keeps(reply.status):
        store.complete(record_id, reply.status, reply.body, reply.headers or {})
    else:
        store.release(record_id)
    return reply


def _reply_of(produce: Callable[[], Reply], request_id: str) -> Reply:
    try:
        return produce()
    except ApiError as exc:
        if exc.status >= 500:
            log.error("request failed", code=exc.code.value)
        return Reply(exc.status, error_body(exc, request_id), exc.headers)


# -- answers the Flask app gives before (or around) our handler -------------------------------------
# functions-framework serves each function as a Flask app: werkzeug answers a path its router cannot
# match (one whose decoded form holds a newline, say, or /robots.txt) and a crash outside ``serve`` itself,
# in HTML. These handlers make those answers the envelope too.
_HTTP_ERROR_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    414: ErrorCode.URI_TOO_LONG,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    431: ErrorCode.HEADERS_TOO_LARGE,
}
_CRASH_HEADERS = {"X-Google-Status": "crash"}  # what functions-framework's own 500 handler sets


def _flask_reply(error: ApiError, status: int, headers: dict[str, str]) -> tuple[str, int, dict[str, str]]:
    import flask

    rid = request_id_of(flask.request)
    all_headers = {"Content-Type": "application/json", "X-Request-Id": rid, **headers}
    return json.dumps(error_body(error, rid)), status, all_headers


def _http_exception(exc: HTTPException) -> tuple[str, int, dict[str, str]]:
    """A werkzeug HTTPException (404 from routing, 405, 413...) in the envelope, with its own status."""
    status = exc.code or 500
    code = _HTTP_ERROR_CODES.get(status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_REQUEST)
    allowed = getattr(exc, "valid_methods", None)  # a MethodNotAllowed carries the methods the route takes
    headers = {"Allow": ", ".join(allowed)} if allowed else {}
    return _flask_reply(ApiError(code, f"{status} {exc.name}", status=status), status, headers)


def _crash(exc: BaseException) -> tuple[str, int, dict[str, str]]:
    """An exception no handler caught: the envelope, never the traceback text."""
    import flask

    log.error("unhandled error", exc_info=True, path=flask.request.path)
    return _flask_reply(ApiError(ErrorCode.INTERNAL, "Internal error"), 500, _CRASH_HEADERS)


def _install_json_errors(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException

    if getattr(app, "_mmsgate_json_errors", False):
        return
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(500, _crash)  # replaces functions-framework's text/plain crash handler
    setattr(app, "_mmsgate_json_errors", True)  # noqa: B010 - our own mark on the app: installed once


def _on_app_context(app: Flask, **_extra: object) -> None:
    # A Flask app takes setup only before its first request; the first context pushed on it is the one
    # functions-framework pushes while building it.
    if not getattr(app, "_mmsgate_json_errors", False) and not getattr(app, "_got_first_request", True):
        _install_json_errors(app)


def json_errors() -> None:
    """Every answer of the Flask app serving this process's function is the envelope.

    functions-framework imports the function's module inside the app context of the app it is building,
    so that app is ``current_app`` now. Later apps in the same process (tests build one per function, and
    a module is imported only once) get the handlers when their first context is pushed."""
    import flask

    flask.appcontext_pushed.connect(_on_app_context, weak=False)
    if flask.has_app_context():
        _install_json_errors(flask.current_app._get_current_object())  # type: ignore[attr-defined]


json_errors()  # every public function imports this module; the private ones import it for this alone
