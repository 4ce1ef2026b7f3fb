"""Sequential round trips per request, counted (not timed) in the function processes themselves.

``tools/rpc_probe.py`` records every Firestore/Cloud Tasks gRPC call and every HTTP call (Cloud Storage, the
media fetch, the provider, customer webhooks) each functions-framework request makes, with its start and
end. Per endpoint this reports the number of *sequential* rounds (calls that overlap in time are one round:
the longest chain of calls each starting after the previous one ended), counting Firestore + Cloud Tasks
(the accept target) and all calls; the calls per request by kind; Firestore documents read and written;
Cloud Tasks tasks created; and the sequence of rounds of a typical request.

Requests: single sends (one media URL, as in the latency section; also without media, and with an
Idempotency-Key) and groups of 20 with both queues paused;
reads of a message; then the queues run, and every dispatch, provider report (webhook) and customer event
(notifier) those legs cause is counted too. Recording is on only during this section.
"""

from __future__ import annotations

import json
import time
import uuid

from bench.harness import BenchError, BenchStack, fictional

# X-Request-Id prefixes that tell single sends apart (the MMS ones carry none)
SMS_MARK = "bench-sms-"
IDEMPOTENT_MARK = "bench-idem-"  # single MMS sends with an Idempotency-Key

# endpoint -> (function, path prefix)
ENDPOINTS = {
    "send (single)": ("send", "/api/v1/messages/sms"),
    "send (single SMS)": ("send", "/api/v1/messages/sms"),
    "send (single, Idempotency-Key)": ("send", "/api/v1/messages/sms"),
    "group of 20": ("group", "/api/v1/messages/group"),
    "messages (GET message)": ("messages", "/api/v1/messages/"),
    "dispatch": ("dispatch", "/"),
    "webhook": ("webhook", "/webhooks/telnyx"),
    "notifier": ("notifier", "/"),
}


def measure(bench: BenchStack, n_single: int, n_group: int, log=print) -> dict:
    from tools import rpc_probe

    if bench.probe_dir is None:
        raise BenchError("the stack was started without the round-trip probe (BenchStack(probe=True))")
    probe = bench.probe_dir
    bench.pause()
    bench.purge()
    rpc_probe.enable(probe)
    try:
        # Warm-up (not counted): every function once, so each process has imported and patched its libraries.
        _run(bench, 2, 1, timeout=120)
        rpc_probe.clear(probe)
        _run(bench, n_single, n_group, timeout=180)
        time.sleep(1.0)  # the last reports and events of the run
    finally:
        rpc_probe.enable(probe, False)
        bench.pause()
        bench.purge()
    traces = rpc_probe.load(probe)
    out: dict[str, dict] = {}
    for name, (function, prefix) in ENDPOINTS.items():
        mine = [t for t in traces if t["target"] == function and t["path"].startswith(prefix)
                and t["method"] in ("POST", "GET")]
        if function == "send":
            mark = SMS_MARK if name.endswith("SMS)") else IDEMPOTENT_MARK if "Idempotency" in name else ""
            mine = [t for t in mine if _mark(t.get("request_id", "")) == mark]
        out[name] = rpc_probe.summarize(mine)
    for name, s in out.items():
        if s.get("n"):
            log(f"  round trips {name:<20} Firestore+Tasks {s['rounds_db']['median']} (all calls "
                f"{s['rounds_all']['median']}); reads {s['firestore_reads']}, writes {s['firestore_writes']}, "
                f"tasks {s['tasks_created']} per request (n={s['n']})")
    return {"requests": {"single": n_single, "group20": n_group}, "endpoints": out}


def _mark(request_id: str) -> str:
    return next((m for m in (SMS_MARK, IDEMPOTENT_MARK) if request_id.startswith(m)), "")


def _run(bench: BenchStack, n_single: int, n_group: int, timeout: float) -> None:
    json_headers = {"Content-Type": "application/json"}
    bench.pause()  # accepts first, with no dispatch work competing; then the queues run
    received = bench.receiver.count
    single = bench.client("send", bench.tenant)
    hooked = bench.client("send", bench.hook_tenant)
    group = bench.client("group")
    reads = bench.client("messages", bench.tenant)
    ids: list[str] = []
    hook_ids: list[str] = []
    try:
        body = json.dumps(bench.single_body(fictional(0))).encode()
        for _ in range(n_single):
            status, raw, _ = single.request("POST", "/api/v1/messages/sms", body, json_headers)
            if status != 200:
                raise BenchError(f"single send answered {status}: {raw[:300]!r}")
            ids.append(json.loads(raw)["data"]["id"])
        sms = json.dumps(bench.single_body(fictional(0), media=False)).encode()
        for i in range(max(1, n_single // 2)):
            status, raw, _ = single.request("POST", "/api/v1/messages/sms", sms,
                                            {**json_headers, "X-Request-Id": f"{SMS_MARK}{i}"})
            if status != 200:
                raise BenchError(f"single SMS answered {status}: {raw[:300]!r}")
            ids.append(json.loads(raw)["data"]["id"])
        for i in range(max(1, n_single // 2)):
            status, raw, _ = single.request("POST", "/api/v1/messages/sms", body,
                                            {**json_headers, "X-Request-Id": f"{IDEMPOTENT_MARK}{i}",
                                             "Idempotency-Key": f"{IDEMPOTENT_MARK}{uuid.uuid4().hex}"})
            if status != 200:
                raise BenchError(f"single send with an Idempotency-Key answered {status}: {raw[:300]!r}")
            ids.append(json.loads(raw)["data"]["id"])
        for _ in range(max(1, n_single // 4)):  # a customer webhook: its events reach the notifier
            status, raw, _ = hooked.request("POST", "/api/v1/messages/sms", body, json_headers)
            if status != 200:
                raise BenchError(f"single send answered {status}: {raw[:300]!r}")
            hook_ids.append(json.loads(raw)["data"]["id"])
        group_body = json.dumps(bench.group_body(20)).encode()
        for _ in range(n_group):
            tenant = bench.group_tenant()
            status, raw, _ = group.request("POST", "/api/v1/messages/group", group_body,
                                           {**json_headers, **tenant.headers})
            if status != 200:
                raise BenchError(f"group send answered {status}: {raw[:300]!r}")
            ids += [m["id"] for m in json.loads(raw)["messages"]]
        for message_id in ids[:n_single]:
            status, raw, _ = reads.request("GET", f"/api/v1/messages/{message_id}")
            if status != 200:
                raise BenchError(f"read answered {status}: {raw[:300]!r}")
    finally:
        for c in (single, hooked, group, reads):
            c.close()
    bench.resume()
    bench.wait_legs(ids + hook_ids, lambda leg: leg.get("status") == "delivered", timeout)
    deadline = time.monotonic() + timeout
    while bench.receiver.count - received < 2 * len(hook_ids):  # message.sent and message.delivered
        if time.monotonic() > deadline:
            raise BenchError("customer events of the round-trip run never arrived")
        time.sleep(0.1)
