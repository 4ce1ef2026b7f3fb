"""JSON log lines on stdout (Cloud Logging reads them as structured entries), each carrying the
request id of the request that wrote it. Fields that look like secrets are never written."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import sys

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_SECRET_HINTS = ("key", "secret", "token", "authorization", "signature", "password")


def _redact(fields: dict) -> dict:
    return {k: ("[redacted]" if any(h in k.lower() for h in _SECRET_HINTS) else v) for k, v in fields.items()}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "logger": record.name,
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
            entry["logging.googleapis.com/labels"] = {"request_id": rid}
        entry.update(_redact(getattr(record, "fields", {})))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (test capture replaces it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _configure() -> logging.Logger:
    logger = logging.getLogger("mmsgate")
    if not logger.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(_JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
        logger.propagate = False
    return logger


_logger = _configure()


def info(message: str, **fields) -> None:
    _logger.info(message, extra={"fields": fields})


def warning(message: str, **fields) -> None:
    _logger.warning(message, extra={"fields": fields})


def error(message: str, exc_info: bool = False, **fields) -> None:
    _logger.error(message, exc_info=exc_info, extra={"fields": fields})
