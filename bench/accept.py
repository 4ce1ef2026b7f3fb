"""Accept latency, warm: a single MMS, a single SMS, a group of 20, and two floors made with the same Python
clients from the bench process on the same emulators: the floor (one Firestore batch commit plus one Cloud
Tasks ``create_task``), and the MMS path's floor (``MmsFloor``: the calls a single MMS cannot avoid).

The functions are called directly (not through the gateway) over one keep-alive connection each, one
request at a time. Both queues are paused while this runs, so no dispatch work competes for the CPU;
the tasks created are purged afterwards. Floors, singles and groups are interleaved in rounds so any
drift in the machine's load hits all of them alike.
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

    def _task(self) -> tuple[dict, object]:
        from shared.rules import ids

        leg = copy.copy(self.template)
        leg["id"] = ids.new_message_id()
        leg["leg_key"] = f"single:{leg['id']}"
        task = self.tasks_v2.Task(
            name=f"{self.queue}/tasks/{ids.task_name(leg['leg_key'])}",
            http_request=self.tasks_v2.HttpRequest(
                http_method=self.tasks_v2.HttpMethod.POST, url=self.url,
                headers={"Content-Type": "application/json"},
                body=json.dumps({"message_id": leg["id"]}).encode()))
        return leg, task

    def _commit_and_task(self, prepared: tuple[dict, object]) -> None:
        leg, task = prepared
        batch = self.db.batch()
        batch.create(self.messages.document(leg["id"]), leg)
        batch.commit()
        self.client.create_task(parent=self.queue, task=task)

    def once(self) -> float:
        prepared = self._task()
        t0 = time.perf_counter()
        self._commit_and_task(prepared)
        return time.perf_counter() - t0


class MmsFloor(Floor):
    """The calls a single MMS cannot avoid, made with the same clients from the bench process: the first round
    (one batch get of the documents the app's first round reads: API key, tenant, balance shards, opt-out
    entry, price; beside it the create of a rate-limit slot), the media fetch (a new connection, as every
    fetch is vetted anew), the stored copy's existence check (get_blob), the commit creating the leg, and
    create_task."""

    def __init__(self, bench: BenchStack, template: dict):
        super().__init__(bench, template)
        import concurrent.futures

        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        from infra import collections as C
        from infra.store.balance import FirestoreBalance
        from shared.rules.ids import api_key_hash

        tenant = bench.tenant
        tenants = self.db.collection(C.TENANTS)
        self.refs = [self.db.collection(C.API_KEYS).document(api_key_hash(tenant.api_key)),
                     tenants.document(tenant.tenant_id), *FirestoreBalance(self.db).refs(tenant.tenant_id),
                     tenants.document(tenant.tenant_id).collection(C.OPT_OUTS).document(template["to"]),
                     self.db.collection(C.PRICING).document("US")]
        self.slots = self.db.collection(C.RATE_LIMITS)
        self.pool = concurrent.futures.ThreadPoolExecutor(2)
        gcs = storage.Client(project=bench.stack.config.project, credentials=AnonymousCredentials())
        gcs._http.trust_env = False  # as the app's client (infra/clients.py)
        bucket = bench.stack.config.media_bucket
        self.blob = (gcs.bucket(bucket), bench.sample_media_url.rsplit(f"/{bucket}/", 1)[-1])
        self.media_url = bench.sample_media_url
        import ssl

        self.ssl = ssl.create_default_context()  # made once, as the app's fetcher does (infra/pinned.py)

    def once(self) -> float:
        import uuid

        import httpx

        task = self._task()
        t0 = time.perf_counter()
        reads = self.pool.submit(lambda: list(self.db.get_all(self.refs)))
        self.slots.document(f"floor:{uuid.uuid4().hex}").create({"window": "floor"})
        reads.result()
        with httpx.Client(trust_env=False, verify=self.ssl) as http:
            http.get(self.media_url).read()
        self.blob[0].get_blob(self.blob[1])
        self._commit_and_task(task)
        return time.perf_counter() - t0


def measure(bench: BenchStack, n: int, n_group: int, rounds: int, warm: int = 10, log=print) -> dict:
    bench.pause()
    bench.purge()
    single = bench.client("send", bench.tenant)
    group = bench.client("group")
    single_body = json.dumps(bench.single_body()).encode()
    sms_body = json.dumps(bench.single_body(media=False)).encode()
    group_body = json.dumps(bench.group_body(20)).encode()
    json_headers = {"Content-Type": "application/json"}

    def send_once() -> float:
        status, body, elapsed = single.request("POST", "/api/v1/messages/sms", single_body, json_headers)
        if status != 200:
            raise BenchError(f"single send answered {status}: {body[:300]!r}")
        return elapsed

    def sms_once() -> float:
        status, body, elapsed = single.request("POST", "/api/v1/messages/sms", sms_body, json_headers)
        if status != 200:
            raise BenchError(f"single SMS answered {status}: {body[:300]!r}")
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
    mms_floor = MmsFloor(bench, next(iter(template.values())))
    for _ in range(warm):
        send_once()
        sms_once()
        floor.once()
        mms_floor.once()
    for _ in range(max(2, warm // 3)):
        group_once()

    samples: dict[str, list[float]] = {"floor": [], "floor_mms": [], "single": [], "single_sms": [], "group20": []}
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
        block("floor_mms", per[0], mms_floor.once)
        block("single_sms", per[0], sms_once)
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
    out["single_over_floor_mms"] = ratio(out["single"]["median"], out["floor_mms"]["median"])
    out["sms_over_floor"] = ratio(out["single_sms"]["median"], out["floor"]["median"])
    mms_floor.pool.shutdown()
    out["wall_s"] = round(wall, 1)
    # CPU (user + system, ms per request) of the process that served it and of the emulators; the floor
    # runs in the bench process, so its client-side CPU is the "bench" figure of the floor row.
    out["cpu_ms_per_request"] = {kind: {k: round(v * 1000 / max(1, len(samples[kind])), 2) for k, v in used.items()
                                        if round(v * 1000 / max(1, len(samples[kind])), 2)}
                                 for kind, used in cpu.items()}
    log(f"  accept single p50 {out['single']['median']} ms (SMS {out['single_sms']['median']} ms), group20 p50 "
        f"{out['group20']['median']} ms, floor p50 {out['floor']['median']} ms "
        f"(MMS path {out['floor_mms']['median']} ms)")
    return out
