"""Peak RSS of each function process, read from /proc (no psutil): ``VmHWM`` (the kernel's high-water mark
of resident memory) of every process in the function's process group (gunicorn's master and worker)."""

from __future__ import annotations

from pathlib import Path

from bench.harness import BenchStack


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _kib(value: str | None) -> int:
    return int(value.split()[0]) if value else 0


def measure(bench: BenchStack) -> dict:
    out = {}
    for name in bench.stack.functions:
        procs = []
        for pid in bench.function_pids(name):
            st = _status(pid)
            if st:
                procs.append({"pid": pid, "ppid": int(st.get("PPid", 0)),
                              "peak_mib": round(_kib(st.get("VmHWM")) / 1024, 1),
                              "rss_mib": round(_kib(st.get("VmRSS")) / 1024, 1)})
        leader = bench.stack.procs[name].pid
        workers = [p for p in procs if p["pid"] != leader]
        out[name] = {
            "worker_peak_mib": max((p["peak_mib"] for p in workers), default=None),
            "master_peak_mib": next((p["peak_mib"] for p in procs if p["pid"] == leader), None),
            "processes": procs,
        }
    return out
