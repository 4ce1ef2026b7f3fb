"""Count the billable operations one message costs, on the local stack (the numbers behind the cost
section of docs/deploy.md).

    .venv/bin/python -m tools.cost_probe [--singles 40] [--groups 2] [--group-size 20]

Starts the bench's stack (bench/harness.py: emulators, simulator, every function as its own process,
tenants with and without a customer webhook), with a `sitecustomize` on the function processes' path that
counts, in each function process, what Google bills for:

- Firestore: document reads (each document a get or batch get returns, found or missing; each document a
  query returns, and 1 for a query that returns none; 1 per aggregation query), writes and deletes (each
  write of a commit);
- Cloud Tasks: CreateTask calls (each task is also billed once per delivery attempt: those are the
  invocations of dispatch and notifier);
- invocations of each function, and their wall time;
- Cloud Storage requests of the functions (JSON API calls to the storage emulator, by method).

Then it sends single MMS (one media URL) to numbers the simulator delivers, from a tenant with a webhook
(so each leg also makes its message.sent and message.delivered customer events), waits until every leg is
delivered and every event received, and prints the counts per leg as JSON. It also calls the sweeper once
(the sweeper runs every minute whatever the traffic) and reports that run's counts.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import textwrap
import time
from pathlib import Path

SITECUSTOMIZE = textwrap.dedent('''
    """Counts billable operations of this process (tools/cost_probe.py). Active only in functions-framework
    processes when OPCOUNT_DIR is set."""
    import json, os, sys, threading, time, collections

    _DIR = os.environ.get("OPCOUNT_DIR")
    _TARGET = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--target=")), None)
    if _DIR and _TARGET:
        _counts = collections.Counter()
        _lock = threading.Lock()

        def _add(key, n=1):
            with _lock:
                _counts[key] += n

        def _flush():
            with _lock:
                data = dict(_counts)
            path = os.path.join(_DIR, f"{_TARGET}-{os.getpid()}.json")
            with open(path + ".tmp", "w") as fh:
                json.dump({"function": _TARGET, "counts": data}, fh)
            os.replace(path + ".tmp", path)

        def _pb(msg):
            return getattr(msg, "_pb", msg)

        def _patch_grpc():
            import grpc._channel as ch
            unary = ch._UnaryUnaryMultiCallable._blocking
            stream = ch._UnaryStreamMultiCallable.__call__

            def method_of(callable_):
                m = callable_._method
                return (m.decode() if isinstance(m, bytes) else str(m)).rsplit("/", 1)[-1]

            def unary_call(self, request, *args, **kwargs):
                method = method_of(self)
                result = unary(self, request, *args, **kwargs)
                if method == "Commit":
                    for w in _pb(request).writes:
                        _add("firestore.deletes" if w.HasField("delete") else "firestore.writes")
                elif method == "CreateTask":
                    _add("tasks.create_task")
                elif method == "RunAggregationQuery":
                    _add("firestore.reads")
                return result

            def stream_call(self, request, *args, **kwargs):
                method = method_of(self)
                inner = stream(self, request, *args, **kwargs)
                if method not in ("BatchGetDocuments", "RunQuery", "RunAggregationQuery"):
                    return inner
                state = {"docs": 0, "done": False}

                def finish():
                    if not state["done"]:
                        state["done"] = True
                        if method == "RunQuery":
                            _add("firestore.reads", max(1, state["docs"]))
                        elif method == "RunAggregationQuery":
                            _add("firestore.reads", 1)

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
                        if method == "BatchGetDocuments" and (pb.HasField("found") or pb.HasField("missing")):
                            _add("firestore.reads")
                        elif method == "RunQuery" and pb.HasField("document"):
                            state["docs"] += 1
                        return item

                    def __del__(self):
                        finish()

                    def __getattr__(self, name):
                        return getattr(inner, name)

                return Counted()

            ch._UnaryUnaryMultiCallable._blocking = unary_call
            ch._UnaryStreamMultiCallable.__call__ = stream_call

        def _patch_requests():
            import requests
            original = requests.Session.request
            storage = os.environ.get("STORAGE_EMULATOR_HOST", "storage.googleapis.com")
            storage = storage.split("://", 1)[-1]

            def request(self, method, url, *args, **kwargs):
                if storage and storage in str(url):
                    _add(f"storage.{method.upper()}")
                return original(self, method, url, *args, **kwargs)

            requests.Session.request = request

        def _patch_flask():
            import flask
            original = flask.Flask.wsgi_app

            def wsgi_app(self, environ, start_response):
                t0 = time.perf_counter()
                try:
                    return original(self, environ, start_response)
                finally:
                    _add("invocations")
                    _add("invocation_ms", round((time.perf_counter() - t0) * 1000))
                    _flush()

            flask.Flask.wsgi_app = wsgi_app

        _patch_grpc()
        _patch_requests()
        _patch_flask()
''')


def collect(directory: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for path in directory.glob("*.json"):
        data = json.loads(path.read_text())
        bucket = out.setdefault(data["function"], {})
        for key, value in data["counts"].items():
            bucket[key] = bucket.get(key, 0) + value
    return out


def delta(after: dict, before: dict) -> dict:
    return {fn: {k: v - before.get(fn, {}).get(k, 0) for k, v in counts.items()
                 if v - before.get(fn, {}).get(k, 0)} for fn, counts in after.items()}


def per_leg(counts: dict[str, dict[str, int]], legs: int) -> dict:
    totals: dict[str, float] = {}
    for fn, c in counts.items():
        for key, value in c.items():
            if key == "invocation_ms":
                continue
            totals[key] = totals.get(key, 0) + value
            totals[f"{fn}.{key}"] = value
    return {k: round(v / legs, 3) for k, v in sorted(totals.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cost_probe")
    parser.add_argument("--singles", type=int, default=40)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=20)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mmsgate-cost-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    counts_dir = work / "counts"
    counts_dir.mkdir()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "site"), os.environ.get("PYTHONPATH")]))
    os.environ["OPCOUNT_DIR"] = str(counts_dir)

    from bench.harness import BenchStack, fictional

    report: dict = {"method": __doc__.split("\n\n")[0]}
    with BenchStack(work / "stack", log_level="WARNING") as bench:
        os.environ.pop("PYTHONPATH", None)  # this process's own clients are not counted
        bench.resume()
        tenant = bench.hook_tenant

        def run(label: str, send, legs_expected: int) -> None:
            before = collect(counts_dir)
            received_before = bench.receiver.count
            ids = send()
            assert len(ids) == legs_expected, (label, len(ids))
            bench.wait_legs(ids, lambda leg: leg.get("status") == "delivered", timeout=300)
            deadline = time.monotonic() + 120
            while bench.receiver.count - received_before < 2 * legs_expected:  # message.sent + .delivered
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label}: only {bench.receiver.count - received_before} customer events")
                time.sleep(0.2)
            time.sleep(2.0)  # let the last counters flush
            counts = delta(collect(counts_dir), before)
            report[label] = {"legs": legs_expected, "per_leg": per_leg(counts, legs_expected),
                             "mean_ms": {fn: round(c.get("invocation_ms", 0) / c["invocations"], 1)
                                         for fn, c in counts.items() if c.get("invocations")}}

        def singles():
            return bench.send_singles(args.singles, tenant, to=fictional(1))

        def groups():
            ids: list[str] = []
            for _ in range(args.groups):
                client = bench.client("group", tenant)
                try:
                    status, body, _ = client.post_json("/api/v1/messages/group", bench.group_body(args.group_size))
                finally:
                    client.close()
                assert status == 200, (status, body[:300])
                ids += [m["message_id"] for m in json.loads(body)["messages"]]
            return ids

        run("single_mms_with_customer_webhook", singles, args.singles)
        if args.groups:
            run(f"group_of_{args.group_size}_with_customer_webhook", groups, args.groups * args.group_size)

        before = collect(counts_dir)
        client = bench.client("sweeper")
        try:
            client.post_json("/", {})
        finally:
            client.close()
        time.sleep(1.0)
        report["one_sweep_idle"] = delta(collect(counts_dir), before).get("sweeper", {})
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
