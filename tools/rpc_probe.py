"""Count the round trips each request of a function process makes, and how many of them are sequential.

The bench (``bench/roundtrips.py``) starts the stack's function processes with ``site_dir()`` on their
``PYTHONPATH`` and ``MMSGATE_RPC_PROBE=<directory>`` in their environment. The ``sitecustomize`` there calls
``install()`` in every functions-framework process (``--target=NAME`` in its argv), which patches:

- Flask's ``wsgi_app``: one functions-framework request is one trace (a ``contextvars`` variable, copied
  into every thread-pool task the request submits, so calls made concurrently on pool threads count);
- gRPC's unary-unary and unary-stream callables: every Firestore and Cloud Tasks call, with the Firestore
  documents read (each found or missing document of a batch get, each document a query returns, at least 1
  per query or aggregation) and written (each write of a commit; ``deletes``: those of them that delete), and
  Cloud Tasks' CreateTask calls;
- ``requests.Session.request`` (Cloud Storage's JSON API) and ``httpx.Client.send`` (the media fetch, the
  provider, customer webhooks): each HTTP call, named ``storage``, ``provider`` or ``http``.

Recording is on only while the file ``<directory>/on`` exists (one ``stat`` per request otherwise), so the
timing sections of the bench run unprobed. Each traced request appends one JSON line to
``<directory>/<target>-<pid>.jsonl``: its path, and each call's kind, method, start and end
(``time.perf_counter`` of that process) and documents read/written.

``rounds(calls)`` is the number of *sequential* round trips: calls that overlap in time are one round;
the figure is the length of the longest chain of calls each of which starts after the previous one ended.
It is a count, not a timing: two calls made one after the other count 2 however fast they were.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ENV = "MMSGATE_RPC_PROBE"
ROOT = Path(__file__).resolve().parents[1]
SITECUSTOMIZE = f'''"""tools/rpc_probe.py: installs the round-trip probe in functions-framework processes."""
import os as _os, sys as _sys
if _os.environ.get("{ENV}") and any(a.startswith("--target=") for a in _sys.argv):
    _sys.path.append({str(ROOT)!r})
    from tools import rpc_probe as _probe
    _probe.install(_os.environ["{ENV}"], next(a.split("=", 1)[1] for a in _sys.argv if a.startswith("--target=")))
'''

# Which round trips count toward the accept target ("to Firestore/Cloud Tasks").
DATABASE_KINDS = ("firestore", "tasks")


def site_dir() -> Path:
    """A directory holding the probe's ``sitecustomize.py`` (put it on the function processes' PYTHONPATH)."""
    directory = Path(tempfile.mkdtemp(prefix="mmsgate-rpc-site-"))
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return directory


def enable(directory: Path, on: bool = True) -> None:
    flag = Path(directory) / "on"
    if on:
        flag.touch()
    else:
        flag.unlink(missing_ok=True)


def clear(directory: Path) -> None:
    for path in Path(directory).glob("*.jsonl"):
        path.unlink(missing_ok=True)


def load(directory: Path) -> list[dict]:
    """Every traced request (``target``, ``path``, ``calls``) written so far."""
    out = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


# ---------------------------------------------------------------------------------------- analysis
def rounds(calls: Sequence[dict], kinds: Iterable[str] | None = None) -> int:
    """The longest chain of calls (of ``kinds``; all if None) each starting after the previous one ended."""
    wanted = set(kinds) if kinds is not None else None
    spans = sorted((c["start"], c["end"]) for c in calls if wanted is None or c["kind"] in wanted)
    best: list[tuple[float, int]] = []  # (end, chain length ending with that call)
    longest = 0
    for start, end in spans:
        chain = 1 + max((n for e, n in best if e <= start), default=0)
        best.append((end, chain))
        longest = max(longest, chain)
    return longest


def sequence(calls: Sequence[dict]) -> list[list[str]]:
    """The calls grouped in rounds as they happened (a new round starts when a call starts after every call
    of the current round ended): a readable picture of one request's critical path."""
    out: list[list[str]] = []
    round_end = None
    for c in sorted(calls, key=lambda c: c["start"]):
        label = f"{c['kind']}.{c['method']}"
        if round_end is None or c["start"] >= round_end:
            out.append([label])
            round_end = c["end"]
        else:
            out[-1].append(label)
            round_end = max(round_end, c["end"])
    return out


