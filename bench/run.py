"""``python -m bench.run [--quick] [--out PATH]``: start the stack, measure, print one table, write JSON.

Sections (bench/README.md defines each): cold start per function beside its floor; warm accept latency
(single, group of 20, floor); accept throughput at 1/8/32 clients and legs per second end to end; webhook
ingest; peak RSS per function process. Ratios are taken within this run; every figure is a median over
repeated runs with its spread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import accept, coldstart, cost, e2e, machine, memory, roundtrips, throughput, webhook
from bench.harness import ROOT, BenchStack

DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
SCHEMA = 1

MODES: dict[str, dict] = {
    "full": {
        "cold_runs": 11,
        "accept_single": 200, "accept_group": 60, "accept_rounds": 10,
        "throughput_counts": {1: 150, 8: 320, 32: 480}, "throughput_reps": 3, "throughput_cap_s": 60.0,
        "legs": 200, "legs_reps": 3, "legs_timeout_s": 180.0,
        "webhook_sequential": 200, "webhook_concurrent": 400,
        "roundtrip_single": 20, "roundtrip_group": 3, "e2e_legs": 30,
        "cost": {"single": 100, "group": 100, "batch": 200, "inbound": 50},
    },
    "quick": {
        "cold_runs": 3,
        "accept_single": 30, "accept_group": 9, "accept_rounds": 3,
        "throughput_counts": {1: 15, 8: 32, 32: 64}, "throughput_reps": 2, "throughput_cap_s": 10.0,
        "legs": 40, "legs_reps": 2, "legs_timeout_s": 60.0,
        "webhook_sequential": 30, "webhook_concurrent": 60,
        "roundtrip_single": 4, "roundtrip_group": 1, "e2e_legs": 4,
        "cost": {"single": 20, "group": 40, "batch": 40, "inbound": 10},
    },
    # make test's smoke test: every section runs, on the least that makes a figure (not a measurement)
    "smoke": {
        "cold_runs": 1,
        "accept_single": 6, "accept_group": 3, "accept_rounds": 1,
        "throughput_counts": {1: 4, 8: 8, 32: 32}, "throughput_reps": 1, "throughput_cap_s": 5.0,
        "legs": 10, "legs_reps": 1, "legs_timeout_s": 60.0,
        "webhook_sequential": 8, "webhook_concurrent": 16,
        "roundtrip_single": 2, "roundtrip_group": 1, "e2e_legs": 2,
        "cost": {"single": 1, "group": 2, "batch": 2, "inbound": 1},
    },
}

CPU_COLUMNS = ("send", "group", "dispatch", "webhook", "firestore", "tasks", "storage", "simulator", "bench")

TARGETS = {
    "group20_over_single": 1.5,
    "single_over_floor": 2.0,
    "single_rounds": 3,
    "single_reads": 6,
    "cold_start_ratio": 1.15,
    "webhook_p99_ms": 50.0,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def evaluate(results: dict) -> list[dict]:
    targets = []
    single_rounds = results["roundtrips"]["endpoints"]["send (single)"]["rounds_db"]["max"]
    targets.append({"target": "single send: sequential Firestore/Cloud Tasks round trips <= 3 (every request)",
                    "value": single_rounds, "limit": TARGETS["single_rounds"]})
    single_reads = results["roundtrips"]["endpoints"]["send (single)"]["firestore_reads_max"]
    targets.append({"target": "single send: Firestore documents read <= 6 (every request)", "value": single_reads,
                    "limit": TARGETS["single_reads"]})
    acc = results["accept_latency"]
    targets.append({"target": "group-20 accept p50 <= 1.5 x single", "value": acc["group20_over_single"],
                    "limit": TARGETS["group20_over_single"]})
    targets.append({"target": "single accept p50 <= 2 x floor", "value": acc["single_over_floor"],
                    "limit": TARGETS["single_over_floor"]})
    for name, cs in results["cold_start"]["functions"].items():
        targets.append({"target": f"cold start {name} <= 1.15 x floor", "value": cs["ratio"],
                        "limit": TARGETS["cold_start_ratio"]})
    targets.append({"target": "webhook ingest p99 <= 50 ms (sequential, warm)",
                    "value": results["webhook"]["sequential_ms"]["p99"], "limit": TARGETS["webhook_p99_ms"]})
    for t in targets:
        t["met"] = t["value"] is not None and (t["value"] < t["limit"] if "<" in t["target"] and "<=" not in
                                               t["target"] else t["value"] <= t["limit"])
    return targets


# ------------------------------------------------------------------------------------------ table
_SHORT = {"BatchGetDocuments": "get", "Commit": "commit", "RunQuery": "query", "RunAggregationQuery": "count",
          "CreateTask": "task"}


def _short(call: str) -> str:
    kind, _, method = call.partition(".")
    if kind in ("firestore", "tasks"):
        return _SHORT.get(method, method)
    return f"{kind} {method}"


def _short_round(label: str) -> str:
    calls, _, times = label.partition(" x")
    return "+".join(_short(c) for c in calls.split("+")) + (f" x{times}" if times else "")


def _range(r: dict) -> str:
    return str(r["median"]) if r["min"] == r["max"] else f"{r['median']} ({r['min']}–{r['max']})"


def _iqr(s: dict, digits: int = 0) -> str:
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['p25'])}–{f.format(s['p75'])})"


def table(results: dict) -> str:
    m = results["machine"]
    load = f"load average {m.get('load_average_at_start')} at start, {results.get('load_average_at_end')} at end"
    lines = [f"mmsgate bench ({results['mode']}), {results['when']}: {machine.one_line(m)}; {load}", ""]
    cs = results["cold_start"]
    lines += [f"Cold start, process start -> first response (ms, median (IQR) of {cs['runs']} runs each)", "",
              "| function | cold start | floor | ratio | paired ratio | CPU: function / floor (ratio) | "
              "floor = functions_framework + |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in cs["functions"].items():
        cpu = (f"{r['function_cpu_ms']['median']:.0f} / {r['floor_cpu_ms']['median']:.0f} ({r['cpu_ratio']:.2f})"
               if "cpu_ratio" in r else "")
        lines.append(f"| {name} | {_iqr(r['function_ms'])} | {_iqr(r['floor_ms'])} | {r['ratio']:.2f} | "
                     f"{r['paired_ratio']['median']:.2f} | {cpu} | "
                     f"{' + '.join(r['floor']['libs'])}: {r['floor']['calls']} |")
    rt = results["roundtrips"]
    counted = f"{rt['requests']['single']} singles, {rt['requests']['group20']} groups of 20 and what they set off"
    lines += ["", f"Round trips per request, counted in the function processes (median (min–max) over {counted})", "",
              "| endpoint | sequential Firestore/Tasks rounds | sequential rounds, all calls | calls | "
              "Firestore reads | Firestore writes | tasks created | rounds of a typical request |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in rt["endpoints"].items():
        if not r.get("n"):
            continue
        seq = " → ".join("+".join(_short(c) for c in rnd) for rnd in r["typical_sequence"])
        lines.append(f"| {name} | {_range(r['rounds_db'])} | {_range(r['rounds_all'])} | {r['calls_per_request']} | "
                     f"{r['firestore_reads']} | {r['firestore_writes']} | {r['tasks_created']} | {seq} |")
    a = results["accept_latency"]
    lines += ["", f"Accept latency, warm, one request at a time (ms; {a['single']['n']} singles, "
              f"{a['group20']['n']} groups, {a['floor']['n']} floors)", "",
              "| request | p50 | p95 | p99 |", "|---|---:|---:|---:|"]
    for key, label in (("floor", "floor: batch commit + create_task"),
                       ("floor_mms", "MMS path's floor: first-round reads + slot, media GET, get_blob, commit, task"),
                       ("single", "single send (MMS, one media URL)"), ("single_sms", "single send (SMS)"),
                       ("group20", "group of 20 (MMS)")):
        s = a[key]
        lines.append(f"| {label} | {s['median']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} |")
    lines += ["", f"group-20 / single = {a['group20_over_single']:.2f}; single / floor = {a['single_over_floor']:.2f}; "
              f"single / MMS path's floor = {a['single_over_floor_mms']:.2f}; SMS / floor = {a['sms_over_floor']:.2f}"]
    lines += ["", "Where an accept's time goes (median ms of the requests of the typical shape in the round-trip run: "
              "the function's own work between rounds, and the rounds)", "", "| request | total | own work | "
              "rounds | segments |", "|---|---:|---:|---:|---|"]
    for name in ("send (single)", "send (single SMS)", "send (single, Idempotency-Key)", "group of 20"):
        b = rt["endpoints"].get(name, {}).get("breakdown")
        if b:
            segs = " · ".join(f"{'own' if label == 'app' else _short_round(label)} {ms:.1f}"
                              for label, ms in b["segments"])
            lines.append(f"| {name} | {b['total_ms']:.1f} | {b['app_ms']:.1f} | {b['calls_ms']:.1f} | {segs} |")
    e = results["e2e"]
    lines += ["", "End to end, idle stack: accept answer -> the simulator receives the provider call "
              f"(ms; {e['leg_ms']['n']} of each, alternating)", "", "| path | p50 | p95 |", "|---|---:|---:|",
              "| floor: a task created by hand -> a function that calls the simulator | "
              f"{e['floor_ms']['median']:.1f} | {e['floor_ms']['p95']:.1f} |",
              f"| one leg: accept answer -> tasks emulator -> dispatch -> simulator | {e['leg_ms']['median']:.1f} | "
              f"{e['leg_ms']['p95']:.1f} |",
              "", f"leg / floor = {e['ratio_p50']} (p50), {e['ratio_p95']} (p95)"]
    t = results["throughput"]
    lines += ["", "Throughput", "", "| measure | median | spread (min–max) |", "|---|---:|---:|"]
    for clients, r in t["accept"].items():
        s = r["per_s"]
        err = f", errors {r['errors']}" if r["errors"] else ""
        lines.append(f"| single sends accepted/s, {clients} client{'s' if clients != '1' else ''} | "
                     f"{s['median']:.1f} | {s['min']:.1f}–{s['max']:.1f}{err} |")
    legs = t["legs"]
    lines.append(f"| legs/s accept -> delivered ({legs['legs_per_run']} legs per run) | "
                 f"{legs['per_s']['median']:.1f} | "
                 f"{legs['per_s']['min']:.1f}–{legs['per_s']['max']:.1f} |")
    lines.append(f"| one leg accept -> delivered (s, p50 / p95) | {legs['leg_latency_s']['median']:.2f} | "
                 f"p95 {legs['leg_latency_s']['p95']:.2f} |")
    lines += ["", "CPU per accepted single send (ms of user+system CPU, from /proc; 2 cores in all)", "",
              "| clients | " + " | ".join(CPU_COLUMNS) + " |", "|---|" + "---:|" * len(CPU_COLUMNS)]
    for clients, r in t["accept"].items():
        cpu = r.get("cpu_ms_per_accept", {})
        lines.append(f"| {clients} | " + " | ".join(f"{cpu.get(k, 0):.1f}" for k in CPU_COLUMNS) + " |")
    cpu = legs.get("cpu_ms_per_leg", {})
    lines.append("| per leg, accept -> delivered | " + " | ".join(f"{cpu.get(k, 0):.1f}" for k in CPU_COLUMNS) + " |")
    w = results["webhook"]
    lines += ["", "Webhook ingest (signed message.finalized, each applied to its own sent leg)", "",
              "| mode | p50 ms | p95 ms | p99 ms | events/s |", "|---|---:|---:|---:|---:|",
              f"| one at a time | {w['sequential_ms']['median']:.1f} | {w['sequential_ms']['p95']:.1f} | "
              f"{w['sequential_ms']['p99']:.1f} | {w['sequential_per_s']} |",
              f"| {w['concurrency']} concurrent | {w['concurrent_ms']['median']:.1f} | "
              f"{w['concurrent_ms']['p95']:.1f} | "
              f"{w['concurrent_ms']['p99']:.1f} | {w['concurrent_per_s']} |"]
    mem = results["memory"]
    lines += ["", "Peak RSS per function process after the load (MiB, gunicorn worker / master)", "",
              "| " + " | ".join(mem) + " |", "|" + "---:|" * len(mem),
              "| " + " | ".join(f"{v['worker_peak_mib']} / {v['master_peak_mib']}" for v in mem.values()) + " |"]
    if "cost" in results:
        lines += ["", "Cost per 1,000 delivered messages", "", cost.render(results["cost"], results["mode"])]
    lines += ["", "Targets", "", "| target | value | met |", "|---|---:|---|"]
    for tgt in results["targets"]:
        lines.append(f"| {tgt['target']} | {tgt['value']} | {'yes' if tgt['met'] else 'NO'} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts; finishes in under 2 minutes")
    parser.add_argument("--smoke", action="store_true", help="the least of each section (make test's smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument("--cold-runs", type=int, default=None, help="override the cold-start runs per side")
    parser.add_argument("--functions", default="", help="cold start: only these functions (comma-separated)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's state directory (logs)")
    parser.add_argument("--only", default="", help="comma-separated sections to run (debugging); "
                        "cold,roundtrips,cost,accept,throughput,legs,webhook,e2e,memory")
    args = parser.parse_args(argv)

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    if args.cold_runs:
        cfg["cold_runs"] = args.cold_runs
    only = set(filter(None, args.only.split(",")))

    def wanted(section: str) -> bool:
        return not only or section in only

    t_start = time.monotonic()
    results: dict = {"schema": SCHEMA, "mode": mode, "machine": machine.describe(),
                     "config": {k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v)
                                for k, v in cfg.items()}}
    results["when"] = results["machine"]["when"]
    timings: dict[str, float] = {}
    results["section_s"] = timings
    state_dir = Path(tempfile.mkdtemp(prefix="mmsgate-bench-"))
    log(f"[bench] {mode}: starting the stack (state in {state_dir})")
    ok = False
    try:
        with BenchStack(state_dir, probe=True) as bench:
            results["stack_start_s"] = bench.stack.timings.get("total")
            timings["stack_start"] = results["stack_start_s"]
            if wanted("cold"):
                t_section = time.monotonic()
                log(f"[bench] cold start: {cfg['cold_runs']} runs per function and per floor")
                results["cold_start"] = coldstart.measure(bench, cfg["cold_runs"], log=log,
                                                          only=set(filter(None, args.functions.split(","))))
                timings["cold"] = round(time.monotonic() - t_section, 1)
            if wanted("roundtrips"):
                t_section = time.monotonic()
                bench.reset()
                log("[bench] round trips per request (counted in the function processes)")
                results["roundtrips"] = roundtrips.measure(bench, cfg["roundtrip_single"], cfg["roundtrip_group"],
                                                           log=log)
                timings["roundtrips"] = round(time.monotonic() - t_section, 1)
            if wanted("cost"):
                t_section = time.monotonic()
                if mode != "smoke":  # the round-trip section left the queues empty; a smoke run saves the reset
                    bench.reset()
                log("[bench] cost per 1,000 delivered messages (counted in the function processes)")
                # a smoke run's round-trip section warmed the functions up; its figures are not used anyway
                results["cost"] = cost.measure(bench, cfg["cost"], log=log, warm=mode != "smoke")
                timings["cost"] = round(time.monotonic() - t_section, 1)
            if wanted("accept"):
                t_section = time.monotonic()
                bench.reset()
                log("[bench] accept latency")
                results["accept_latency"] = accept.measure(bench, cfg["accept_single"], cfg["accept_group"],
                                                           cfg["accept_rounds"], log=log)
                timings["accept"] = round(time.monotonic() - t_section, 1)
            results["throughput"] = {}
            if wanted("throughput"):
                t_section = time.monotonic()
                bench.reset()
                log("[bench] accept throughput")
                results["throughput"]["accept"] = throughput.accept_throughput(
                    bench, cfg["throughput_counts"], cfg["throughput_reps"], cfg["throughput_cap_s"], log=log)
                timings["throughput"] = round(time.monotonic() - t_section, 1)
            if wanted("legs"):
                t_section = time.monotonic()
                bench.reset()
                log("[bench] legs end to end")
                results["throughput"]["legs"] = throughput.legs_per_second(
                    bench, cfg["legs"], cfg["legs_reps"], cfg["legs_timeout_s"], log=log)
                timings["legs"] = round(time.monotonic() - t_section, 1)
            if wanted("webhook"):
                t_section = time.monotonic()
                bench.reset()
                log("[bench] webhook ingest")
                results["webhook"] = webhook.measure(bench, cfg["webhook_sequential"], cfg["webhook_concurrent"],
                                                     log=log)
                timings["webhook"] = round(time.monotonic() - t_section, 1)
            if wanted("e2e"):
                t_section = time.monotonic()
                bench.reset()
                log("[bench] end to end, idle stack")
                results["e2e"] = e2e.measure(bench, cfg["e2e_legs"], log=log)
                timings["e2e"] = round(time.monotonic() - t_section, 1)
            if wanted("memory"):
                results["memory"] = memory.measure(bench)
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            log(f"[bench] logs kept in {state_dir / 'logs'}")
    results["duration_s"] = round(time.monotonic() - t_start, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    complete = not only
    if complete:
        results["targets"] = evaluate(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, args.out)
    if "cost" in results:
        cost_table = cost.render(results["cost"], f"{mode}, {results['when']}")
        # the docs' table: whenever the bench runs, but the smoke test (a few messages make no figure)
        if mode != "smoke" and cost.rewrite(cost_table):
            log(f"[bench] wrote the cost table into {cost.DOC}")
    if complete:
        print(table(results))
    log(f"[bench] done in {results['duration_s']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
