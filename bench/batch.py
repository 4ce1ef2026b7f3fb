"""Batch sends (``POST /api/v1/messages/batch``) on the local stack: accept time, the accepting process's peak
memory, time until every leg is final, Firestore and Cloud Tasks operations per leg, the hottest document per
second under a paced batch, and legs/s with the tasks emulator delivering one task at a time versus its default.
Run by hand, not part of ``make bench``:

    .venv/bin/python -m bench.batch [--recipients 10000] [--speed-per-minute 6000] [--paced-recipients 2000]
                                    [--serial-recipients N | --skip-serial] [--out bench/results/batch.json]

Starts the bench's stack (bench/harness.py) with a ``sitecustomize`` on the function processes' path that
counts, in every function process, each Firestore and Cloud Tasks call, the documents each write of a commit
touched (with the second it was committed in), the documents a batch get or query returned (1 for a query that
returned none, 1 per count aggregation) and each CreateTask (chunk task or leg task), as tools/rpc_probe.py and
bench/hotspots.py do; each process flushes its counters to a file every half second.

1. Unpaced batch (default stack, tasks emulator at its default concurrency): a warm-up batch of 5, then one of
   ``--recipients`` distinct numbers the simulator delivers; time to 202 (client side), VmHWM of the batch
   function's processes, time until ``progress.final == total`` (GET /api/v1/batches/{id} every 2 s; also from
   Firestore's own timestamps: the last leg's final history entry), legs/s, operations per leg.
2. Paced batch (same stack, emptied): ``--paced-recipients`` at ``--speed-per-minute``; writes per
   (second, document), the hottest documents and the worst per kind.
3. The same unpaced batch on a second stack whose tasks emulator delivers one task at a time per queue
   (``StackConfig.tasks_max_concurrent = 1``, the emulator's ``--max-concurrent``).

The progress polls are served by the ``reads`` function: its operations are reported apart (``observer``), not
in the per-leg figures.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import BenchError, BenchStack, Client, Tenant

ROOT = Path(__file__).resolve().parents[1]
OBSERVER = "batch"  # also serves GET /api/v1/batches/{id}: the bench's polls (counted with the accept)
POLL_SECONDS = 2.0

SITECUSTOMIZE = textwrap.dedent('''
    """Counts the Firestore and Cloud Tasks operations of this process, by document kind, and the writes per
    (second, document) (bench/batch.py). Active only in functions-framework processes when BATCHBENCH_DIR is
    set."""
    import collections, json, os, sys, threading, time

    _DIR = os.environ.get("BATCHBENCH_DIR")
    _TARGET = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--target=")), None)
    if _DIR and _TARGET:
        _counts = collections.Counter()
        _writes = collections.Counter()  # (second, document) -> writes
        _lock = threading.Lock()
        _state = {"dirty": False, "pid": None}

        def _kind(path):
            parts = path.split("/")
            if len(parts) >= 4 and parts[2] == "balance_shards":
                return "tenant balance shard"
            if parts[0] == "tenants" and len(parts) == 2:
                return "tenant"
            if parts[0] == "messages" and len(parts) == 2:
                return "leg (messages)"
            return parts[0] if len(parts) == 2 else "/".join(parts[0::2])

        def _rel(name):
            return name.split("/documents/", 1)[-1]

        def _add(key, n=1):
            with _lock:
                _counts[key] += n
                _state["dirty"] = True

        def _flush():
            with _lock:
                if not _state["dirty"]:
                    return
                _state["dirty"] = False
                data = {"function": _TARGET, "counts": dict(_counts),
                        "writes": [[s, d, n] for (s, d), n in _writes.items()]}
            path = os.path.join(_DIR, f"{_TARGET}-{os.getpid()}.json")
            tmp = f"{path}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)

        def _flusher():
            while True:
                time.sleep(0.5)
                try:
                    _flush()
                except Exception:
                    pass

        def _ensure_flusher():
            if _state["pid"] != os.getpid():  # started in the worker, after gunicorn's fork
                _state["pid"] = os.getpid()
                threading.Thread(target=_flusher, name="batchbench-flush", daemon=True).start()

        def _pb(msg):
            return getattr(msg, "_pb", msg)

        def _query_kind(request, aggregation):
            try:
                q = request.structured_aggregation_query.structured_query if aggregation else request.structured_query
                parent = _rel(request.parent) if "/documents/" in request.parent else ""
                coll = q.from_[0].collection_id if hasattr(q, "from_") else getattr(q, "from")[0].collection_id
                return _kind(f"{parent}/{coll}/x".lstrip("/")) if parent else coll
            except Exception:
                return "?"

        def _patch_grpc():
            import grpc._channel as ch
            unary = ch._UnaryUnaryMultiCallable._blocking
            stream = ch._UnaryStreamMultiCallable.__call__

            def method_of(callable_):
                m = callable_._method
                m = m.decode() if isinstance(m, bytes) else str(m)
                service, _, name = m.lstrip("/").partition("/")
                return ("tasks" if "tasks" in service.lower() else "firestore"
                        if "firestore" in service.lower() else service), name

            def unary_call(self, request, *args, **kwargs):
                service, method = method_of(self)
                result = unary(self, request, *args, **kwargs)
                _add(f"calls|{service}.{method}")
                pb = _pb(request)
                if method == "Commit":
                    second = int(time.time())
                    with _lock:
                        for w in pb.writes:
                            if w.HasField("update"):
                                doc, op = w.update.name, "writes"
                            elif w.HasField("transform"):
                                doc, op = w.transform.document, "writes"
                            else:
                                doc, op = w.delete, "deletes"
                            doc = _rel(doc)
                            _counts[f"firestore.{op}|{_kind(doc)}"] += 1
                            _writes[(second, doc)] += 1
                        _state["dirty"] = True
                elif method == "CreateTask":
                    body = pb.task.http_request.body
                    what = "chunk" if b"batch_chunk" in body else "leg" if b"message_id" in body else "other"
                    _add(f"tasks.create_task|{pb.parent.rsplit('/', 1)[-1]}:{what}")
                elif method == "GetDocument":
                    _add(f"firestore.reads|{_kind(_rel(pb.name))}")
                return result

            def stream_call(self, request, *args, **kwargs):
                service, method = method_of(self)
                inner = stream(self, request, *args, **kwargs)
                if service == "firestore" or service == "tasks":
                    _add(f"calls|{service}.{method}")
                if method not in ("BatchGetDocuments", "RunQuery", "RunAggregationQuery"):
                    return inner
                pb_request = _pb(request)
                state = {"docs": 0, "done": False}

                def finish():
                    if not state["done"]:
                        state["done"] = True
                        if method == "RunQuery" and not state["docs"]:
                            _add(f"firestore.reads|{_query_kind(pb_request, False)} (empty query)")
                        elif method == "RunAggregationQuery":
                            _add(f"firestore.reads|{_query_kind(pb_request, True)} (count)")

                class Counted:
                    def __iter__(self):
                        return self

                    def __next__(self):
                        try:
                            item = next(inner)
                        except StopIteration:
                            finish()
                            raise
                        pb = _pb(item)
                        if method == "BatchGetDocuments":
                            if pb.HasField("found"):
                                _add(f"firestore.reads|{_kind(_rel(pb.found.name))}")
                            elif pb.HasField("missing"):
                                _add(f"firestore.reads|{_kind(_rel(pb.missing))}")
                        elif method == "RunQuery" and pb.HasField("document"):
                            state["docs"] += 1
                            _add(f"firestore.reads|{_kind(_rel(pb.document.name))}")
                        return item

                    def __del__(self):
                        finish()

                    def __getattr__(self, name):
                        return getattr(inner, name)

                return Counted()

            ch._UnaryUnaryMultiCallable._blocking = unary_call
            ch._UnaryStreamMultiCallable.__call__ = stream_call

        def _patch_flask():
            import flask
            original = flask.Flask.wsgi_app

            def wsgi_app(self, environ, start_response):
                _ensure_flusher()
                t0 = time.perf_counter()
                try:
                    return original(self, environ, start_response)
                finally:
                    _add("invocations")
                    _add("invocation_ms", round((time.perf_counter() - t0) * 1000))

            flask.Flask.wsgi_app = wsgi_app

        _patch_grpc()
        _patch_flask()
''')


# -- numbers ---------------------------------------------------------------------------------------
def area_codes(n: int) -> list[str]:
    """``n`` US area codes (in order) whose +1NPA55501XX numbers are valid, US and priced like any US number."""
    from shared.rules.phone import InvalidNumber, describe

    found = []
    for npa in range(200, 1000):
        try:
            if all(describe(f"+1{npa}55501{xx:02d}")[1:] == ("US", True) for xx in (0, 79)):
                found.append(f"{npa}")
        except InvalidNumber:
            continue
        if len(found) == n:
            return found
    raise BenchError(f"only {len(found)} usable area codes, {n} needed")


def numbers(n: int) -> list[str]:
    """``n`` distinct numbers the simulator delivers (outcomes 00-79), 80 per area code."""
    areas = area_codes((n + 79) // 80)
    return [f"+1{areas[i // 80]}55501{i % 80:02d}" for i in range(n)]


# -- counters --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Snapshot:
    counts: dict[str, collections.Counter]  # function -> key -> n
    writes: collections.Counter  # (second, document) -> n

    @classmethod
    def read(cls, directory: Path) -> Snapshot:
        counts: dict[str, collections.Counter] = {}
        writes: collections.Counter = collections.Counter()
        for path in directory.glob("*.json"):
            data = json.loads(path.read_text())
            counts.setdefault(data["function"], collections.Counter()).update(data["counts"])
            for second, doc, n in data["writes"]:
                writes[(second, doc)] += n
        return cls(counts, writes)

    def minus(self, before: Snapshot) -> Snapshot:
        counts = {fn: c - before.counts.get(fn, collections.Counter()) for fn, c in self.counts.items()}
        return Snapshot({fn: c for fn, c in counts.items() if c}, self.writes - before.writes)


def settle(directory: Path, timeout: float = 15.0) -> Snapshot:
    """The counters once every process has flushed its last request (two equal reads a second apart)."""
    deadline = time.monotonic() + timeout
    last = Snapshot.read(directory)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        current = Snapshot.read(directory)
        if current.counts == last.counts and current.writes == last.writes:
            return current
        last = current
    return last


def per_leg(delta: Snapshot, legs: int) -> dict[str, Any]:
    """Operations per leg over every function but the observer, by function and by document kind."""
    def r(v: float) -> float:
        return round(v / max(legs, 1), 3)

    totals: collections.Counter = collections.Counter()
    by_function: dict[str, dict[str, float]] = {}
    by_kind: dict[str, dict[str, float]] = collections.defaultdict(dict)
    calls: collections.Counter = collections.Counter()
    invocations: dict[str, dict[str, float]] = {}
    for fn, counts in sorted(delta.counts.items()):
        if fn == OBSERVER:
            continue
        fn_totals: collections.Counter = collections.Counter()
        for key, n in counts.items():
            if key in ("invocations", "invocation_ms"):
                continue
            metric, _, detail = key.partition("|")
            if metric == "calls":
                calls[detail] += n
                continue
            fn_totals[metric] += n
            totals[metric] += n
            kind_key = f"{fn}: {detail}"
            by_kind[metric][detail] = by_kind[metric].get(detail, 0) + n
            by_kind[f"{metric} by function"][kind_key] = n
        by_function[fn] = {k: r(v) for k, v in sorted(fn_totals.items())}
        if counts.get("invocations"):
            invocations[fn] = {"per_leg": r(counts["invocations"]),
                               "mean_ms": round(counts.get("invocation_ms", 0) / counts["invocations"], 1)}
    return {
        "legs": legs,
        "firestore_writes": r(totals["firestore.writes"]),
        "firestore_deletes": r(totals["firestore.deletes"]),
        "firestore_reads": r(totals["firestore.reads"]),
        "tasks_create_task": r(totals["tasks.create_task"]),
        "by_function": by_function,
        "by_kind": {metric: {k: r(v) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}
                    for metric, d in sorted(by_kind.items())},
        "rpc_calls_per_leg": {k: r(v) for k, v in sorted(calls.items())},
        "invocations": invocations,
    }


def observer(delta: Snapshot, polls: int) -> dict[str, Any]:
    counts = delta.counts.get(OBSERVER, collections.Counter())
    return {"polls": polls, "firestore_reads": sum(n for k, n in counts.items() if k.startswith("firestore.reads")),
            "per_poll": {k: round(n / max(polls, 1), 2) for k, n in sorted(counts.items())
                         if not k.startswith("invocation")}}


def _kind(doc: str) -> str:
    from bench.hotspots import kind

    return "leg (messages)" if doc.startswith("messages/") and doc.count("/") == 1 else kind(doc)


def hotspots(writes: collections.Counter, top: int = 10) -> dict[str, Any]:
    """The most writes any one document took in one second, the hottest documents, and the worst per kind
    (with the longest run of consecutive seconds in which the document took more than one write)."""
    per_doc: dict[str, dict[int, int]] = collections.defaultdict(dict)
    for (second, doc), n in writes.items():
        per_doc[doc][second] = n

    def longest_run(secs: dict[int, int]) -> int:
        best = run = 0
        prev = None
        for s in sorted(secs):
            if secs[s] > 1:
                run = run + 1 if prev is not None and s == prev + 1 and secs.get(prev, 0) > 1 else 1
                best = max(best, run)
            prev = s
        return best

    def row(doc: str, secs: dict[int, int]) -> dict[str, Any]:
        return {"document": doc, "kind": _kind(doc), "max_writes_in_one_second": max(secs.values()),
                "seconds_with_more_than_one_write": sum(1 for n in secs.values() if n > 1),
                "longest_run_of_seconds_above_one": longest_run(secs), "total_writes": sum(secs.values()),
                "seconds_written": len(secs)}

    ranked = sorted(per_doc.items(), key=lambda item: (-max(item[1].values()), -sum(item[1].values())))
    by_kind: dict[str, dict[str, Any]] = {}
    for doc, secs in per_doc.items():
        entry = row(doc, secs)
        worst = by_kind.get(entry["kind"])
        summary = by_kind.setdefault(entry["kind"], {"documents": 0, "total_writes": 0})
        summary["documents"] += 1
        summary["total_writes"] += entry["total_writes"]
        if worst is None or (entry["max_writes_in_one_second"], entry["total_writes"]) > (
                worst.get("max_writes_in_one_second", 0), worst.get("worst_total_writes", 0)):
            summary.update({"max_writes_in_one_second": entry["max_writes_in_one_second"],
                            "worst_document": doc, "worst_total_writes": entry["total_writes"],
                            "worst_seconds_above_one": entry["seconds_with_more_than_one_write"],
                            "worst_longest_run_above_one": entry["longest_run_of_seconds_above_one"]})
        summary["documents_with_a_second_above_one"] = summary.get("documents_with_a_second_above_one", 0) + (
            1 if entry["max_writes_in_one_second"] > 1 else 0)
    return {"max_writes_one_document_one_second": max((max(s.values()) for s in per_doc.values()), default=0),
            "hottest": [row(doc, secs) for doc, secs in ranked[:top]],
            "by_kind": dict(sorted(by_kind.items()))}


# -- the stack -------------------------------------------------------------------------------------
@dataclasses.dataclass
class BatchBench(BenchStack):
    tasks_max_concurrent: int | None = None  # None: the stack's default

    def start(self) -> BatchBench:
        from tools import stack as stack_module

        original = stack_module.StackConfig.for_tests
        if self.tasks_max_concurrent is not None:
            n = self.tasks_max_concurrent

            def for_tests(state_dir: Path | str, **overrides: Any) -> Any:
                return original(state_dir, **{**overrides, "tasks_max_concurrent": n})

            stack_module.StackConfig.for_tests = staticmethod(for_tests)  # type: ignore[method-assign,assignment]
        try:
            super().start()
        finally:
            stack_module.StackConfig.for_tests = original  # type: ignore[method-assign]
        return self

    @property
    def tasks_concurrency(self) -> int:
        return int(self.stack.config.tasks_max_concurrent)  # type: ignore[attr-defined]


def vm(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) // 1024  # MiB
    except OSError:
        pass
    return out


def memory(bench: BenchStack, function: str) -> dict[str, dict[str, int]]:
    return {str(pid): vm(pid) for pid in bench.function_pids(function)}


@contextlib.contextmanager
def client(bench: BenchStack, function: str, tenant: Tenant, timeout: float = 180.0) -> Iterator[Client]:
    c = Client(bench.url(function), headers=tenant.headers, timeout=timeout)
    try:
        yield c
    finally:
        c.close()


def send_batch(bench: BenchStack, tenant: Tenant, to: list[str], speed: dict | None = None) -> tuple[str, float]:
    body: dict[str, Any] = {"to": to, "body": "mmsgate bench batch"}
    if speed:
        body["sending_speed"] = speed
    with client(bench, "batch", tenant) as c:
        status, raw, seconds = c.post_json("/api/v1/messages/batch", body)
    if status != 202:
        raise BenchError(f"batch answered {status}: {raw[:300]!r}")
    return json.loads(raw)["data"]["id"], seconds


def wait_final(bench: BenchStack, tenant: Tenant, batch_id: str, since: float, timeout: float,
               interval: float = POLL_SECONDS) -> dict[str, Any]:
    """Poll GET /api/v1/batches/{id} until progress.final == total (bounded); returns the last progress, the
    seconds from ``since`` to the poll that saw it, and the number of polls."""
    deadline = time.monotonic() + timeout
    polls = 0
    with client(bench, OBSERVER, tenant, timeout=60) as c:
        while True:
            status, raw, _ = c.request("GET", f"/api/v1/batches/{batch_id}")
            polls += 1
            if status != 200:
                raise BenchError(f"progress answered {status}: {raw[:300]!r}")
            data = json.loads(raw)["data"]
            progress = data["progress"]
            if progress["final"] >= progress["total"]:
                return {"progress": progress, "status": data["status"], "seconds": time.perf_counter() - since,
                        "polls": polls}
            if time.monotonic() > deadline:
                raise BenchError(f"batch {batch_id} not final after {timeout:.0f} s: {progress}")
            time.sleep(interval)


def leg_times(bench: BenchStack, batch_id: str) -> dict[str, Any]:
    """From Firestore's own timestamps: the batch's created_at, the first leg's provider hand-over (sending) and
    the last leg's final history entry."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from infra import collections as C

    query = (bench.store.db.collection(C.MESSAGES).where(filter=FieldFilter("batch_id", "==", batch_id))
             .select(["history", "created_at", "status"]))
    created, first_sending, last_final, n = None, None, None, 0
    writes_per_leg: collections.Counter = collections.Counter()
    for snap in query.stream():
        doc = snap.to_dict() or {}
        n += 1
        history = doc.get("history") or []
        writes_per_leg[len(history)] += 1
        created = doc.get("created_at") if created is None else min(created, doc.get("created_at"))
        for h in history:
            if h.get("to") == "sending":
                first_sending = h["at"] if first_sending is None else min(first_sending, h["at"])
        if history:
            last_final = history[-1]["at"] if last_final is None else max(last_final, history[-1]["at"])
    if not (created and last_final):
        return {"legs": n}
    out: dict[str, Any] = {"legs": n, "history_lengths": dict(sorted(writes_per_leg.items())),
                           "created_to_last_final_s": round((last_final - created).total_seconds(), 2)}
    if first_sending:
        out["first_sending_to_last_final_s"] = round((last_final - first_sending).total_seconds(), 2)
    out["last_final_at"] = last_final.isoformat()
    out["created_at"] = created.isoformat()
    return out


