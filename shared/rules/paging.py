"""The query of a paged list (opt-outs, templates): only ``limit`` and ``cursor``, a limit within bounds. Pure: the
services decide what a cursor means."""

from __future__ import annotations

from collections.abc import Mapping

from shared.rules.errors import ApiError, ErrorCode

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
LIST_PARAMS = frozenset({"limit", "cursor"})


def _invalid(field: str, issue: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, "The request is invalid", details=[{"field": field, "issue": issue}])


def page_query(args: Mapping[str, list[str]]) -> tuple[int, str | None]:
    """``(limit, raw cursor or None)``; 400 naming an unknown parameter or a limit outside 1-``MAX_LIMIT``."""
    unknown = sorted(set(args) - LIST_PARAMS)
    if unknown:
        raise _invalid(unknown[0], "unknown query parameter")
    limit = DEFAULT_LIMIT
    if args.get("limit"):
        raw = args["limit"][-1]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise _invalid("limit", f"an integer from 1 to {MAX_LIMIT}")
        limit = int(raw)
    cursor = args["cursor"][-1] if args.get("cursor") and args["cursor"][-1] else None
    return limit, cursor
