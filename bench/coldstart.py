"""Cold start, per function, beside its floor measured in the same run.

Function run: a fresh ``.venv/bin/python`` does what functions-framework does on a new instance,
``create_app(target=NAME, source="main.py")``, then hands one representative first request to the app
through Flask's test client; the clients of that request talk to the stack's real emulators.

Floor run: a fresh ``.venv/bin/python`` runs ``create_app(target="floor", source="bench/floor_app.py")``
and hands it one request that makes the same first emulator calls with only the client libraries they
need (see ``FLOORS``). So both sides pay the interpreter, functions-framework/Flask and the first
request through Flask; the difference is the function's own imports, setup and extra work.

Time is measured from just before the parent spawns the process to the moment the child holds the
response (the child reports ``time.time()``; both clocks are the same machine's). Runs alternate
function/floor (the order flips every round) so drift hits both alike.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import ROOT, BenchError, BenchStack, fictional
from bench.stats import paired_ratios, ratio, summary

PYTHON = str(ROOT / ".venv" / "bin" / "python")
MARK = "@@BENCH@@"

# The child: everything it does before functions_framework is stdlib the framework imports anyway.
CHILD = f"""
import time
T0 = time.time()
import json, os, sys
spec = json.loads(os.environ["BENCH_COLD_SPEC"])
from functions_framework import create_app
app = create_app(target=spec["target"], source=spec["source"])
T1 = time.time()
response = app.test_client().open(spec["path"], method=spec["method"], headers=spec["headers"],
                                  data=spec["body"].encode() if spec["body"] is not None else None)
T2 = time.time()
families = {{}}
for prefix in spec["families"]:
    families[prefix] = any(m == prefix or m.startswith(prefix + ".") for m in sys.modules)
out = {{"t_main": T0, "t_app": T1, "t_resp": T2, "status": response.status_code,
       "body": response.get_data(as_text=True)[:400], "modules": len(sys.modules), "families": families}}
