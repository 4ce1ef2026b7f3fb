"""The envelope every answer shares: ``meta`` on success and error bodies, and the error body itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.api.version import VERSION
from shared.rules.errors import ApiError


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meta(request_id: str, now: dt.datetime) -> dict[str, str]:
    """The request's id, the answer's time and the version of mmsgate that answered (docs/releasing.md)."""
    return {"request_id": request_id, "timestamp": timestamp(now), "version": VERSION}


def error_body(error: ApiError, request_id: str, now: dt.datetime) -> dict[str, Any]:
    payload: dict[str, Any] = {"code": error.code.value, "message": error.message}
    if error.details:
        payload["details"] = error.details
    return {"error": payload, "meta": meta(request_id, now)}
