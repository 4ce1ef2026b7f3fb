"""Smoke test of the benchmark harness: ``python -m bench.run --smoke`` (``--quick``'s sections on the least
that makes a figure) completes and writes valid JSON with every section. No timing is asserted (figures depend
on the machine; see bench/README.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("machine", "config", "cold_start", "roundtrips", "accept_latency", "throughput", "webhook", "e2e", "memory",
            "targets")

# The harness starts its own stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack


def test_quick_bench_completes_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["mode"] == "smoke"
    for section in SECTIONS:
        assert section in results, section
    assert set(results["cold_start"]["functions"]) >= {"send", "group", "messages", "dispatch", "webhook"}
    for name, figures in results["cold_start"]["functions"].items():
        assert {"function_ms", "floor_ms", "ratio"} <= set(figures), name
    assert {"single", "group20", "floor", "group20_over_single", "single_over_floor"} <= set(results["accept_latency"])
    assert {"1", "8", "32"} <= set(results["throughput"]["accept"])
    assert "per_s" in results["throughput"]["legs"]
    assert {"sequential_ms", "concurrent_per_s"} <= set(results["webhook"])
    assert results["memory"] and all("worker_peak_mib" in m for m in results["memory"].values())
    assert results["targets"] and all({"target", "value", "met"} <= set(t) for t in results["targets"])
    assert "| function | cold start | floor | ratio |" in proc.stdout  # the table was printed
