"""End to end on an idle stack: one leg from the accept answer to the simulator receiving the provider call,
beside its floor measured in the same run.

- **Leg:** a single send (one media URL) through the send function with the queues running and nothing else
  in flight; the time runs from the moment the bench holds the accept answer to the simulator's
  ``received_at`` of that leg's provider call (found by its Idempotency-Key, ``mmsgate:<message id>``). In
  between: the Cloud Tasks emulator delivers the dispatch task, dispatch claims the leg (its reads and
  commit), signs the media URL and calls the provider.
- **Floor:** a Cloud Task created by hand on the same queue of the same emulator, whose target is a
  functions-framework process serving ``bench/floor_app.py`` that makes one call: the same provider POST
  (same body shape, media URL included). The time runs from the moment ``create_task`` returned to the
  simulator's ``received_at`` of that call. So both sides pay the task's delivery and one provider call;
  the difference is dispatch's own work.

Leg and floor runs alternate, one at a time, each after the previous one reached the simulator (idle).
Both clocks are this machine's; ``received_at`` has millisecond resolution.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

from bench.harness import HOST, ROOT, BenchError, BenchStack, fictional
from bench.stats import ratio, summary


class FloorServer:
    """``functions-framework --source bench/floor_app.py --target floor`` on a free port (127.0.0.1)."""

    def __init__(self, bench: BenchStack, log_dir: Path) -> None:
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("PORT", "FUNCTION_TARGET", "FUNCTION_SOURCE")}
        env.update(bench.function_env())
        self.log = open(log_dir / "floor.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "functions-framework"), f"--source={ROOT / 'bench' / 'floor_app.py'}",
             "--target=floor", f"--host={HOST}", f"--port={self.port}"],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise BenchError(f"the floor server did not start (see {log_dir / 'floor.log'})") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _sim_received(bench: BenchStack, key: str, timeout: float = 30.0) -> float:
    """The simulator's receipt time (epoch seconds) of the provider call made with Idempotency-Key ``key``."""
    from bench.harness import Client

    sim = Client(bench.stack.urls["simulator"])
    deadline = time.monotonic() + timeout
    try:
        while True:
            status, raw, _ = sim.request("GET", "/_sim/messages")
            if status != 200:
                raise BenchError(f"simulator answered {status}")
            for m in json.loads(raw)["data"]:
                if m.get("idempotency_key") == key:
                    return dt.datetime.fromisoformat(m["received_at"]).timestamp()
            if time.monotonic() > deadline:
                raise BenchError(f"the provider call {key} never reached the simulator")
            time.sleep(0.02)
    finally:
        sim.close()


def measure(bench: BenchStack, n: int, log=print, warm: int = 3) -> dict:
    from google.cloud import tasks_v2

    bench.purge()
    bench.resume()
    floor = FloorServer(bench, Path(bench.state_dir))
    send = bench.client("send", bench.tenant)
    queue = bench.stack.queue_paths["dispatch"]
    s = bench.stack
    sim_body = {"from": None, "to": fictional(99), "text": "mmsgate bench floor",
                "media_urls": [bench.sample_media_url], "type": "MMS", "webhook_url": bench.receiver.url,
                "use_profile_webhooks": False}
    body = json.dumps(bench.single_body(fictional(99))).encode()
    headers = {"Content-Type": "application/json"}
    legs: list[float] = []
    floors: list[float] = []

    def leg_once() -> float:
        status, raw, _ = send.request("POST", "/api/v1/messages/sms", body, headers)
        answered = time.time()
        if status != 200:
            raise BenchError(f"single send answered {status}: {raw[:300]!r}")
        message_id = json.loads(raw)["data"]["id"]
        if sim_body["from"] is None:
            sim_body["from"] = bench.get_legs([message_id])[message_id]["from"]
        return _sim_received(bench, f"mmsgate:{message_id}") - answered

    def floor_once() -> float:
        key = f"floor-{uuid.uuid4().hex}"
        ops = [["post", f"{s.function_env()['TELNYX_BASE_URL']}/v2/messages", sim_body,
                {"Authorization": f"Bearer {s.sim_api_key}", "Idempotency-Key": key}]]
        task = tasks_v2.Task(name=f"{queue}/tasks/{key}", http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST, url=floor.url, headers={"Content-Type": "application/json"},
            body=json.dumps({"ops": ops}).encode()))
        bench.tasks().create_task(parent=queue, task=task)
        created = time.time()
        return _sim_received(bench, key) - created

    try:
        for _ in range(warm):
            leg_once()
            floor_once()
        for i in range(n):
            for side in (("leg", "floor") if i % 2 == 0 else ("floor", "leg")):
                (legs if side == "leg" else floors).append(leg_once() if side == "leg" else floor_once())
                time.sleep(0.05)  # the previous run's reports settle: the stack is idle again
    finally:
        send.close()
        floor.stop()
        bench.pause()
        bench.purge()
    out = {"leg_ms": summary(legs, 1000, 1), "floor_ms": summary(floors, 1000, 1)}
    out["ratio_p50"] = ratio(out["leg_ms"]["median"], out["floor_ms"]["median"])
    out["ratio_p95"] = ratio(out["leg_ms"]["p95"], out["floor_ms"]["p95"])
    log(f"  end to end: leg p50 {out['leg_ms']['median']} ms p95 {out['leg_ms']['p95']} ms; floor p50 "
        f"{out['floor_ms']['median']} ms p95 {out['floor_ms']['p95']} ms")
    return out