def unpaced_run(bench: BatchBench, counts_dir: Path, recipients: int, timeout: float,
                detail: bool = True) -> dict[str, Any]:
    tenant = bench.new_tenant(name="bench-batch")
    warm_id, _ = send_batch(bench, tenant, numbers(5))  # the batch function's first request is not measured
    wait_final(bench, tenant, warm_id, time.perf_counter(), timeout=120, interval=0.5)
    to = numbers(recipients)
    memory_before = memory(bench, "batch")
    before = settle(counts_dir)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    wall0 = dt.datetime.now(dt.UTC)
    batch_id, seconds = send_batch(bench, tenant, to)
    accepted_s = time.perf_counter() - t0
    memory_after = memory(bench, "batch")
    done = wait_final(bench, tenant, batch_id, t0, timeout)
    delta = settle(counts_dir).minus(before)
    delivered = done["progress"]["by_status"].get("delivered", 0)
    final = done["progress"]["final"]
    times = leg_times(bench, batch_id)
    precise = None
    if times.get("last_final_at"):
        precise = (dt.datetime.fromisoformat(times["last_final_at"]) - wall0).total_seconds()
    out: dict[str, Any] = {
        "recipients": recipients, "batch_id": batch_id, "tasks_max_concurrent": bench.tasks_concurrency,
        "load_average_at_start": [round(x, 2) for x in load_before],
        "accept_s": round(accepted_s, 3), "accept_request_s": round(seconds, 3),
        "until_all_final_s_polled": round(done["seconds"], 2),
        "until_all_final_s_firestore": round(precise, 2) if precise is not None else None,
        "legs_per_second_polled": round(final / done["seconds"], 1),
        "legs_per_second_firestore": round(final / precise, 1) if precise else None,
        "progress": done["progress"], "status": done["status"], "leg_timestamps": times,
    }
    if detail:
        pids_hwm = {pid: v.get("VmHWM") for pid, v in memory_after.items()}
        out["batch_function_memory_mib"] = {
            "peak_rss_VmHWM_max_over_processes": max((v for v in pids_hwm.values() if v), default=None),
            "before_request": memory_before, "after_request": memory_after,
            "note": "gunicorn master and its worker; the worker serves the request"}
        out["per_leg"] = per_leg(delta, delivered or final)
        out["observer"] = observer(delta, done["polls"])
        out["hotspots_unpaced"] = hotspots(delta.writes, top=6)
    else:
        out["per_leg_summary"] = {k: v for k, v in per_leg(delta, delivered or final).items()
                                  if k in ("firestore_writes", "firestore_reads", "tasks_create_task")}
    return out


