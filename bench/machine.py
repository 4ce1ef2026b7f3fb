"""What the benchmark ran on: machine, OS, interpreter, library and emulator versions, git commit."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_PACKAGES = ("functions-framework", "flask", "gunicorn", "google-cloud-firestore", "google-cloud-tasks",
                "google-cloud-storage", "google-api-core", "grpcio", "protobuf", "httpx", "pydantic",
                "phonenumbers", "cryptography")
EMU_PACKAGES = ("gcloud-tasks-emulator", "gcp-storage-emulator")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _run(cmd: list[str], timeout: float = 20.0) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def _emulator_versions() -> dict[str, str]:
    python = ROOT / ".venv-emulators" / "bin" / "python"
    versions: dict[str, str] = {}
    if python.exists():
        code = ("import json; from importlib import metadata as m; print(json.dumps({n: m.version(n) for n in "
                f"{list(EMU_PACKAGES)!r}}}))")
        try:
            versions.update(json.loads(_run([str(python), "-W", "ignore", "-c", code]).splitlines()[-1]))
        except (ValueError, IndexError):
            pass
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk = Path(os.path.realpath(gcloud)).parent.parent
        versions["google-cloud-sdk"] = _read(str(sdk / "VERSION")).strip() or "unknown"
        try:
            snap = json.loads(_read(str(sdk / ".install" / "cloud-firestore-emulator.snapshot.json")))
            for component in snap.get("components", []):
                if component.get("id") == "cloud-firestore-emulator":
                    versions["cloud-firestore-emulator"] = component["version"]["version_string"]
        except (ValueError, KeyError):
            pass
    java = shutil.which("java")
    if java:
        versions["java"] = (_run([java, "-version"]).splitlines() or ["unknown"])[0]
    return versions


def _git() -> dict[str, object]:
    commit = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]))
    return {"commit": commit or "unknown", "dirty": dirty}


def describe() -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": _mem_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "packages": _versions(APP_PACKAGES),
        "emulators": _emulator_versions(),
        "git": _git(),
    }


def one_line(machine: dict) -> str:
    dirty = " (dirty)" if machine["git"]["dirty"] else ""
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['os']}, "
            f"Python {machine['python']}, git {machine['git']['commit']}{dirty}")


if __name__ == "__main__":
    json.dump(describe(), sys.stdout, indent=2)
