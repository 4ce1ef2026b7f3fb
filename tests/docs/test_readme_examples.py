"""Every example of the README and of docs/ gives the answer it shows (docs/README.md, "Examples are tested").

A fenced ``sh`` block that talks to the local stack (:8080 gateway, :8088 dev server, :9090 / :9091 simulators,
:8681 Firestore emulator, ``mmsgate-admin --local``, or ``$GW`` / ``$SIM`` that an earlier block set so) is an
example. A page's examples run top to bottom in one bash, as a reader runs them in one terminal, against the
test stack seeded as ``make dev`` seeds it (the dev key, both senders, the inbox as default webhook); the local
addresses become the test stack's. Under a command, ``# expect: <JSON>`` is what it answers and
``# eventually: <JSON>`` what a read answers within a few seconds (repeated until then).
The parsing tests need no stack; the runs do."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LOCAL = re.compile(r"(?:localhost|127\.0\.0\.1):(8080|8088|9090|9091|8681)\b")
RUNS = re.compile(r"(?:localhost|127\.0\.0\.1):(?:8080|8088|9090|9091|8681)\b|--local\b")
USES_LOCAL_VARIABLES = re.compile(r"\$(?:GW|SIM)\b")  # set to local addresses by a block before (tour.md)
SETS_VARIABLES = re.compile(r"\b(?:GW|SIM)=")  # ... unless this block sets them itself (deploy.md: a deployment)
EXPECT = re.compile(r"# (expect|eventually): (.*)")
CONTINUED = re.compile(r"#  +(.*)")
WRITES = re.compile(r"-X (?:POST|PUT|DELETE|PATCH)\b")
EVENTUALLY_S = 20.0
STEP_TIMEOUT_S = 30.0
PORT_NAMES = {"8080": "gateway", "8088": "dev", "9090": "simulator", "9091": "twilio", "8681": "firestore"}


@dataclass
class Step:
    page: str
    line: int
    code: str
    kind: str | None  # "expect", "eventually" or None (nothing shown: it must merely not fail)
    expected: str | None  # the expectation's JSON text, before the stack's addresses replace the local ones


def sh_blocks(page: Path) -> list[tuple[int, str]]:
    """(first line, text) of each fenced ``sh`` block that is an example."""
    found = []
    for match in re.finditer(r"^```sh\n(.*?)^```", page.read_text(), flags=re.S | re.M):
        if RUNS.search(match[1]) or (USES_LOCAL_VARIABLES.search(match[1]) and not SETS_VARIABLES.search(match[1])):
            found.append((page.read_text()[:match.start()].count("\n") + 2, match[1]))
    return found


def steps_of(page: Path) -> list[Step]:
    steps: list[Step] = []
    name = str(page.relative_to(ROOT))
    for first, text in sh_blocks(page):
        lines = text.splitlines()
        code: list[str] = []
        start = first
        i = 0
        while i < len(lines):
            match = EXPECT.match(lines[i])
            if not match:
                code.append(lines[i])
                i += 1
                continue
            expected = [match[2]]
            line = first + i
            i += 1
            while i < len(lines) and (more := CONTINUED.match(lines[i])):
                expected.append(more[1])
                i += 1
            steps.append(Step(name, line, "\n".join(code), match[1], " ".join(expected)))
            code, start = [], first + i
        if any(c.strip() and not c.lstrip().startswith("#") for c in code):
            steps.append(Step(name, start, "\n".join(code), None, None))
    return steps


EXAMPLE_PAGES = [page for page in PAGES if sh_blocks(page)]


def json_values(text: str) -> list[Any]:
    """Every JSON object or array in ``text`` (answers, amid whatever else a step printed), in order."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while (start := min((j for j in (text.find("{", i), text.find("[", i)) if j >= 0), default=-1)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            i = start + 1
            continue
        found.append(value)
        i = end
    return found


def matches(expected: Any, actual: Any) -> bool:
    """``expected`` is a subset of ``actual``: dicts by key, lists as items held in any order (``[]``: empty),
    ``"x..."`` any text starting with x, ``"..."`` anything."""
    if isinstance(expected, str):
        if expected == "...":
            return True
        if expected.endswith("..."):
            return isinstance(actual, str) and actual.startswith(expected[:-3])
        return expected == actual
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False
        return actual == [] if not expected else _each_held(expected, actual, set())
    return type(expected) is type(actual) and expected == actual


def _each_held(expected: list[Any], actual: list[Any], used: set[int]) -> bool:
    if not expected:
        return True
    for j, item in enumerate(actual):
        if j not in used and matches(expected[0], item) and _each_held(expected[1:], actual, used | {j}):
            return True
    return False


def verdict(step: Step, expected: Any, output: str, code: int) -> str | None:
    """Why the step's output is not what its page shows (None: it is)."""
    where = f"{step.page}:{step.line}"
    values = json_values(output)
    errors = [v for v in values if isinstance(v, dict) and "error" in v]
    if code != 0:
        return f"{where}: exit status {code}\n{output}"
    if errors and not (isinstance(expected, dict) and "error" in expected):
        return f"{where}: an error the page does not show: {errors[-1]}"
    if step.kind is None:
        return None
    if isinstance(expected, str):
        return None if expected in [line.strip() for line in output.splitlines()] else \
            f"{where}: no line {expected!r} in\n{output}"
    if not values:
        return f"{where}: no JSON answer\n{output}"
    return None if matches(expected, values[-1]) else \
        f"{where}: answered\n{json.dumps(values[-1], indent=1)[:3000]}\nnot what the page shows:\n{expected}"


# -- without the stack: the pages' examples are well formed --------------------------------------------

def test_the_pages_have_examples_and_each_expectation_is_json():
    assert {p.name for p in EXAMPLE_PAGES} >= {"README.md", "tour.md", "carriers.md", "operate.md"}
    for page in EXAMPLE_PAGES:
        steps = steps_of(page)
        assert any(s.kind for s in steps), f"{page}: examples that show no answer"
        for step in steps:
            if step.expected is not None:
                json.loads(step.expected)  # raises, naming nothing: the message below does
            if step.kind == "eventually":
                assert not WRITES.search(step.code), \
                    f"{step.page}:{step.line}: 'eventually' repeats its commands: reads only"


def test_the_readme_shows_send_read_and_a_verified_webhook():
    steps = steps_of(ROOT / "README.md")
    shown = " ".join(s.expected or "" for s in steps)
    assert '"status": "queued"' in shown and '"status": "delivered"' in shown
    assert '"valid": true' in shown and "verified" in shown


@pytest.mark.parametrize(("expected", "actual", "ok"), [
    ({"a": "msg_..."}, {"a": "msg_x", "b": 1}, True),
    ({"a": "msg_..."}, {"a": "grp_x"}, False),
    ({"a": [{"s": 1}]}, {"a": [{"s": 2}, {"s": 1, "t": 0}]}, True),
    ({"a": [{"s": 1}, {"s": 1}]}, {"a": [{"s": 1}]}, False),
    ({"a": []}, {"a": [1]}, False),
    ({"a": None}, {"a": None}, True),
    ({"a": "..."}, {"a": {"x": 1}}, True),
    ({"a": 1}, {"a": True}, False),
    ({"a": 1}, {}, False),
])
def test_matching(expected, actual, ok):
    assert matches(expected, actual) is ok


# -- against the stack ------------------------------------------------------------------------------------

class Shell:
    """One bash for a page, as one terminal: variables set by a step are there for the next."""

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.scratch = scratch
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                     text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.count = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, code: str) -> tuple[int, str]:
        self.count += 1
        script = self.scratch / f"step{self.count}.sh"
        script.write_text(code + "\n")
        marker = f"__step_{uuid.uuid4().hex}__"
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"source {script} </dev/null 2>&1; printf '\\n{marker} %s\\n' $?\n")
        self.proc.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no answer within {STEP_TIMEOUT_S} s:\n{code}\n{''.join(out)}") from None
            if line is None:
                raise AssertionError(f"the shell ended:\n{''.join(out)}")
            if line.startswith(marker):
                return int(line.split()[1]), "".join(out)
            out.append(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)