def paced_run(bench: BatchBench, counts_dir: Path, recipients: int, per_minute: int, timeout: float) -> dict:
    tenant = bench.new_tenant(name="bench-batch-paced")
    to = numbers(recipients)
    before = settle(counts_dir)
    t0 = time.perf_counter()
    batch_id, seconds = send_batch(bench, tenant, to, {"amount": per_minute, "time_unit": "minute"})
    done = wait_final(bench, tenant, batch_id, t0, timeout, interval=1.0)
    delta = settle(counts_dir).minus(before)
    final = done["progress"]["final"]
    times = leg_times(bench, batch_id)
    return {"recipients": recipients, "sending_speed": {"amount": per_minute, "time_unit": "minute"},
            "batch_id": batch_id, "accept_s": round(seconds, 3), "until_all_final_s_polled": round(done["seconds"], 2),
            "legs_per_second_polled": round(final / done["seconds"], 1), "progress": done["progress"],
            "leg_timestamps": times, "per_leg_summary": {k: v for k, v in per_leg(delta, final).items()
                                                         if k in ("firestore_writes", "firestore_reads",
                                                                  "tasks_create_task")},
            **hotspots(delta.writes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch")
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--speed-per-minute", type=int, default=6_000, help="the paced batch's sending speed")
    parser.add_argument("--paced-recipients", type=int, default=2_000)
    parser.add_argument("--serial-recipients", type=int, default=None,
                        help="recipients of the run with the tasks emulator at concurrency 1 (default: --recipients)")
    parser.add_argument("--skip-serial", action="store_true")
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--serial-only", action="store_true", help=argparse.SUPPRESS)  # the child of the serial run
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds to wait for a batch to be final")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch.json")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mmsgate-batchbench-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    pythonpath = os.environ.get("PYTHONPATH")

    from bench.machine import describe

    report: dict[str, Any] = {"method": __doc__.split("\n\n")[0], "date": dt.datetime.now(dt.UTC).isoformat(),
                              "machine": describe(), "config": vars(args) | {"out": str(args.out)}}
    section_s: dict[str, float] = {}
    report["section_s"] = section_s
    serial_out = work / "serial.json"

    def stack(name: str, concurrency: int | None) -> BatchBench:
        counts_dir = work / name / "counts"
        counts_dir.mkdir(parents=True)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "site"), pythonpath]))
        os.environ["BATCHBENCH_DIR"] = str(counts_dir)
        bench = BatchBench(work / name / "stack", log_level="WARNING", tasks_max_concurrent=concurrency)
        try:
            bench.start()
        except BaseException:
            bench.stop()
            raise
        finally:
            os.environ.pop("PYTHONPATH", None)  # this process's own clients are not counted
            if pythonpath is not None:
                os.environ["PYTHONPATH"] = pythonpath
            os.environ.pop("BATCHBENCH_DIR", None)
        bench.resume()
        return bench

    if args.serial_only:
        bench = stack("serial", 1)
        try:
            serial = unpaced_run(bench, work / "serial" / "counts", args.recipients, args.timeout, detail=False)
        finally:
            bench.stop()
        args.out.write_text(json.dumps(serial, indent=2, default=str) + "\n")
        return 0

    t = time.monotonic()
    bench = stack("default", None)
    try:
        counts_dir = work / "default" / "counts"
        report["unpaced"] = unpaced_run(bench, counts_dir, args.recipients, args.timeout)
        section_s["unpaced"] = round(time.monotonic() - t, 1)
        print(json.dumps({"unpaced": report["unpaced"]}, indent=2), flush=True)
        if not args.skip_paced:
            t = time.monotonic()
            bench.reset()
            bench.resume()
            report["paced"] = paced_run(bench, counts_dir, args.paced_recipients, args.speed_per_minute,
                                        args.timeout)
            section_s["paced"] = round(time.monotonic() - t, 1)
            print(json.dumps({"paced": report["paced"]}, indent=2), flush=True)
    finally:
        bench.stop()
    if not args.skip_serial:
        # A second stack in its own process: this process's clients are cached for the first stack's emulators.
        t = time.monotonic()
        command = [sys.executable, "-m", "bench.batch", "--serial-only", "--recipients",
                   str(args.serial_recipients or args.recipients), "--timeout", str(args.timeout),
                   "--out", str(serial_out)]
        write(report, args.out)  # the figures so far, should the serial run not finish
        child = subprocess.Popen(command, cwd=ROOT, stdout=sys.stderr)
        try:
            code = child.wait(timeout=args.timeout + 300)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)  # KeyboardInterrupt: the child stops its stack on the way out
            try:
                code = child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
        if code != 0:
            report["throughput"] = {"error": f"the run at concurrency 1 did not finish (exit status {code})"}
        section_s["serial"] = round(time.monotonic() - t, 1)
    if serial_out.exists():
        serial = json.loads(serial_out.read_text())
        default = report["unpaced"]
        report["throughput"] = {
            "concurrency_1": {k: serial[k] for k in ("recipients", "tasks_max_concurrent", "accept_s",
                                                     "until_all_final_s_polled", "until_all_final_s_firestore",
                                                     "legs_per_second_polled", "legs_per_second_firestore",
                                                     "load_average_at_start")},
            "default": {k: default[k] for k in ("recipients", "tasks_max_concurrent", "accept_s",
                                                "until_all_final_s_polled", "until_all_final_s_firestore",
                                                "legs_per_second_polled", "legs_per_second_firestore",
                                                "load_average_at_start")},
            "serial_run": serial}
    report["section_s"] = section_s
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(write(report, args.out))
    return 0


def write(report: dict[str, Any], out: Path) -> str:
    text = json.dumps(report, indent=2, default=str)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return text


if __name__ == "__main__":
    raise SystemExit(main())
