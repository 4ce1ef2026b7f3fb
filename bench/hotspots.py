"""The hottest Firestore document under one tenant's load: the most writes any single document received in any
one second (real Firestore sustains about 1 write/s per document; the emulator has no such limit, so this
counts instead of timing). Run by hand, not part of ``make bench``:

    .venv/bin/python -m bench.hotspots [--rate 100] [--seconds 20] [--workers 16]

Starts the bench's stack (bench/harness.py) with a ``sitecustomize`` on the function processes' path that
records, for every write of every Firestore commit the functions make, the second it was committed in and the
document it wrote (as tools/rpc_probe.py counts operations). Then it sends single MMS for one tenant at
``--rate`` requests per second (one leg each) for ``--seconds`` seconds with dispatch running, waits until every
leg is final, and prints JSON: the legs/s achieved, the hottest documents (max writes in one second, and the
seconds in which they took more than one write), and per kind of document (tenant, balance shard, leg, ...).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import textwrap
import threading
import time
from pathlib import Path

SITECUSTOMIZE = textwrap.dedent('''
    """Records (second, document) of every Firestore write of this process (bench/hotspots.py). Active only in
    functions-framework processes when HOTSPOT_DIR is set."""
    import collections, json, os, sys, threading, time

    _DIR = os.environ.get("HOTSPOT_DIR")
    _TARGET = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--target=")), None)
    if _DIR and _TARGET:
        _writes = collections.Counter()
        _lock = threading.Lock()

        def _flush():
            with _lock:
                data = [[sec, doc, n] for (sec, doc), n in _writes.items()]
            path = os.path.join(_DIR, f"{_TARGET}-{os.getpid()}.json")
            tmp = f"{path}.{threading.get_ident()}.tmp"  # requests of one process flush concurrently
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)

        def _doc(write):
            if write.HasField("update"):
                return write.update.name
            if write.HasField("transform"):
                return write.transform.document
            return write.delete

        def _patch():
            import grpc._channel as ch
            unary = ch._UnaryUnaryMultiCallable._blocking

            def unary_call(self, request, *args, **kwargs):
                method = self._method
                method = (method.decode() if isinstance(method, bytes) else str(method)).rsplit("/", 1)[-1]
                result = unary(self, request, *args, **kwargs)
                if method == "Commit":
                    second = int(time.time())
                    with _lock:
                        for w in getattr(request, "_pb", request).writes:
                            _writes[(second, _doc(w).split("/documents/", 1)[-1])] += 1
                return result

            ch._UnaryUnaryMultiCallable._blocking = unary_call

        def _patch_flask():
            import flask
            original = flask.Flask.wsgi_app

            def wsgi_app(self, environ, start_response):
                try:
                    return original(self, environ, start_response)
                finally:
                    _flush()

            flask.Flask.wsgi_app = wsgi_app

        _patch()
        _patch_flask()
''')


def kind(doc: str) -> str:
    """tenants/X -> tenant, tenants/X/balance_shards/3 -> balance shard, messages/Y -> message, ..."""
    parts = doc.split("/")
    if len(parts) >= 4 and parts[2] == "balance_shards":
        return "tenant balance shard"
    if parts[0] == "tenants" and len(parts) == 2:
        return "tenant"
    return parts[0] if len(parts) == 2 else "/".join(parts[0::2])


def collect(directory: Path) -> collections.Counter:
    writes: collections.Counter = collections.Counter()
    for path in directory.glob("*.json"):
        for second, doc, n in json.loads(path.read_text()):
            writes[(second, doc)] += n
    return writes


def summarize(writes: collections.Counter, top: int = 8) -> dict:
    per_doc: dict[str, dict[int, int]] = collections.defaultdict(dict)
    for (second, doc), n in writes.items():
        per_doc[doc][second] = n
    ranked = sorted(per_doc.items(), key=lambda item: (-max(item[1].values()), -sum(item[1].values())))
    hottest = [{"document": doc, "kind": kind(doc), "max_writes_in_one_second": max(secs.values()),
                "seconds_with_more_than_one_write": sum(1 for n in secs.values() if n > 1),
                "total_writes": sum(secs.values())} for doc, secs in ranked[:top]]
    by_kind: dict[str, dict] = {}
    for doc, secs in per_doc.items():
        entry = by_kind.setdefault(kind(doc), {"documents": 0, "max_writes_in_one_second": 0, "total_writes": 0})
        entry["documents"] += 1
        entry["max_writes_in_one_second"] = max(entry["max_writes_in_one_second"], max(secs.values()))
        entry["total_writes"] += sum(secs.values())
    return {"hottest": hottest, "by_kind": dict(sorted(by_kind.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotspots")
    parser.add_argument("--rate", type=float, default=100.0, help="single sends (legs) per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mmsgate-hotspots-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    writes_dir = work / "writes"
    writes_dir.mkdir()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "site"), os.environ.get("PYTHONPATH")]))
    os.environ["HOTSPOT_DIR"] = str(writes_dir)

    from bench.harness import BenchStack, fictional

    report: dict = {"method": __doc__.split("\n\n")[0], "rate_asked": args.rate, "seconds": args.seconds}
    with BenchStack(work / "stack", log_level="WARNING") as bench:
        os.environ.pop("PYTHONPATH", None)  # this process's own clients are not recorded
        bench.resume()
        tenant = bench.tenant
        payload = bench.single_body(fictional(1))
        total = int(args.rate * args.seconds)
        ids: list[str] = []
        refused: collections.Counter = collections.Counter()
        lock = threading.Lock()
        start = time.monotonic() + 0.5
        # request k is due at start + k / rate; each worker takes the next due request (open-loop pacing, so a
        # slow answer does not lower the offered rate; the achieved rate is reported)
        counter = iter(range(total))

        def worker() -> None:
            client = bench.client("send", tenant)
            try:
                while True:
                    with lock:
                        k = next(counter, None)
                    if k is None:
                        return
                    delay = start + k / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    status, body, _ = client.post_json("/api/v1/messages/sms", payload)
                    with lock:
                        if status == 200:
                            ids.append(json.loads(body)["data"]["id"])
                        else:
                            refused[status] += 1
            finally:
                client.close()

        threads = [threading.Thread(target=worker) for _ in range(args.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        report["accepted"] = len(ids)
        report["refused_by_status"] = dict(refused)
        report["accepted_per_second"] = round(len(ids) / elapsed, 1)
        bench.wait_legs(ids, lambda leg: leg.get("final") or leg.get("status") in ("delivered", "sent"),
                        timeout=600)
        report["legs_per_second_until_final"] = round(len(ids) / (time.monotonic() - start), 1)
        time.sleep(2.0)  # the last processes flush after their last request
        report.update(summarize(collect(writes_dir)))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
