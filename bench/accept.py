"""Accept latency, warm: a single send, a group of 20, and the floor (one Firestore batch commit plus one
Cloud Tasks ``create_task`` with the same Python clients, from the bench process, on the same emulators).

The functions are called directly (not through the gateway) over one keep-alive connection each, one
request at a time. Both queues are paused while this runs, so no dispatch work competes for the CPU;
the tasks created are purged afterwards. Floor, single and group runs are interleaved in rounds so any
drift in the machine's load hits all three alike.
"""

from __future__ import annotations

import copy
import json
import time

from bench.harness import BenchError, BenchStack
from bench.stats import ratio, summary

CPU_KEYS = ("send", "group", "firestore", "tasks", "storage", "bench")


class Floor:
    """One leg-sized batch commit + one create_task, exactly as the app builds them."""

    def __init__(self, bench: BenchStack, template: dict):
        from google.cloud import tasks_v2

        from infra import collections as C

        self.tasks_v2 = tasks_v2
        self.bench = bench
        self.db = bench.store.db
        self.messages = self.db.collection(C.MESSAGES)
        self.template = template
        self.queue = bench.stack.queue_paths["dispatch"]
        self.url = bench.stack.function_env()["DISPATCH_URL"]
        self.client = bench.tasks()

    def once(self) -> float:
        from shared import ids

        leg = copy.copy(self.template)
        leg["id"] = ids.new_message_id()
        leg["leg_key"] = f"single:{leg['id']}"
        task = self.tasks_v2.Task(
            name=f"{self.queue}/tasks/{ids.task_name(leg['leg_key'])}",
            http_request=self.tasks_v2.HttpRequest(
                http_method=self.tasks_v2.HttpMethod.POST, url=self.url,
                headers={"Content-Type": "application/json"},
                body=json.dumps({"message_id": leg["id"]}).encode()))
        t0 = time.perf_counter()
        batch = self.db.batch()
        batch.create(self.messages.document(leg["id"]), leg)
        batch.commit()
        self.client.create_task(parent=self.queue, task=task)
        return time.perf_counter() - t0


def measure(bench: BenchStack, n: int, n_group: int, rounds: int, warm: int = 10, log=print) -> dict:
    bench.pause()
    bench.purge()
    single = bench.client("send", bench.tenant)
    group = bench.client("group")
    single_body = json.dumps(bench.single_body()).encode()
    group_body = json.dumps(bench.group_body(20)).encode()
    json_headers = {"Content-Type": "application/json"}

    def send_once() -> float:
        status, body, elapsed = single.request("POST", "/api/v1/messages/sms", single_body, json_headers)
        if status != 200:
            raise BenchError(f"single send answered {status}: {body[:300]!r}")
        return elapsed

    def group_once() -> float:
        tenant = bench.group_tenant()
        status, body, elapsed = group.request("POST", "/api/v1/messages/group", group_body,
                                              {**json_headers, **tenant.headers})
        if status != 200:
            raise BenchError(f"group send answered {status}: {body[:300]!r}")
        return elapsed

    # Warm every path (first requests build clients, import lazily, warm the emulators' JIT).
    status, body, _ = single.request("POST", "/api/v1/messages/sms", single_body, json_headers)
    template = bench.get_legs([json.loads(body)["data"]["id"]])
    if status != 200 or not template:
        raise BenchError(f"warm-up send failed: {status} {body[:300]!r}")
    floor = Floor(bench, next(iter(template.values())))
    for _ in range(warm):
        send_once()
        floor.once()
    for _ in range(max(2, warm // 3)):
        group_once()

    samples: dict[str, list[float]] = {"floor": [], "single": [], "group20": []}
    cpu: dict[str, dict[str, float]] = {k: {} for k in samples}
    per = [max(1, n // rounds), max(1, n_group // rounds)]

    def block(kind: str, count: int, once) -> None:
        before = bench.cpu_seconds()
        for _ in range(count):
            samples[kind].append(once())
        after = bench.cpu_seconds()
        for key in CPU_KEYS:
            cpu[kind][key] = cpu[kind].get(key, 0.0) + after.get(key, 0.0) - before.get(key, 0.0)

    t0 = time.monotonic()
    for _ in range(rounds):
        block("floor", per[0], floor.once)
        block("single", per[0], send_once)
        block("group20", per[1], group_once)
        bench.purge(["dispatch"])  # keep the emulator's in-memory queue small
    wall = time.monotonic() - t0
    single.close()
    group.close()
    bench.purge()

    out = {name: summary(values, 1000, 2) for name, values in samples.items()}
    out["group20_over_single"] = ratio(out["group20"]["median"], out["single"]["median"])
    out["single_over_floor"] = ratio(out["single"]["median"], out["floor"]["median"])
    out["group20_over_single_p95"] = ratio(out["group20"]["p95"], out["single"]["p95"])
    out["single_over_floor_p95"] = ratio(out["single"]["p95"], out["floor"]["p95"])
    out["wall_s"] = round(wall, 1)
    # CPU (user + system, ms per request) of the process that served it and of the emulators; the floor
    # runs in the bench process, so its client-side CPU is the "bench" figure of the floor row.
    out["cpu_ms_per_request"] = {kind: {k: round(v * 1000 / max(1, len(samples[kind])), 2) for k, v in used.items()
                                        if round(v * 1000 / max(1, len(samples[kind])), 2)}
                                 for kind, used in cpu.items()}
    log(f"  accept single p50 {out['single']['median']} ms, group20 p50 {out['group20']['median']} ms, "
        f"floor p50 {out['floor']['median']} ms")
    return out
