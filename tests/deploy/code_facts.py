"""What the deployed code needs from Terraform, read from the code itself: the TTL fields of
infra/collections.py, and the composite indexes its Firestore queries need, found by reading every
`collection(...).where(...).order_by(...)` chain in functions/, shared/ and infra/, plus every search the
message search allows (shared/rules/searching.py builds those queries from ALLOWED_EQUALITIES).

The contract test (test_terraform_contract.py) compares these with the HCL; the Terraform tests
(terraform/tests/*.tftest.hcl) receive them as variables (`facts()`) and compare them with the plan.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra import collections as fs_collections  # noqa: E402

RANGE_OPS = {"<", "<=", ">", ">=", "!=", "not-in"}

# Google's own metrics the alert policies read (Cloud Run and Cloud Tasks publish them; nothing creates them).
GOOGLE_METRIC_TYPES = (
    "run.googleapis.com/request_count",
    "cloudtasks.googleapis.com/queue/task_attempt_delays",
    "cloudtasks.googleapis.com/queue/depth",
)


def _const(node):
    """A string literal, or an attribute of infra.collections (C.MESSAGES), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(getattr(fs_collections, node.attr, None), str):
        return getattr(fs_collections, node.attr)
    return None


def firestore_queries() -> list[tuple[str, list[tuple[str, str]], list[str], Path, int]]:
    """Every db.collection(X).where(...).order_by(...) chain in the deployed code:
    (collection, [(field, op)], [order_by fields], file, line)."""
    found = []
    sources = [p for d in ("functions", "shared", "infra") for p in sorted((ROOT / d).rglob("*.py"))]
    for path in sources:
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("collection", "collection_group") and node.args):
                continue
            collection = _const(node.args[0])
            filters, orders, cur = [], [], node
            while True:
                attr = parents.get(cur)
                call = parents.get(attr)
                if not (isinstance(attr, ast.Attribute) and isinstance(call, ast.Call) and call.func is attr):
                    break
                if attr.attr == "where":
                    ff = next((k.value for k in call.keywords if k.arg == "filter"), None)
                    args = ff.args if isinstance(ff, ast.Call) else call.args
                    if len(args) >= 2 and _const(args[0]) and _const(args[1]):
                        filters.append((_const(args[0]), _const(args[1])))
                elif attr.attr == "order_by" and call.args and _const(call.args[0]):
                    orders.append(_const(call.args[0]))
                cur = call
            if collection and (filters or orders):
                found.append((collection, filters, orders, path.relative_to(ROOT), node.lineno))
    return found


def index_need(filters: list[tuple[str, str]], orders: list[str]) -> tuple[list[str], list[str]] | None:
    """(equality fields, range/order fields in order) of a query that needs a composite index, else None.
    Firestore serves equality filters by merging single-field indexes; a query that also ranges or orders on
    a second field needs a composite index: its equality fields first, then the range / order fields."""
    ranged = [f for f, op in filters if op in RANGE_OPS] + orders
    fields = {f for f, _ in filters} | set(orders)
    if not ranged or len(fields) < 2:
        return None
    return sorted({f for f, op in filters if op not in RANGE_OPS}), list(dict.fromkeys(ranged))


def index_needs() -> list[dict]:
    """Every composite index the code needs: {"collection", "equality": [fields], "tail": [{"field",
    "order"}]} (order None where the query does not say: an ascending or descending index both serve it)."""
    needs: dict[str, dict] = {}
    for collection, filters, orders, _path, _line in firestore_queries():
        need = index_need(filters, orders)
        if need:
            equality, tail = need
            entry = {"collection": collection, "equality": equality,
                     "tail": [{"field": f, "order": None} for f in tail]}
            needs.setdefault(repr(entry), entry)
    for fields in fs_collections.SEARCH_INDEXES:  # every search the API allows: tenant, equalities, created_at range
        *equality, (last, order) = fields
        entry = {"collection": fs_collections.MESSAGES, "equality": sorted(f for f, _ in equality),
                 "tail": [{"field": last, "order": order}]}
        needs.setdefault(repr(entry), entry)
    return list(needs.values())


