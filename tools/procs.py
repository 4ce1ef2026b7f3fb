"""Small process helpers for the local stack: start a server in its own process group, stop the group
(or SIGKILL it at once, as a crash, for fault tests).

Every child runs in a new session (``start_new_session``), so one ``killpg`` reaches the whole tree
(``java``, gunicorn's master and worker, ...), and a Ctrl-C in the terminal reaches only the runner, which
then stops the children in order. Liveness is read from ``/proc``: a zombie does not count as alive (PID 1
in our containers does not always reap orphans, so ``kill(pid, 0)`` would report them alive forever).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
_SETPRIV = shutil.which("setpriv")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of ``pid`` from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def live_groups() -> set[int]:
    """Process groups that have at least one live (non-zombie) process."""
    groups = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[0] not in ("Z", "X"):
                groups.add(stat[1])
    return groups


def port_open(port: int, host: str = HOST, timeout: float = 0.25) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports the kernel considers free right now (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Proc:
    """One server process, its output appended to ``log_path``, in a process group of its own."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | str | None = None):
        self.name = name
        self.cmd = [str(part) for part in cmd]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.cmd
        # Die with the runner even if it is SIGKILLed (no orphan keeps a port). PR_SET_PDEATHSIG fires when
        # the *thread* that forked exits, so only use it from the main thread.
        if _SETPRIV and threading.current_thread() is threading.main_thread():
            cmd = [_SETPRIV, "--pdeathsig", "TERM", "--", *cmd]
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=True, close_fds=True,
            )
        return self

    def running(self) -> bool:
        """True while the process we started has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def alive(self) -> bool:
        """True while any process of the group is alive (the leader, or anything it left behind)."""
        if self.popen is None:
            return False
        self.popen.poll()  # reap the leader if it exited
        return bool(group_members(self.popen.pid))

    def signal(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self, timeout: float = 10.0) -> bool:
        """SIGKILL the whole process group (no grace: a crash) and wait until no member is alive and the
        leader is reaped. True when it is gone (or was never started)."""
        if self.popen is None:
            return True
        self.signal(signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        try:
            self.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def stop_all(procs: list[Proc], timeout: float = 5.0) -> list[str]:
    """SIGTERM every group, wait up to ``timeout``, SIGKILL what is left. Returns the names killed."""
    started = [p for p in procs if p.popen is not None]

    def remaining() -> list[Proc]:
        for proc in started:
            proc.popen.poll()  # reap leaders that exited
        groups = live_groups()
        return [p for p in started if p.popen.pid in groups]

    for proc in started:
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (left := remaining()) and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = [p.name for p in left]
    for proc in left:
        proc.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while remaining() and time.monotonic() < deadline:
        time.sleep(0.02)
    for proc in started:
        try:
            proc.popen.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    return killed
