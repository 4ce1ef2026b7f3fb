"""JSON log lines on stdout, which Cloud Logging reads as structured entries. Each line carries its
`severity`, the request id of the request that wrote it, and the request's trace
(`logging.googleapis.com/trace`, from the X-Cloud-Trace-Context or traceparent header) so Cloud Logging
groups every line of one request, and lines of the functions a request went through, under one trace.
Fields that look like secrets are never written.

`metric(event, **fields)` writes one line per business event with `"event": event`; the log-based
metrics in terraform/monitoring.tf count them (filter `jsonPayload.event="<event>"`), so the names in
METRIC_EVENTS are a contract with Terraform (tests/deploy/test_terraform_contract.py checks both sides).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from shared.services import observe as _observe

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# The incoming request's trace header (X-Cloud-Trace-Context or traceparent), when the caller sets it;
# otherwise the current Flask request's headers are read.
trace_header: contextvars.ContextVar[str] = contextvars.ContextVar("trace_header", default="")

_SECRET_HINTS = ("key", "secret", "token", "authorization", "signature", "password")

# Business events -> the severity their line is written at. terraform/monitoring.tf declares one
# log-based metric per event; a field named in a comment is what the metric reads.
METRIC_EVENTS: dict[str, int] = {
    "leg.accepted": logging.INFO,            # tenant_id, count: legs accepted by one request
    "batch.accepted": logging.INFO,          # tenant_id, count: recipients reserved by one batch request
    "provider.rejected": logging.WARNING,    # code: Telnyx error code of a synchronous refusal
    "dispatch.ambiguous": logging.WARNING,   # a send whose outcome at Telnyx is unknown
    "dispatch.reconciled": logging.INFO,     # lookup: what asking Telnyx about an ambiguous send found
    "report.latency": logging.INFO,          # latency_ms: provider send -> final delivery report
    "carrier.health": logging.WARNING,       # carrier, healthy, penalty, tripped (reason: logs only)
    "carrier.failover": logging.WARNING,     # source, target, message_id
    "webhook.gave_up": logging.WARNING,      # a customer webhook event abandoned after 24 h
    "signature.invalid": logging.WARNING,    # a Telnyx webhook with a bad or stale signature
    "inbound.unknown_number": logging.WARNING,  # a Telnyx event for a number no tenant owns
}

_TRACE_RE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d+))?(?:;o=([01]))?")
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _redact(fields: dict) -> dict:
    return {k: ("[redacted]" if any(h in k.lower() for h in _SECRET_HINTS) else v) for k, v in fields.items()}


def trace_fields(header: str, project: str) -> dict:
    """Cloud Logging's trace fields from an X-Cloud-Trace-Context (`TRACE/SPAN;o=1`) or W3C traceparent
    (`00-TRACE-SPAN-FLAGS`) header; empty when the header is absent or malformed, or no project is known."""
    header = (header or "").strip()
    if not header or not project:
        return {}
    m = _TRACEPARENT_RE.match(header)
    if m:
        trace, span, sampled = m.group(1), m.group(2), int(m.group(3), 16) & 1 == 1
    else:
        m = _TRACE_RE.match(header)
        if not m:
            return {}
        trace = m.group(1).lower()
        span = f"{int(m.group(2)):016x}" if m.group(2) and int(m.group(2)) < 2**64 else None
        sampled = m.group(3) == "1"
    if set(trace) == {"0"}:
        return {}
    out = {"logging.googleapis.com/trace": f"projects/{project}/traces/{trace}",
           "logging.googleapis.com/trace_sampled": sampled}
    if span and set(span) != {"0"}:
        out["logging.googleapis.com/spanId"] = span
    return out


def propagation_headers() -> dict[str, str]:
    """Headers that carry this request's id and trace to the next hop (a Cloud Tasks task this request
    creates), so the function the task reaches logs under the same request id (infra.web reads
    X-Request-Id) and the same trace: one request, followed across functions in Cloud Logging."""
    headers = {}
    rid = request_id.get()
    if rid:
        headers["X-Request-Id"] = rid
    fields = trace_fields(_current_trace_header(), "-")
    trace = fields.get("logging.googleapis.com/trace", "").rsplit("/", 1)[-1]
    if trace:
        flags = "01" if fields.get("logging.googleapis.com/trace_sampled") else "00"
        headers["traceparent"] = f"00-{trace}-{os.urandom(8).hex()}-{flags}"
    return headers


def _current_trace_header() -> str:
    header = trace_header.get()
    if header:
        return header
    flask = sys.modules.get("flask")  # only if the app already imported it: no import cost otherwise
    if flask is not None and flask.has_request_context():
        headers = flask.request.headers
        return headers.get("traceparent") or headers.get("X-Cloud-Trace-Context") or ""
    return ""


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "logger": record.name,
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
            entry["logging.googleapis.com/labels"] = {"request_id": rid}
        entry.update(trace_fields(_current_trace_header(), os.environ.get("GOOGLE_CLOUD_PROJECT", "")))
        entry.update(_redact(getattr(record, "fields", {})))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is at the time (test capture replaces it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
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


def info(message: str, **fields: object) -> None:
    _logger.info(message, extra={"fields": fields})


def warning(message: str, **fields: object) -> None:
    _logger.warning(message, extra={"fields": fields})


def error(message: str, exc_info: bool = False, **fields: object) -> None:
    _logger.error(message, exc_info=exc_info, extra={"fields": fields})


def metric(event: str, **fields: object) -> None:
    """One line for one business event, `"event": event` plus fields, at the event's severity. Written
    whatever LOG_LEVEL is: the log-based metrics count these lines, and a filtered one is a lost count.
    An event not in METRIC_EVENTS is still written (at WARNING), but no metric counts it."""
    level = METRIC_EVENTS.get(event, logging.WARNING)
    record = _logger.makeRecord(_logger.name, level, "(metric)", 0, event, (), None,
                                extra={"fields": {**fields, "event": event}})
    _logger.handle(record)


_TASK_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@contextlib.contextmanager
def task_context(headers: Any) -> Iterator[None]:
    """While a Cloud Tasks request is served: log under the request id and trace of the request that
    created the task (``propagation_headers``), so one request can be followed across functions."""
    supplied = headers.get("X-Request-Id", "") or ""
    rid = request_id.set(supplied if _TASK_REQUEST_ID.match(supplied) else "")
    trace = trace_header.set(headers.get("traceparent", "") or headers.get("X-Cloud-Trace-Context", "") or "")
    try:
        yield
    finally:
        request_id.reset(rid)
        trace_header.reset(trace)


# The domain's metric lines (shared.services.observe) go through ``metric`` above, whatever LOG_LEVEL is.
_observe.set_metric_sink(metric)
