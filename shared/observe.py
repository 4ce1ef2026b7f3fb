"""Log lines the domain writes through the standard library (``infra.log`` formats them as JSON for Cloud
Logging). ``metric`` lines carry an ``event`` field that Terraform's log-based metrics count."""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger("mmsgate")


def metric(event: str, **fields: Any) -> None:
    _log.info(event, extra={"fields": {"event": event, **fields}})


def log_error(message: str, **fields: Any) -> None:
    _log.error(message, extra={"fields": fields})


def log_warning(message: str, **fields: Any) -> None:
    _log.warning(message, extra={"fields": fields})