def timeline(trace: dict) -> list[tuple[str, float]]:
    """One request's wall time in segments, in order: ``app`` (the function's own work between rounds: parsing,
    checks, building documents, encoding, rendering) and each round of calls (label, ms)."""
    out: list[tuple[str, float]] = []
    at = trace["t0"]
    rounds_: list[list[dict]] = []
    round_end = None
    for c in sorted(trace["calls"], key=lambda c: c["start"]):
        if round_end is None or c["start"] >= round_end:
            rounds_.append([c])
            round_end = c["end"]
        else:
            rounds_[-1].append(c)
            round_end = max(round_end, c["end"])
    for calls in rounds_:
        start, end = min(c["start"] for c in calls), max(c["end"] for c in calls)
        out.append(("app", (start - at) * 1000))
        names = sorted({f"{c['kind']}.{c['method']}" for c in calls})
        out.append(("+".join(names) + (f" x{len(calls)}" if len(calls) > len(names) else ""), (end - start) * 1000))
        at = end
    out.append(("app", (trace["t1"] - at) * 1000))
    return out


def breakdown(traces: Sequence[dict]) -> dict:
    """Median milliseconds of each segment of the requests whose rounds have the typical shape, and the
    median total: where a request's time goes."""
    shapes: dict[tuple[str, ...], list[list[tuple[str, float]]]] = {}
    for t in traces:
        line = timeline(t)
        shapes.setdefault(tuple(label for label, _ in line), []).append(line)
    shape, lines = max(shapes.items(), key=lambda kv: len(kv[1]))

    def median(values: list[float]) -> float:
        values = sorted(values)
        return round(values[len(values) // 2], 2)

    segments = [[label, median([line[i][1] for line in lines])] for i, label in enumerate(shape)]
    app = round(sum(ms for label, ms in segments if label == "app"), 2)
    return {"n": len(lines), "segments": segments, "app_ms": app,
            "calls_ms": round(sum(ms for label, ms in segments if label != "app"), 2),
            "total_ms": median([(t["t1"] - t["t0"]) * 1000 for t in traces])}


def summarize(traces: Sequence[dict]) -> dict:
    """Per request of one endpoint: sequential rounds (Firestore + Cloud Tasks; and all calls, HTTP
    included), calls per kind, Firestore documents read and written, Cloud Tasks tasks created."""
    if not traces:
        return {"n": 0}
    per = []
    for t in traces:
        calls = t["calls"]
        kinds: dict[str, int] = {}
        for c in calls:
            kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
        per.append({
            "rounds_db": rounds(calls, DATABASE_KINDS),
            "rounds_all": rounds(calls),
            "calls": len(calls),
            "kinds": kinds,
            "reads": sum(c.get("reads", 0) for c in calls if c["kind"] == "firestore"),
            "writes": sum(c.get("writes", 0) for c in calls if c["kind"] == "firestore"),
            "tasks_created": sum(1 for c in calls if c["kind"] == "tasks" and c["method"] == "CreateTask"),
            "sequence": sequence(calls),
        })
    n = len(per)
    db = sorted(p["rounds_db"] for p in per)
    every = sorted(p["rounds_all"] for p in per)
    kinds_total: dict[str, int] = {}
    for p in per:
        for k, v in p["kinds"].items():
            kinds_total[k] = kinds_total.get(k, 0) + v
    typical = sorted(per, key=lambda p: (p["rounds_db"], p["rounds_all"]))[n // 2]
    return {
        "n": n,
        "rounds_db": {"median": db[n // 2], "min": db[0], "max": db[-1]},
        "rounds_all": {"median": every[n // 2], "min": every[0], "max": every[-1]},
        "calls_per_request": round(sum(p["calls"] for p in per) / n, 2),
        "calls_by_kind": {k: round(v / n, 2) for k, v in sorted(kinds_total.items())},
        "firestore_reads": round(sum(p["reads"] for p in per) / n, 2),
        "firestore_reads_max": max(p["reads"] for p in per),
        "firestore_writes": round(sum(p["writes"] for p in per) / n, 2),
        "tasks_created": round(sum(p["tasks_created"] for p in per) / n, 2),
        "typical_sequence": typical["sequence"],
        "rounds_db_counts": {str(k): db.count(k) for k in sorted(set(db))},
        "breakdown": breakdown(traces),
    }


# ---------------------------------------------------------------------------------------- the probe
def install(directory: str, target: str) -> None:  # noqa: C901 - one closure per patched library
    """Patch this process (see the module docstring). Called by the sitecustomize at interpreter start."""
    import contextvars
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    flag = os.path.join(directory, "on")
    out_path = os.path.join(directory, f"{target}-{os.getpid()}.jsonl")
    trace: contextvars.ContextVar[list | None] = contextvars.ContextVar("rpc_probe_trace", default=None)
    lock = threading.Lock()
    patched: set[str] = set()
    clock = time.perf_counter

    # Thread-pool tasks run in a copy of the submitter's context, so a request's concurrent calls are its own.
    original_submit = ThreadPoolExecutor.submit

    def submit(self, fn, /, *args, **kwargs):
        if trace.get() is None:
            return original_submit(self, fn, *args, **kwargs)
        return original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]

    def record(kind: str, method: str, start: float, **extra) -> dict | None:
        calls = trace.get()
        if calls is None:
            return None
        entry = {"kind": kind, "method": method, "start": start, "end": clock(), **extra}
        calls.append(entry)
        return entry

    def patch_grpc() -> None:
        import grpc._channel as ch

        unary = ch._UnaryUnaryMultiCallable._blocking
        stream = ch._UnaryStreamMultiCallable.__call__

        def names(callable_) -> tuple[str, str]:
            m = callable_._method
            m = m.decode() if isinstance(m, bytes) else str(m)
            service, _, method = m.rpartition("/")
            return ("tasks" if "CloudTasks" in service else "firestore" if "Firestore" in service else "grpc"), method

        def unary_call(self, request, *args, **kwargs):
            if trace.get() is None:
                return unary(self, request, *args, **kwargs)
            kind, method = names(self)
            start = clock()
            try:
                return unary(self, request, *args, **kwargs)
            finally:
                pb = getattr(request, "_pb", request)
                writes = len(pb.writes) if method == "Commit" else 0
                deletes = sum(1 for w in pb.writes if w.HasField("delete")) if method == "Commit" else 0
                record(kind, method, start, writes=writes, deletes=deletes,
                       reads=1 if method == "RunAggregationQuery" else 0)

        def stream_call(self, request, *args, **kwargs):
            if trace.get() is None:
                return stream(self, request, *args, **kwargs)
            kind, method = names(self)
            start = clock()
            inner = stream(self, request, *args, **kwargs)
            entry = record(kind, method, start, reads=0)
            if entry is None:
                return inner

            class Traced:
                # The call ends with its last item (a document get() reads one and drops the iterator).
                def __iter__(self):
                    return self

                def __next__(self):
                    try:
                        item = next(inner)
                    except StopIteration:
                        entry["end"] = clock()
                        if method in ("RunQuery", "RunAggregationQuery"):
                            entry["reads"] = max(1, entry["reads"])
                        raise
                    entry["end"] = clock()
                    pb = getattr(item, "_pb", item)
                    if method == "BatchGetDocuments" and (pb.HasField("found") or pb.HasField("missing")):
                        entry["reads"] += 1
                    elif method == "RunQuery" and pb.HasField("document"):
                        entry["reads"] += 1
                    return item

                def __getattr__(self, name):
                    return getattr(inner, name)

            return Traced()

        ch._UnaryUnaryMultiCallable._blocking = unary_call
        ch._UnaryStreamMultiCallable.__call__ = stream_call

    def patch_requests() -> None:
        import requests

        original = requests.Session.request

        def request(self, method, url, *args, **kwargs):
            if trace.get() is None:
                return original(self, method, url, *args, **kwargs)
            start = clock()
            try:
                return original(self, method, url, *args, **kwargs)
            finally:
                record("storage", str(method).upper(), start)

        requests.Session.request = request  # type: ignore[method-assign]

    def patch_httpx() -> None:
        import httpx

        original = httpx.Client.send
        provider = os.environ.get("TELNYX_BASE_URL", "\0").rstrip("/")

        def send(self, request, *args, **kwargs):
            if trace.get() is None:
                return original(self, request, *args, **kwargs)
            start = clock()
            kind = "provider" if str(request.url).startswith(provider) else "http"
            response = original(self, request, *args, **kwargs)
            entry = record(kind, request.method, start)
            if entry is not None and kwargs.get("stream"):
                close = response.close

                def closed():  # a streamed body is read after send returns: the call ends at close
                    entry["end"] = clock()
                    close()

                response.close = closed
            return response

        httpx.Client.send = send  # type: ignore[method-assign]

    patches = {"grpc._channel": patch_grpc, "requests": patch_requests, "httpx": patch_httpx}

    def patch_loaded() -> None:
        for module, patch in patches.items():
            if module not in patched and module in sys.modules:
                with lock:
                    if module not in patched:
                        patch()
                        patched.add(module)

    import flask

    wsgi_app = flask.Flask.wsgi_app

    def traced_wsgi_app(self, environ, start_response):
        if not os.path.exists(flag):
            return wsgi_app(self, environ, start_response)
        patch_loaded()
        calls: list[dict] = []
        token = trace.set(calls)
        t0 = clock()
        try:
            return wsgi_app(self, environ, start_response)
        finally:
            t1 = clock()
            trace.reset(token)
            patch_loaded()  # a library the request imported lazily is patched from the next request on
            line = json.dumps({"target": target, "path": environ.get("PATH_INFO", ""),
                               "method": environ.get("REQUEST_METHOD", ""), "t0": t0, "t1": t1,
                               "request_id": environ.get("HTTP_X_REQUEST_ID", ""), "calls": calls})
            with lock, open(out_path, "a") as fh:
                fh.write(line + "\n")

    flask.Flask.wsgi_app = traced_wsgi_app  # type: ignore[method-assign]
