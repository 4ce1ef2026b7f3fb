"""Throughput: single sends accepted per second by one send-function process at 1, 8 and 32 concurrent
keep-alive clients; and legs per second end to end (accept -> tasks emulator -> dispatch -> simulator ->
signed reports -> webhook -> ``delivered``).

Every loop is bounded: a fixed number of requests per level (and a time cap), a fixed batch of legs
(and a timeout).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.harness import BenchError, BenchStack, Client, cpu_delta
from bench.stats import summary


def _level(bench: BenchStack, clients: int, count: int, cap_s: float) -> dict:
    body = json.dumps(bench.single_body()).encode()
    headers = {"Content-Type": "application/json", **bench.tenant.headers}
    remaining = [count]
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + cap_s

    def worker() -> None:
        client = Client(bench.url("send"))
        try:
            while time.monotonic() < deadline:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                status, _, elapsed = client.request("POST", "/api/v1/messages/sms", body, headers)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(elapsed)
        finally:
            client.close()

    cpu0 = bench.cpu_seconds()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    wall = time.monotonic() - t0
    ok = statuses.get(200, 0)
    return {"accepted": ok, "wall_s": wall, "per_s": ok / wall if wall else 0.0,
            "errors": {str(k): v for k, v in statuses.items() if k != 200},
            "latency_ms": summary(latencies, 1000, 1),
            "cpu_ms_per_accept": cpu_delta(cpu0, bench.cpu_seconds(), ok, CPU_KEYS)}


# Whose CPU time is reported per unit of work (ms of user+system CPU, from /proc).
CPU_KEYS = ("send", "group", "dispatch", "webhook", "firestore", "tasks", "storage", "simulator", "bench")


def accept_throughput(bench: BenchStack, counts: dict[int, int], reps: int, cap_s: float, log=print) -> dict:
    bench.pause()
    bench.purge()
    _level(bench, 4, 8, cap_s)  # warm the connections' server threads
    out: dict[str, dict] = {}
    for clients, count in counts.items():
        runs = []
        for _ in range(reps):
            runs.append(_level(bench, clients, count, cap_s))
            bench.purge(["dispatch"])
        rates = [r["per_s"] for r in runs]
        middle = sorted(runs, key=lambda r: r["per_s"])[len(runs) // 2]
        out[str(clients)] = {
            "per_s": summary(rates, 1, 1),
            "requests_per_run": count,
            "errors": {k: sum(r["errors"].get(k, 0) for r in runs) for r in runs for k in r["errors"]},
            "latency_ms": middle["latency_ms"],
            "cpu_ms_per_accept": {k: v for k, v in middle["cpu_ms_per_accept"].items() if v},
        }
        log(f"  accept throughput c={clients:<3} {out[str(clients)]['per_s']['median']:6.1f} /s "
            f"(p50 {out[str(clients)]['latency_ms'].get('median')} ms, errors {out[str(clients)]['errors']})")
    bench.purge()
    return out


def legs_per_second(bench: BenchStack, legs: int, reps: int, timeout: float, log=print) -> dict:
    """Submit ``legs`` legs as group-of-20 requests, then wait until every one is ``delivered``."""
    bench.purge()
    bench.resume()
    group = Client(bench.url("group"))
    body = json.dumps(bench.group_body(20)).encode()
    runs = []
    try:
        for _ in range(reps):
            ids: list[str] = []
            groups: list[str] = []
            cpu0 = bench.cpu_seconds()
            t0 = time.monotonic()
            for _ in range(max(1, legs // 20)):
                tenant = bench.group_tenant()
                status, raw, _ = group.request("POST", "/api/v1/messages/group", body,
                                               {"Content-Type": "application/json", **tenant.headers})
                if status != 200:
                    raise BenchError(f"group send answered {status}: {raw[:300]!r}")
                answer = json.loads(raw)
                ids += [m["message_id"] for m in answer["messages"]]
                groups.append(answer["group_id"])
            submitted = time.monotonic() - t0
            bench.wait_count("group_id", groups, "delivered", len(ids), timeout)
            wall = time.monotonic() - t0
            cpu1 = bench.cpu_seconds()
            done = bench.get_legs(ids)
            created = [leg["created_at"] for leg in done.values()]
            delivered = [next(h["at"] for h in leg["history"] if h["to"] == "delivered") for leg in done.values()]
            span = (max(delivered) - min(created)).total_seconds()
            per_leg = [(d - c).total_seconds() for c, d in zip(created, delivered, strict=True)]
            cpu = {k: v for k, v in cpu_delta(cpu0, cpu1, len(ids), CPU_KEYS).items() if v}
            runs.append({"legs": len(ids), "span_s": span, "per_s": len(ids) / span if span else 0.0,
                         "submit_s": submitted, "wall_s": wall, "leg_latency_s": summary(per_leg, 1, 2),
                         "cpu_ms_per_leg": cpu})
            time.sleep(0.3)
    finally:
        group.close()
        bench.pause()
        bench.purge()
    out = {"legs_per_run": legs, "per_s": summary([r["per_s"] for r in runs], 1, 1),
           "submit_s": summary([r["submit_s"] for r in runs], 1, 2),
           "leg_latency_s": runs[len(runs) // 2]["leg_latency_s"],
           "cpu_ms_per_leg": runs[len(runs) // 2]["cpu_ms_per_leg"], "runs": runs}
    log(f"  legs end to end {out['per_s']['median']:.1f} legs/s (leg p50 {out['leg_latency_s']['median']} s)")
    return out
