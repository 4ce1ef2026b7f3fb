"""How the stack stops (tools/stack.py Stack.stop), without starting anything: the functions are stopped first,
while the emulators and simulators they call still answer, so a request in flight finishes and its function
exits on SIGTERM instead of hanging on an emulator already gone until the stop SIGKILLs it (issue 24, 6c)."""

from __future__ import annotations

import tools.stack as stack_mod
from tools.stack import SERVICES, Stack, StackConfig


class _Proc:
    def __init__(self, name: str) -> None:
        self.name = name


def test_functions_stop_before_what_they_call(tmp_path, monkeypatch):
    stack = Stack(StackConfig.for_tests(tmp_path))
    stack.procs = {name: _Proc(name) for name in (*SERVICES, *stack.functions)}  # type: ignore[misc]
    stack._state = "running"
    rounds: list[list[str]] = []

    def stop_all(procs, timeout):
        rounds.append([p.name for p in procs])
        return []

    monkeypatch.setattr(stack_mod, "stop_all", stop_all)
    stack.stop()
    assert [set(r) for r in rounds] == [set(stack.functions), set(SERVICES)]
    stack.stop()  # a second stop (atexit after the signal handler's) does nothing again
    assert len(rounds) == 2


def test_a_stop_that_must_kill_says_what(tmp_path, monkeypatch, capsys):
    stack = Stack(StackConfig.for_tests(tmp_path))
    stack.procs = {name: _Proc(name) for name in ("firestore", "dispatch")}  # type: ignore[misc]
    stack._state = "running"
    monkeypatch.setattr(stack_mod, "stop_all", lambda procs, timeout: [p.name for p in procs if p.name == "dispatch"])
    stack.stop()
    assert "SIGKILLed after 5 s: dispatch" in capsys.readouterr().err
