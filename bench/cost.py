"""What 1,000 delivered messages cost in Google Cloud, counted in the function processes and priced at list prices.

The round-trip probe (``tools/rpc_probe.py``, on every function process of the bench's stack) records each
functions-framework request with its Firestore calls (documents read; writes and deletes of each commit) and
its Cloud Tasks ``CreateTask`` calls. This section runs four kinds of traffic, one after the other with the
queues running, and waits until each is done: the legs ``delivered`` and every customer event received.

- **single**: single MMS (one media URL) from a tenant with a webhook URL (``message.sent`` and
  ``message.delivered`` reach it);
- **group**: groups of 20 MMS from that tenant;
- **batch**: one batch of SMS from that tenant (``POST /api/v1/messages/batch``, its chunk tasks);
- **inbound**: SMS a handset sends to a tenant's number (``message.received`` to its webhook).

Per 1,000 delivered messages (inbound: received and announced) it reports Firestore reads, writes and deletes
(without the TTL deletes of expiring records, which Firestore does on its own and bills as deletes), Cloud
Tasks creates and push deliveries, function invocations and API Gateway calls, Cloud Storage requests of the
functions, the CPU-seconds the function processes used (measured, ``/proc``) and the instance-seconds Cloud Run
would bill (each request's duration rounded up to 100 ms, at 1 vCPU and 512 MiB: those latencies are the
emulators' on a shared machine), each priced by ``PRICES``. ``render`` makes the Markdown table and
``rewrite`` puts it between the markers of docs/deploy.md (``bench.run`` does both whenever it runs, but
``--smoke``, whose few messages make no figure).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import ROOT, BenchError, BenchStack, fictional

DOC = ROOT / "docs" / "deploy.md"
BEGIN, END = "<!-- cost-table:begin (bench/cost.py writes this table) -->", "<!-- cost-table:end -->"

# List prices, us-central1, no committed-use discount, free tiers left out (they are per month and per project).
PRICES: dict[str, tuple[float, str, str]] = {
    # key: (USD per unit, unit, source)
    "firestore_read": (0.03 / 100_000, "document read", "https://cloud.google.com/firestore/pricing"),
    "firestore_write": (0.09 / 100_000, "document write", "https://cloud.google.com/firestore/pricing"),
    "firestore_delete": (0.01 / 100_000, "document delete", "https://cloud.google.com/firestore/pricing"),
    "tasks_operation": (0.40 / 1_000_000, "Cloud Tasks operation (API call or push delivery attempt)",
                        "https://cloud.google.com/tasks/pricing"),
    "function_request": (0.40 / 1_000_000, "Cloud Run request (tier 1)", "https://cloud.google.com/run/pricing"),
    "vcpu_second": (0.000024, "vCPU-second while serving (request-based billing, tier 1)",
                    "https://cloud.google.com/run/pricing"),
    "gib_second": (0.0000025, "GiB-second while serving (request-based billing, tier 1)",
                   "https://cloud.google.com/run/pricing"),
    "gateway_call": (3.00 / 1_000_000, "API Gateway call (after 2 M a month)",
                     "https://cloud.google.com/api-gateway/pricing"),
    "storage_class_a": (0.005 / 1_000, "Cloud Storage class A operation (standard)",
                        "https://cloud.google.com/storage/pricing"),
    "storage_class_b": (0.0004 / 1_000, "Cloud Storage class B operation (standard)",
                        "https://cloud.google.com/storage/pricing"),
}
MEMORY_GIB = 0.5  # the functions' memory (terraform: 512 MiB, 1 vCPU)
PUBLIC = ("send", "group", "batch", "webhook")  # behind API Gateway
TASK_TARGETS = ("dispatch", "notifier")  # each invocation is one push delivery
PER = 1_000
WARM_UP = {"single": 1, "group": 2, "batch": 2, "inbound": 1}


def measure(bench: BenchStack, sizes: dict[str, int], log: Callable[[str], None] = print,
            timeout: float = 300.0, warm: bool = True) -> dict:
    """``sizes``: the messages of each kind (``single``, ``group`` (a multiple of 20 or less), ``batch``,
    ``inbound``). Returns, per kind, the messages and the counts per 1,000, and the prices used. ``warm``: first
    a few messages of each kind, not counted (a process's first traced request misses the calls of the
    libraries it imports on the way, see tools/rpc_probe.py)."""
    from tools import rpc_probe

    if bench.probe_dir is None:
        raise BenchError("the stack was started without the round-trip probe (BenchStack(probe=True))")
    probe = bench.probe_dir
    tenant = bench.hook_tenant
    number = fictional(77, "628")
    bench.new_tenant(name="bench-inbound", default_from=number, webhook_url=bench.receiver.url)  # owns ``number``
    kinds: dict[str, Callable[[int], tuple[list[str], int]]] = {
        "single": lambda n: (bench.send_singles(n, tenant, to=fictional(1)), 2 * n),
        "group": lambda n: _groups(bench, tenant, n),
        "batch": lambda n: _batch(bench, tenant, n),
        "inbound": lambda n: _inbound(bench, number, n),
    }
    out: dict = {"prices": {k: {"usd": v[0], "unit": v[1], "source": v[2]} for k, v in PRICES.items()},
                 "memory_gib": MEMORY_GIB, "kinds": {}}

    def run(kind: str, n: int) -> list[str]:
        """Send ``n`` messages of ``kind`` and wait until they are delivered and announced."""
        received = bench.receiver.count
        ids, events = kinds[kind](n)
        if ids:
            bench.wait_legs(ids, lambda leg: leg.get("status") == "delivered", timeout)
        deadline = time.monotonic() + timeout
        while bench.receiver.count - received < events:
            if time.monotonic() > deadline:
                raise BenchError(f"cost {kind}: {bench.receiver.count - received} of {events} customer events")
            time.sleep(0.1)
        return ids

    bench.resume()
    if warm:  # every function once, probe on: a process patches the libraries its first request imported
        rpc_probe.enable(probe)
        try:
            for kind in sizes:
                run(kind, WARM_UP[kind])
        finally:
            rpc_probe.enable(probe, False)
    for kind, n in sizes.items():
        if n <= 0:
            continue
        rpc_probe.clear(probe)
        rpc_probe.enable(probe)
        cpu_before, started = bench.cpu_seconds(), time.monotonic()
        try:
            ids = run(kind, n)
            time.sleep(0.5)  # the last requests' traces
        finally:
            rpc_probe.enable(probe, False)
        cpu_after = bench.cpu_seconds()
        messages = len(ids) if ids else n
        counts = totals(rpc_probe.load(probe))
        counts["cpu_seconds"] = round(sum(cpu_after.get(f, 0.0) - cpu_before.get(f, 0.0)
                                          for f in counts["invocations_by_function"]), 3)
        per = per_thousand(counts, messages)
        out["kinds"][kind] = {"messages": messages, "counts": counts, "per_1000": per, "usd_per_1000": price(per),
                              "seconds": round(time.monotonic() - started, 1)}
        log(f"  cost {kind:<8} per 1,000: reads {per['firestore_reads']:.0f}, writes {per['firestore_writes']:.0f}, "
            f"tasks {per['tasks_created']:.0f}, invocations {per['invocations']:.0f}, "
            f"USD {out['kinds'][kind]['usd_per_1000']['total']:.3f} (n={messages})")
    bench.pause()
    return out


def totals(traces: list[dict]) -> dict:
    """The billable operations of every traced request."""
    by_function: dict[str, int] = {}
    c = {"firestore_reads": 0, "firestore_writes": 0, "firestore_deletes": 0, "tasks_created": 0,
         "storage_class_a": 0, "storage_class_b": 0, "billed_seconds": 0.0}
    for t in traces:
        by_function[t["target"]] = by_function.get(t["target"], 0) + 1
        c["billed_seconds"] += math.ceil(max(t["t1"] - t["t0"], 0.0) * 10) / 10  # rounded up to 100 ms
        for call in t["calls"]:
            if call["kind"] == "firestore":
                c["firestore_reads"] += call.get("reads", 0)
                c["firestore_deletes"] += call.get("deletes", 0)
                c["firestore_writes"] += call.get("writes", 0) - call.get("deletes", 0)
            elif call["kind"] == "tasks" and call["method"] == "CreateTask":
                c["tasks_created"] += 1
            elif call["kind"] == "storage":
                c["storage_class_b" if call["method"] in ("GET", "HEAD") else "storage_class_a"] += 1
    c["billed_seconds"] = round(c["billed_seconds"], 1)
    c["invocations_by_function"] = dict(sorted(by_function.items()))
    c["invocations"] = sum(by_function.values())
    c["task_deliveries"] = sum(by_function.get(f, 0) for f in TASK_TARGETS)
    c["gateway_calls"] = sum(by_function.get(f, 0) for f in PUBLIC)
    return c


def per_thousand(counts: dict, messages: int) -> dict:
    return {k: round(v * PER / messages, 1) for k, v in counts.items() if isinstance(v, int | float)}


def price(per: dict) -> dict:
    """USD of each line for the counts ``per`` (per 1,000 messages) and their total."""
    p = {k: v[0] for k, v in PRICES.items()}
    usd = {
        "firestore": per["firestore_reads"] * p["firestore_read"] + per["firestore_writes"] * p["firestore_write"]
        + per["firestore_deletes"] * p["firestore_delete"],
        "tasks": (per["tasks_created"] + per["task_deliveries"]) * p["tasks_operation"],
        "requests": per["invocations"] * p["function_request"],
        "compute": per["billed_seconds"] * (p["vcpu_second"] + MEMORY_GIB * p["gib_second"]),
        "gateway": per["gateway_calls"] * p["gateway_call"],
        "storage": per["storage_class_a"] * p["storage_class_a"] + per["storage_class_b"] * p["storage_class_b"],
    }
    usd["total"] = sum(usd.values())
    return {k: round(v, 4) for k, v in usd.items()}


# ---------------------------------------------------------------------------------------- traffic
def _groups(bench: BenchStack, tenant, n: int) -> tuple[list[str], int]:
    ids: list[str] = []
    size = min(20, n)
    for _ in range(max(1, n // size)):
        client = bench.client("group", tenant)
        try:
            status, raw, _ = client.post_json("/api/v1/messages/group", bench.group_body(size))
        finally:
            client.close()
        if status != 200:
            raise BenchError(f"group answered {status}: {raw[:300]!r}")
        ids += [m["id"] for m in json.loads(raw)["messages"]]
    return ids, 2 * len(ids)


def _batch(bench: BenchStack, tenant, n: int) -> tuple[list[str], int]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    from bench.batch import numbers, send_batch
    from infra import collections as C

    batch_id, _ = send_batch(bench, tenant, numbers(n))
    db = bench.store.db
    deadline = time.monotonic() + 120
    while True:  # the chunk tasks write the legs
        ids = [s.id for s in db.collection(C.MESSAGES).where(filter=FieldFilter("batch_id", "==", batch_id)).stream()]
        if len(ids) >= n:
            return ids, 2 * len(ids)
        if time.monotonic() > deadline:
            raise BenchError(f"batch {batch_id}: {len(ids)} of {n} legs written")
        time.sleep(0.2)


def _inbound(bench: BenchStack, number: str, n: int) -> tuple[list[str], int]:
    import urllib.request

    url = bench.stack.urls["simulator"].rstrip("/") + "/_sim/inbound"
    for i in range(n):
        body = json.dumps({"from": fictional(40 + i % 30, "650"), "to": number, "text": f"bench {i}"}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 200:
                raise BenchError(f"simulator inbound answered {response.status}")
    return [], n  # one message.received per message


# ---------------------------------------------------------------------------------------- the table
ROWS = [
    ("Firestore document reads", "firestore_reads"),
    ("Firestore document writes", "firestore_writes"),
    ("Firestore document deletes (without TTL deletes)", "firestore_deletes"),
    ("Cloud Tasks tasks created", "tasks_created"),
    ("Cloud Tasks push deliveries (dispatch + notifier invocations)", "task_deliveries"),
    ("Function invocations", "invocations"),
    ("of which through API Gateway (send, group, batch, webhook)", "gateway_calls"),
    ("Cloud Storage requests, class A / B", None),
    ("CPU-seconds used by the function processes (measured)", "cpu_seconds"),
    ("Instance-seconds billed (request time rounded up to 100 ms)", "billed_seconds"),
]
USD_ROWS = [("Firestore", "firestore"), ("Cloud Tasks", "tasks"), ("Function requests", "requests"),
            ("Function CPU and memory (billed seconds)", "compute"), ("API Gateway", "gateway"),
            ("Cloud Storage (the functions' requests)", "storage")]
LABELS = {"single": "single MMS", "group": "group of 20 MMS", "batch": "batch SMS", "inbound": "inbound SMS"}


def render(result: dict, when: str) -> str:
    kinds = [k for k in LABELS if k in result["kinds"]]
    head = "| Per 1,000 delivered messages | " + " | ".join(
        f"{LABELS[k]} (n={result['kinds'][k]['messages']})" for k in kinds) + " |"
    lines = [f"Measured by `python -m bench.run` ({when}; bench/cost.py), priced at the list prices below.", "",
             head, "|---|" + "---:|" * len(kinds)]
    for label, key in ROWS:
        cells = []
        for k in kinds:
            per = result["kinds"][k]["per_1000"]
            cells.append(f"{per['storage_class_a']:,.0f} / {per['storage_class_b']:,.0f}" if key is None
                         else f"{per[key]:,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for label, key in USD_ROWS:
        lines.append(f"| USD: {label} | " + " | ".join(
            f"{result['kinds'][k]['usd_per_1000'][key]:.3f}" for k in kinds) + " |")
    lines.append("| **USD per 1,000 messages** | " + " | ".join(
        f"**{result['kinds'][k]['usd_per_1000']['total']:.3f}**" for k in kinds) + " |")
    lines.append("| **USD per million messages** | " + " | ".join(
        f"**{result['kinds'][k]['usd_per_1000']['total'] * 1000:,.2f}**" for k in kinds) + " |")
    lines += ["", "| USD per million | unit | source |", "|---:|---|---|"]
    for usd, unit, source in PRICES.values():
        lines.append(f"| {usd * 1_000_000:,.2f} | {unit} | {source} |")
    return "\n".join(lines)


def rewrite(table: str, doc: Path = DOC) -> bool:
    """Put ``table`` between the markers of ``doc``; False if the markers are missing."""
    text = doc.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        return False
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{table}\n{END}", text))
    return True
