"""The rooms of ``shared/`` and the one direction of their arrows (shared/README.md), read from the imports of
every module (lazy ones inside functions included): handlers -> services -> rules and ports; adapters in
``infra`` implement the ports. A new import that turns an arrow round, or closes a circle, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
# room -> the rooms it may import (besides itself)
MAY_IMPORT = {
    "rules": set(),
    "carriers": {"rules"},
    "api": {"rules"},
    "ports": {"rules", "carriers"},
    "services": {"rules", "carriers", "api", "ports"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "shared" or len(parts) < 2:
        return None
    return parts[1]


def imports_of(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path).rsplit(".", 1)[0])


def imports_in(source: str, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found.add(base)
            # ``from shared.services import failover`` imports the module shared.services.failover
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): p for p in sorted(SHARED.rglob("*.py"))}
GRAPH = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_the_rooms_exist_and_hold_every_module():
    assert {room_of(m) for m in MODULES if room_of(m)} == set(MAY_IMPORT)
    loose = [m for m in MODULES if m != "shared" and room_of(m) not in MAY_IMPORT]
    assert not loose, loose


def test_no_module_of_shared_imports_infra_not_even_for_typing():
    offenders = {name: sorted(m for m in imports_of(path) if m == "infra" or m.startswith("infra."))
                 for name, path in MODULES.items()}
    assert not {k: v for k, v in offenders.items() if v}


def test_every_arrow_points_down():
    wrong = []
    for name, targets in GRAPH.items():
        room = room_of(name)
        for target in targets:
            other = room_of(target)
            if room and other and other != room and other not in MAY_IMPORT[room]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_no_import_circle_inside_shared():
    # Packages (``shared.services``) are not nodes: their __init__ imports nothing.
    graph = {k: {t for t in v if not MODULES[t].name == "__init__.py"} for k, v in GRAPH.items()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append([*trail[trail.index(target):], target] if target in trail else [node, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not circles, circles


def test_the_reader_sees_lazy_relative_and_from_package_imports():
    # The reader of imports itself: if it missed these, the tests above would prove nothing.
    source = "def f():\n    from shared.services import observe\n    from ..rules import ids\nimport infra.runtime\n"
    found = imports_in(source, "shared.carriers")
    assert {"shared.services.observe", "shared.rules.ids", "infra.runtime"} <= found