def _hostport(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


@pytest.fixture
def dev_like(env, tmp_path):
    """The test stack seeded as make dev seeds it (tools.seed.seed_dev), and what a page's text must become to
    reach it: the local addresses, .dev/stack.json, --local and the emulator's project."""
    from infra.runtime import store
    from tools.seed import DEV_API_KEY, DEV_SENDER, DEV_TENANT_ID, DEV_TWILIO_SENDER, seed

    stack = env.stack
    senders = {DEV_SENDER: {"sms": True, "mms": True},
               DEV_TWILIO_SENDER: {"sms": True, "mms": True, "carrier": "twilio"}}
    seed(store(), api_key=DEV_API_KEY, webhook_url=f"{stack.urls['dev']}/inbox/{DEV_TENANT_ID}", senders=senders)
    httpx.delete(f"{stack.urls['dev']}/_dev/inbox", timeout=5)
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"sample_media_url": env.sample_media_url, "api_key": DEV_API_KEY,
                                 "tenant_id": DEV_TENANT_ID, "env": stack.function_env()}))
    ports = {port: _hostport(stack.urls[name]) for port, name in PORT_NAMES.items()}

    def local(text: str) -> str:
        text = LOCAL.sub(lambda m: ports[m[1]], text)
        text = text.replace(".dev/stack.json", str(state)).replace("--local", f"--local --state {state}")
        return text.replace("demo-mmsgate", stack.config.project)

    return local


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_gives_the_answer_its_page_shows(dev_like, tmp_path, page):
    shell_env = {k: v for k, v in os.environ.items() if k not in ("GW", "KEY", "MEDIA", "SIM")}
    shell_env.update(NO_PROXY="*", no_proxy="*")
    shell = Shell(shell_env, tmp_path)
    try:
        for step in steps_of(page):
            expected = json.loads(dev_like(step.expected)) if step.expected is not None else None
            deadline = time.monotonic() + (EVENTUALLY_S if step.kind == "eventually" else 0)
            while True:
                code, output = shell.run(dev_like(step.code))
                why = verdict(step, expected, output, code)
                if why is None or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert why is None, why
    finally:
        shell.close()