sys.stdout.write("\\n{MARK}" + json.dumps(out) + "\\n")
sys.stdout.flush()
os._exit(0)
"""

# Library families reported as imported / not imported by each cold process (evidence for lazy imports).
FAMILIES = ["google.cloud.firestore_v1", "google.cloud.tasks_v2", "google.cloud.storage", "grpc", "httpx",
            "pydantic", "phonenumbers", "cryptography", "requests", "PIL"]

# The app copies an MMS's media into Cloud Storage at accept time and signs URLs of the copies at dispatch
# (infra/media.py). When it does, the floors of send, group and dispatch include those calls and libraries.
MEDIA = (ROOT / "infra" / "media.py").exists()

# What each floor imports besides functions_framework (documentation; the ops decide what is imported).
FLOORS: dict[str, dict] = {
    "send": {"libs": ["firestore", "tasks"], "calls": "get + batch commit (1 doc) + create_task"},
    "group": {"libs": ["firestore", "tasks"], "calls": "get + batch commit (3 docs) + 2 x create_task"},
    "messages": {"libs": ["firestore"], "calls": "get + get"},
    "dispatch": {"libs": ["firestore", "httpx"], "calls": "get + batch commit + POST /v2/messages (simulator)"},
    "webhook": {"libs": ["firestore"], "calls": "get + batch commit"},
    "notifier": {"libs": ["firestore", "httpx"], "calls": "get + POST (customer endpoint) + batch commit"},
    "sweeper": {"libs": ["firestore", "tasks"],
                "calls": "9 queries at once (+ carrier health reads beside them with two carriers) + get + batch commit"
                         " + create_task"},
}
if MEDIA:
    for _name in ("send", "group"):
        FLOORS[_name] = {"libs": ["firestore", "tasks", "storage", "httpx"],
                         "calls": FLOORS[_name]["calls"].replace("get + ", "get + media GET + get_blob + ", 1)}
    FLOORS["dispatch"] = {"libs": ["firestore", "storage", "httpx"],
                          "calls": "get + batch commit + V4 sign + POST /v2/messages (simulator)"}


@dataclass
class Request:
    method: str
    path: str
    body: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    """How to build a function's first request and its floor's ops, run ``i`` (fresh data per run)."""

    name: str
    request: Callable[[int], Request]
    ops: Callable[[int], list]
    before: Callable[[int], None] | None = None  # e.g. make the sweeper's leg stuck again


def child_env(bench: BenchStack) -> dict[str, str]:
    from tools.stack import _STRIP_ENV

    env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # both sides load compiled bytecode, as a deployed instance
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1,localhost"]))
    env.update({"NO_PROXY": no_proxy, "no_proxy": no_proxy, "PYTHONUNBUFFERED": "1"})
    env.update(bench.function_env())
    return env


def spawn(env: dict[str, str], target: str, source: str, request: Request, timeout: float = 60.0) -> dict:
    spec = {"target": target, "source": source, "method": request.method, "path": request.path,
            "body": request.body, "headers": request.headers, "families": FAMILIES}
    env = {**env, "BENCH_COLD_SPEC": json.dumps(spec)}
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_spawn = time.time()
    proc = subprocess.run([PYTHON, "-c", CHILD], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise BenchError(f"cold {target}: no result (exit {proc.returncode}); stderr:\n{proc.stderr[-2000:]}")
    out = json.loads(line[len(MARK):])
    if not 200 <= out["status"] < 300:
        raise BenchError(f"cold {target}: HTTP {out['status']} {out['body']}")
    out.update({
        "total_s": out["t_resp"] - t_spawn,  # process start -> first response in hand
        "interpreter_s": out["t_main"] - t_spawn,
        "import_s": out["t_app"] - out["t_main"],  # create_app: imports the entry module
        "first_request_s": out["t_resp"] - out["t_app"],  # lazy imports, clients, the emulator calls
        # CPU (user + system) the whole child used: far less sensitive than wall time to what else the
        # machine is running, so a steadier view of the function's own cost (emulator time excluded).
        "cpu_s": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
    })
    return out


def warm_up(env: dict[str, str]) -> float:
    """One untimed process that imports every entry module and the floor's libraries, so that compiled
    bytecode and the page cache are in place for all measured runs."""
    code = ("import functions_framework, main, httpx, grpc\n"
            "from google.cloud import firestore, tasks_v2, storage\n"
            "for name in main.ENTRY_POINTS: getattr(main, name)\n"
            "import bench.floor_app, werkzeug.test\n")
    t0 = time.monotonic()
    subprocess.run([PYTHON, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------- cases
def build_cases(bench: BenchStack, runs: int) -> list[Case]:
    """Prepare the data every run needs (fresh legs per run), with both queues paused."""
    from infra import collections as C
    from shared.rules.ids import api_key_hash

    s = bench.stack
    env = s.function_env()
    tenant = bench.tenant
    key_doc = f"{C.API_KEYS}/{api_key_hash(tenant.api_key)}"
    dispatch_queue = s.queue_paths["dispatch"]
    json_headers = {"Content-Type": "application/json"}
    n = runs + 1  # +1: spare

    # Legs the notifier can deliver an event for: sent, with a pending message.sent event each.
    hook_legs = bench.sent_legs(n, bench.hook_tenant)
    template = bench.sent_legs(1, tenant)[0]
    webhook_legs = bench.clone_sent_legs(template, n)
    dispatch_ids = bench.send_singles(n, tenant, fictional(99))  # queued (dispatch queue paused)
    stuck_id = bench.send_singles(1, tenant, fictional(99))[0]
    stuck_ref = bench.store.db.collection(C.MESSAGES).document(stuck_id)

    def make_stuck(i: int) -> None:
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        stuck_ref.update({"status": "queued", "status_since": long_ago})

    sim_body = {"from": template["from"], "to": fictional(99), "text": "mmsgate bench floor",
                "media_urls": [bench.sample_media_url], "type": "MMS", "webhook_url": bench.receiver.url,
                "use_profile_webhooks": False}
    sim_headers = {"Authorization": f"Bearer {s.sim_api_key}", "Accept": "application/json"}

    def auth(t=tenant) -> dict[str, str]:
        return {**json_headers, **t.headers}

    group_tenants = [bench.group_tenant() for _ in range(n)]

    def hook_event(i: int) -> tuple[str, str]:
        leg = hook_legs[i]
        return next(e for e, v in leg["notifications"].items() if v["state"] == "pending"), leg["id"]

    bucket = s.config.media_bucket
    sample = bench.sample_media_url.rsplit(f"/{bucket}/", 1)[-1]
    media = [["fetch", bench.sample_media_url], ["blob", bucket, sample]] if MEDIA else []
    sign = [["sign", bucket, sample]] if MEDIA else []

    def sweep_reads() -> list:
        """The sweep's first round (shared/services/sweeping.py): nine queries for stuck legs and batch chunks at
        once and, beside them, carrier health when two carriers are configured (their documents, then each
        carrier's traffic and error slots since the window)."""
        reads: list = [["query", C.MESSAGES, "leg_key", f"single:{stuck_id}"] for _ in range(9)]
        if env.get("TWILIO_ACCOUNT_SID"):
            since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=15)).isoformat()
            reads.append([["scan", C.CARRIERS], *[["range", f"{C.CARRIERS}/{parent}/{C.CARRIER_SLOTS}", "start", since]
                                                  for carrier in ("telnyx", "twilio")
                                                  for parent in (carrier, f"{carrier}.errors")]])
        return reads

    return [
        Case("send",
             lambda i: Request("POST", "/api/v1/messages/sms", json.dumps(bench.single_body()), auth()),
             lambda i: [["get", key_doc], *media, ["commit", 1], ["task", dispatch_queue, env["DISPATCH_URL"]]]),
        Case("group",
             lambda i: Request("POST", "/api/v1/messages/group", json.dumps(bench.group_body(2)),
                               auth(group_tenants[i])),
             lambda i: [["get", key_doc], *media, ["commit", 3], ["task", dispatch_queue, env["DISPATCH_URL"]],
                        ["task", dispatch_queue, env["DISPATCH_URL"]]]),
        Case("messages",
             lambda i: Request("GET", f"/api/v1/messages/{template['id']}", None, auth()),
             lambda i: [["get", key_doc], ["get", f"{C.MESSAGES}/{template['id']}"]]),
        Case("dispatch",
             lambda i: Request("POST", "/", json.dumps({"message_id": dispatch_ids[i]}),
                               {**json_headers, "X-CloudTasks-TaskName": f"bench-{i}",
                                "X-CloudTasks-TaskRetryCount": "0", "X-CloudTasks-TaskExecutionCount": "0"}),
             lambda i: [["get", f"{C.MESSAGES}/{dispatch_ids[i]}"], ["commit", 1], *sign,
                        ["post", f"{env['TELNYX_BASE_URL']}/v2/messages", sim_body, sim_headers]]),
        Case("webhook",
             lambda i: _signed(bench, webhook_legs[i]),
             lambda i: [["get", f"{C.MESSAGES}/{webhook_legs[i]['id']}"], ["commit", 1]]),
        Case("notifier",
             lambda i: Request("POST", "/", json.dumps(dict(zip(("event_id", "message_id"), hook_event(i),
                                                                 strict=True))),
                               {**json_headers, "X-CloudTasks-TaskName": f"bench-{i}"}),
             lambda i: [["get", f"{C.MESSAGES}/{hook_legs[i]['id']}"],
                        ["post", bench.receiver.url, {"id": "evt_floor"}, None], ["commit", 1]]),
        Case("sweeper",
             lambda i: Request("POST", "/", "{}", json_headers),
             lambda i: [["concurrently", sweep_reads()],
                        ["get", f"{C.MESSAGES}/{stuck_id}"], ["commit", 1],
                        ["task", dispatch_queue, env["DISPATCH_URL"]]],
             before=make_stuck),
    ]


