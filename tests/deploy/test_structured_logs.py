"""What Cloud Logging and the log-based metrics read from the functions' log lines (infra/log.py):
severity, the request id, the request's trace, and one `event` line per business event."""

from __future__ import annotations

import json
import logging

import flask
import pytest

from infra import log

PROJECT = "proj-123"


@pytest.fixture(autouse=True)
def _project(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_line_carries_severity_request_id_and_cloud_trace(capsys):
    rid = log.request_id.set("req_abc")
    header = log.trace_header.set("105445aa7843bc8bf206b12000100000/10;o=1")
    try:
        log.warning("slow provider", provider_ms=812)
    finally:
        log.trace_header.reset(header)
        log.request_id.reset(rid)
    (entry,) = lines(capsys)
    assert entry["severity"] == "WARNING" and entry["message"] == "slow provider"
    assert entry["request_id"] == "req_abc"
    assert entry["logging.googleapis.com/labels"] == {"request_id": "req_abc"}
    assert entry["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/105445aa7843bc8bf206b12000100000"
    assert entry["logging.googleapis.com/spanId"] == "000000000000000a"  # 10, as 16 hex digits
    assert entry["logging.googleapis.com/trace_sampled"] is True
    assert entry["provider_ms"] == 812


def test_w3c_traceparent_from_the_flask_request(capsys):
    app = flask.Flask("t")
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
    with app.test_request_context("/", headers=headers):
        log.info("accepted")
    (entry,) = lines(capsys)
    assert entry["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/0af7651916cd43dd8448eb211c80319c"
    assert entry["logging.googleapis.com/spanId"] == "b7ad6b7169203331"
    assert entry["logging.googleapis.com/trace_sampled"] is False


@pytest.mark.parametrize("header", ["", "not-a-trace", "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                                    "xyz/12;o=1"])
def test_no_trace_field_without_a_valid_header(capsys, header):
    token = log.trace_header.set(header)
    try:
        log.info("x")
    finally:
        log.trace_header.reset(token)
    (entry,) = lines(capsys)
    assert not any(k.startswith("logging.googleapis.com/trace") for k in entry), entry


def test_no_trace_field_without_a_project(capsys, monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    token = log.trace_header.set("105445aa7843bc8bf206b12000100000/1;o=1")
    try:
        log.info("x")
    finally:
        log.trace_header.reset(token)
    (entry,) = lines(capsys)
    assert "logging.googleapis.com/trace" not in entry


def test_metric_line_names_its_event_and_survives_a_higher_log_level(capsys):
    logger = logging.getLogger("mmsgate")
    level = logger.level
    logger.setLevel(logging.ERROR)  # LOG_LEVEL=ERROR must not drop what the metrics count
    try:
        log.info("dropped")
        log.metric("leg.accepted", tenant_id="tnt_1", count=3)
        log.metric("signature.invalid", reason="stale")
    finally:
        logger.setLevel(level)
    accepted, invalid = lines(capsys)
    assert accepted["event"] == "leg.accepted" and accepted["severity"] == "INFO"
    assert accepted["tenant_id"] == "tnt_1" and accepted["count"] == 3
    assert invalid["event"] == "signature.invalid" and invalid["severity"] == "WARNING"


def test_every_metric_event_has_a_severity_and_secrets_stay_out(capsys):
    assert set(log.METRIC_EVENTS) >= {"leg.accepted", "provider.rejected", "dispatch.ambiguous", "report.latency",
                                      "webhook.gave_up", "signature.invalid", "inbound.unknown_number"}
    log.metric("report.latency", latency_ms=1234.5, api_key="sk_live_x")
    (entry,) = lines(capsys)
    assert entry["latency_ms"] == 1234.5 and entry["api_key"] == "[redacted]"


def test_propagation_headers_carry_request_id_and_trace_to_the_next_function(capsys):
    rid = log.request_id.set("req_hop")
    header = log.trace_header.set("105445aa7843bc8bf206b12000100000/10;o=1")
    try:
        headers = log.propagation_headers()
    finally:
        log.trace_header.reset(header)
        log.request_id.reset(rid)
    assert headers["X-Request-Id"] == "req_hop"
    version, trace, span, flags = headers["traceparent"].split("-")
    assert (version, trace, flags) == ("00", "105445aa7843bc8bf206b12000100000", "01")
    assert len(span) == 16 and span != "0" * 16
    # The next function, receiving that header, logs under the same trace.
    app = flask.Flask("next")
    with app.test_request_context("/", headers=headers):
        log.info("dispatching")
    (entry,) = lines(capsys)
    assert entry["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/105445aa7843bc8bf206b12000100000"
    assert log.propagation_headers() == {}  # outside any request: nothing to carry