def facts() -> dict:
    """The Terraform tests' variables (terraform/tests/invariants.tftest.hcl)."""
    return {
        "code_ttl_fields": dict(fs_collections.TTL_FIELDS),
        "code_index_needs": index_needs(),
        "google_metric_types": list(GOOGLE_METRIC_TYPES),
    }


# --- Which queues each function enqueues on -------------------------------------------------------------

# The queue port's helpers (infra/queue.py, shared/ports.py Queue) -> the queue each creates tasks on.
ENQUEUE_CALLS = {
    "enqueue_dispatch": "dispatch", "enqueue_dispatch_many": "dispatch", "enqueue_fanout": "dispatch",
    "enqueue_batch_chunks": "dispatch", "enqueue_notify": "notify", "enqueue_inbound": "notify",
}
PACKAGES = ("functions", "shared", "infra")


class CallGraph:
    """What a function can reach, function by function: calls and references resolved through each module's
    imports (`from shared.x import f`, `import shared.x as x` then `x.f`), `self.method`, module-level tables
    of functions, and classes (a class reaches all its methods). A call on any other object (`rt.legs.get()`)
    reaches only the store or client behind it, which enqueue nothing; the queue helpers are recognised by
    name whatever object they are called on. So it follows what each entry point can do, not every module it
    happens to import (which made every function look as if it used both queues)."""

    def __init__(self) -> None:
        self.refs: dict[str, set[str]] = {}  # qualified name -> qualified names it references
        self.enqueues: dict[str, set[str]] = {}  # qualified name -> queues it enqueues on directly
        paths = [ROOT / "main.py"] + [p for d in PACKAGES for p in sorted((ROOT / d).rglob("*.py"))]
        self.modules = {self._module_name(p): p for p in paths}
        for module, path in self.modules.items():
            self._read(module, ast.parse(path.read_text()))

    @staticmethod
    def _module_name(path: Path) -> str:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def _aliases(self, module: str, tree: ast.Module) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):  # imports anywhere: functions import lazily
            if isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and (node.module or node.level):
                base = node.module or ""
                if node.level:  # relative: from the importing module's package
                    base = ".".join(module.split(".")[: -node.level] + ([node.module] if node.module else []))
                for a in node.names:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
        return aliases

    def _read(self, module: str, tree: ast.Module) -> None:
        aliases = self._aliases(module, tree)
        top = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        top |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}

        def scan(qualified: str, body: ast.AST, cls: str | None) -> None:
            refs, queues = self.refs.setdefault(qualified, set()), self.enqueues.setdefault(qualified, set())
            for node in ast.walk(body):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr in ENQUEUE_CALLS and module != "infra.queue":
                    queues.add(ENQUEUE_CALLS[node.func.attr])
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                    if node.id in top:
                        refs.add(f"{module}.{node.id}")
                    elif node.id in aliases:
                        refs.add(aliases[node.id])
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    owner = node.value.id
                    if owner in ("self", "cls") and cls:
                        refs.add(f"{cls}.{node.attr}")
                    elif owner in aliases:
                        refs.add(f"{aliases[owner]}.{node.attr}")

        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scan(f"{module}.{node.name}", node, None)
            elif isinstance(node, ast.ClassDef):
                cls = f"{module}.{node.name}"
                self.refs.setdefault(cls, set())
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        scan(f"{cls}.{item.name}", item, cls)
                        self.refs[cls].add(f"{cls}.{item.name}")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        scan(f"{module}.{t.id}", node.value, None)

    def reachable(self, start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.modules:  # a module referenced as a whole (`from shared import inbound`)
                continue
            stack.extend(self.refs.get(name, ()))
        return seen

    def queues(self, start: str) -> set[str]:
        return {q for name in self.reachable(start) for q in self.enqueues.get(name, ())}


@functools.cache
def call_graph() -> CallGraph:
    """One graph per run: it parses every module of the code (it reads files, it changes nothing)."""
    return CallGraph()


def queues_by_function() -> dict[str, set[str]]:
    """Entry point (main.ENTRY_POINTS) -> the queues its code can create tasks on."""
    import main

    graph = call_graph()
    return {name: graph.queues(f"{module}.{name}") for name, module in main.ENTRY_POINTS.items()}