def _signed(bench: BenchStack, leg: dict) -> Request:
    body = bench.finalized_event(leg)
    return Request("POST", "/webhooks/telnyx", body.decode(), bench.signed_headers(body))


# ---------------------------------------------------------------------------------------- run
def measure(bench: BenchStack, runs: int, settle: float = 0.15, log=print, only: set[str] | None = None) -> dict:
    bench.pause()
    bench.purge()
    env = child_env(bench)
    warm_s = warm_up(env)
    cases = build_cases(bench, runs)
    source_main = str(ROOT / "main.py")
    source_floor = str(ROOT / "bench" / "floor_app.py")
    results: dict[str, dict] = {}
    for case in cases:
        if only and case.name not in only:
            continue
        fn_runs, floor_runs = [], []
        for i in range(runs):
            order = ("function", "floor") if i % 2 == 0 else ("floor", "function")
            for side in order:
                if case.before:
                    case.before(i)
                if side == "function":
                    fn_runs.append(spawn(env, case.name, source_main, case.request(i)))
                else:
                    floor_runs.append(spawn(env, "floor", source_floor,
                                            Request("POST", "/", json.dumps({"ops": case.ops(i)}),
                                                    {"Content-Type": "application/json"})))
                time.sleep(settle)  # let what the run set off (a provider webhook, ...) finish
        fn_total = [r["total_s"] for r in fn_runs]
        floor_total = [r["total_s"] for r in floor_runs]
        fn_sum, floor_sum = summary(fn_total, 1000, 1), summary(floor_total, 1000, 1)
        results[case.name] = {
            "function_ms": fn_sum,
            "floor_ms": floor_sum,
            "ratio": ratio(fn_sum["median"], floor_sum["median"]),
            "paired_ratio": summary(paired_ratios(fn_total, floor_total), 1, 3),
            "function_cpu_ms": summary([r["cpu_s"] for r in fn_runs], 1000, 1),
            "floor_cpu_ms": summary([r["cpu_s"] for r in floor_runs], 1000, 1),
            "function_phases_ms": {k: summary([r[k] for r in fn_runs], 1000, 1)["median"]
                                   for k in ("interpreter_s", "import_s", "first_request_s")},
            "floor_phases_ms": {k: summary([r[k] for r in floor_runs], 1000, 1)["median"]
                                for k in ("interpreter_s", "import_s", "first_request_s")},
            "function_imports": [f for f, on in fn_runs[-1]["families"].items() if on],
            "floor_imports": [f for f, on in floor_runs[-1]["families"].items() if on],
            "function_modules": fn_runs[-1]["modules"],
            "floor_modules": floor_runs[-1]["modules"],
            "floor": FLOORS[case.name],
            "first_response": fn_runs[-1]["body"][:200],
        }
        r = results[case.name]
        r["cpu_ratio"] = ratio(r["function_cpu_ms"]["median"], r["floor_cpu_ms"]["median"])
        log(f"  cold {case.name:<9} function {fn_sum['median']:7.1f} ms  floor {floor_sum['median']:7.1f} ms  "
            f"ratio {r['ratio']} (paired {r['paired_ratio']['median']}, CPU {r['cpu_ratio']})")
    bench.purge()
    return {"runs": runs, "warm_up_s": round(warm_s, 2), "functions": results}


if __name__ == "__main__":  # pragma: no cover - manual use: python -m bench.coldstart [runs]
    import tempfile

    with BenchStack(Path(tempfile.mkdtemp(prefix="mmsgate-bench-"))) as b:
        print(json.dumps(measure(b, int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=2))
