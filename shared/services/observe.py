"""Log lines the domain writes. ``infra.log`` formats them as JSON for Cloud Logging and installs itself as
the sink of ``metric`` lines, which carry an ``event`` field that Terraform's log-based metrics count and
are written whatever LOG_LEVEL is. Without that sink (a bare unit test), they go to standard logging."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

_log = logging.getLogger("mmsgate")


def _stdlib_metric(event: str, **fields: Any) -> None:
    _log.info(event, extra={"fields": {"event": event, **fields}})


_sink: Callable[..., None] = _stdlib_metric


def set_metric_sink(sink: Callable[..., None]) -> None:
    global _sink
    _sink = sink


def metric(event: str, **fields: Any) -> None:
    _sink(event, **fields)


def log_error(message: str, **fields: Any) -> None:
    _log.error(message, extra={"fields": fields})


def log_warning(message: str, **fields: Any) -> None:
    _log.warning(message, extra={"fields": fields})
