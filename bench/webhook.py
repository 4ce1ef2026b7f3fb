"""Webhook ingest: signed ``message.finalized`` reports POSTed straight to the webhook function, each for
its own leg in ``sent`` (so every report is applied, none is a duplicate): p50/p95/p99 one at a time,
then events per second (and latency) with 8 concurrent senders."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.harness import BenchError, BenchStack, Client, cpu_delta
from bench.stats import summary


def _signed(bench: BenchStack, legs: list[dict]) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for leg in legs:
        body = bench.finalized_event(leg)
        out.append((body, bench.signed_headers(body)))
    return out


def measure(bench: BenchStack, n_seq: int, n_conc: int, concurrency: int = 8, warm: int = 10, log=print) -> dict:
    bench.pause()
    bench.purge()
    template = bench.sent_legs(1, bench.tenant)[0]
    legs = bench.clone_sent_legs(template, warm + n_seq + n_conc)
    client = bench.client("webhook")
    outcomes: dict[str, int] = {}

    def post(c: Client, body: bytes, headers: dict[str, str]) -> float:
        status, raw, elapsed = c.request("POST", "/webhooks/telnyx", body, headers)
        if status != 200:
            raise BenchError(f"webhook answered {status}: {raw[:300]!r}")
        outcome = json.loads(raw).get("outcome", "?")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return elapsed

    for body, headers in _signed(bench, legs[:warm]):
        post(client, body, headers)
    seq = [post(client, body, headers) for body, headers in _signed(bench, legs[warm:warm + n_seq])]
    client.close()

    events = _signed(bench, legs[warm + n_seq:])
    lock = threading.Lock()
    conc: list[float] = []
    cursor = [0]

    def worker() -> None:
        c = bench.client("webhook")
        try:
            while True:
                with lock:
                    if cursor[0] >= len(events):
                        return
                    body, headers = events[cursor[0]]
                    cursor[0] += 1
                elapsed = post(c, body, headers)
                with lock:
                    conc.append(elapsed)
        finally:
            c.close()

    cpu0 = bench.cpu_seconds()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.monotonic() - t0
    cpu = cpu_delta(cpu0, bench.cpu_seconds(), len(conc), ("webhook", "firestore", "bench"))
    out = {
        "sequential_ms": summary(seq, 1000, 2),
        "sequential_per_s": round(len(seq) / sum(seq), 1) if seq else None,
        "concurrency": concurrency,
        "concurrent_ms": summary(conc, 1000, 2),
        "concurrent_per_s": round(len(conc) / wall, 1) if wall else None,
        "outcomes": outcomes,
        "cpu_ms_per_event": cpu,
    }
    log(f"  webhook p50 {out['sequential_ms']['median']} ms p99 {out['sequential_ms']['p99']} ms; "
        f"{out['concurrent_per_s']} events/s at c={concurrency} (p99 {out['concurrent_ms']['p99']} ms)")
    return out
