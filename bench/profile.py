"""Profile warm requests of one function in-process (diagnosis, not part of ``make bench``).

    python -m bench.profile send [--n 50] [--group-size 20] [--pyinstrument]

Starts its own stack (free ports), builds the function's app exactly as functions-framework does
(``create_app(target=NAME, source="main.py")``) inside this process, warms it, then for ``--n`` requests:

- prints the gRPC calls each request made (method, count, total and mean ms), by patching grpc's
  unary-unary and unary-stream callables (every Firestore and Cloud Tasks call goes through them);
- with ``--pyinstrument`` (needs pyinstrument importable, e.g. ``PYTHONPATH=<dir>`` of a
  ``pip install --target <dir> pyinstrument``), prints a wall-clock call tree of the same requests;
  else prints the top of a cProfile (cumulative) of them.

Functions: send, group, reads, webhook. Queues are paused, so no dispatch runs meanwhile.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import pstats
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import ROOT, BenchStack

_calls: list[tuple[str, float]] = []
_lock = threading.Lock()


def _record(method: str, seconds: float) -> None:
    with _lock:
        _calls.append((method.rsplit("/", 1)[-1], seconds))


def patch_grpc() -> None:
    import grpc._channel as ch

    unary = ch._UnaryUnaryMultiCallable._blocking  # both __call__ and with_call (interceptors) use it
    stream = ch._UnaryStreamMultiCallable.__call__

    def unary_call(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return unary(self, *args, **kwargs)
        finally:
            _record(self._method.decode() if isinstance(self._method, bytes) else str(self._method),
                    time.perf_counter() - t0)

    def stream_call(self, *args, **kwargs):
        t0 = time.perf_counter()
        method = self._method.decode() if isinstance(self._method, bytes) else str(self._method)
        inner = stream(self, *args, **kwargs)
        done = [False]

        def finish():
            if not done[0]:
                done[0] = True
                _record(method, time.perf_counter() - t0)

        class Timed:
            # A document get() reads one item and drops the iterator: time it to the first item then.
            def __iter__(self):
                return self

            def __next__(self):
                try:
                    item = next(inner)
                except StopIteration:
                    finish()
                    raise
                return item

            def __del__(self):
                finish()

            def __getattr__(self, name):
                return getattr(inner, name)

        return Timed()

    ch._UnaryUnaryMultiCallable._blocking = unary_call
    ch._UnaryStreamMultiCallable.__call__ = stream_call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("function", choices=["send", "group", "messages", "webhook"])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--group-size", type=int, default=20)
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--sort", default="cumulative", help="cProfile order: cumulative or tottime")
    parser.add_argument("--top", type=int, default=40, help="cProfile rows printed")
    args = parser.parse_args(argv)

    import os

    with BenchStack(Path(tempfile.mkdtemp(prefix="mmsgate-profile-"))) as bench:
        os.environ["LOG_LEVEL"] = "WARNING"  # this process's own app logs (the stack's functions keep theirs)
        bench.pause()
        from functions_framework import create_app

        app = create_app(target=args.function, source=str(ROOT / "main.py"))
        client = app.test_client()
        json_headers = {"Content-Type": "application/json"}
        legs = []
        if args.function == "webhook":
            template = bench.sent_legs(1, bench.tenant)[0]
            legs = bench.clone_sent_legs(template, args.n + 10)
        leg_id = bench.send_singles(1, bench.tenant)[0]

        def one(i: int):
            if args.function == "send":
                return client.post("/api/v1/messages/sms", data=json.dumps(bench.single_body()),
                                   headers={**json_headers, **bench.tenant.headers})
            if args.function == "group":
                return client.post("/api/v1/messages/group", data=json.dumps(bench.group_body(args.group_size)),
                                   headers={**json_headers, **bench.group_tenant().headers})
            if args.function == "messages":
                return client.get(f"/api/v1/messages/{leg_id}", headers=bench.tenant.headers)
            body = bench.finalized_event(legs[i])
            return client.post("/webhooks/telnyx", data=body, headers=bench.signed_headers(body))

        for i in range(10):
            response = one(i)
            assert response.status_code < 300, response.get_data(as_text=True)
        bench.purge()
        plain = []
        for i in range(args.n):  # unprofiled timing first: the profilers add overhead
            t0 = time.perf_counter()
            one(10 + i)
            plain.append(time.perf_counter() - t0)
        if args.function == "webhook":
            legs[10:] = bench.clone_sent_legs(legs[0], args.n)
        bench.purge()
        patch_grpc()
        _calls.clear()
        per_request = []
        profiler = None
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        else:
            profiler = cProfile.Profile()
            profiler.enable()
        t_all = time.perf_counter()
        for i in range(args.n):
            before = len(_calls)
            t0 = time.perf_counter()
            response = one(10 + i)
            per_request.append((time.perf_counter() - t0, _calls[before:]))
            assert response.status_code < 300, response.get_data(as_text=True)
        wall = time.perf_counter() - t_all
        if args.pyinstrument:
            profiler.stop()
        else:
            profiler.disable()
        bench.purge()

    n = args.n
    total_rpc = sum(s for _, s in _calls)
    plain.sort()
    print(f"{args.function}: {n} warm requests in-process without a profiler: median {plain[n // 2] * 1000:.1f} ms")
    print(f"{args.function}: {n} warm requests in-process, profiled, mean {wall / n * 1000:.1f} ms per request; "
          f"gRPC calls per request {len(_calls) / n:.1f}, gRPC time per request {total_rpc / n * 1000:.1f} ms "
          f"(sum over calls; concurrent calls overlap)")
    by_method: dict[str, list[float]] = collections.defaultdict(list)
    for method, seconds in _calls:
        by_method[method].append(seconds)
    print(f"{'method':<22}{'per request':>12}{'mean ms':>10}")
    for method, values in sorted(by_method.items(), key=lambda kv: -sum(kv[1])):
        print(f"{method:<22}{len(values) / n:>12.1f}{sum(values) / len(values) * 1000:>10.2f}")
    print("sequence of one request:", " -> ".join(m for m, _ in per_request[len(per_request) // 2][1]))
    if args.pyinstrument:
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    else:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
