"""The bench's cost section (bench/cost.py) without a stack: what it counts from the probe's traces, how it prices
them, and the table it writes between docs/deploy.md's markers."""

from __future__ import annotations

import pytest

from bench import cost


def _trace(target: str, seconds: float, calls: list[dict]) -> dict:
    return {"target": target, "path": "/", "method": "POST", "t0": 10.0, "t1": 10.0 + seconds, "calls": calls}


TRACES = [
    _trace("send", 0.25, [{"kind": "firestore", "method": "BatchGetDocuments", "reads": 5},
                          {"kind": "firestore", "method": "Commit", "writes": 3, "deletes": 1},
                          {"kind": "tasks", "method": "CreateTask"}, {"kind": "storage", "method": "GET"}]),
    _trace("dispatch", 0.01, [{"kind": "firestore", "method": "RunQuery", "reads": 1},
                              {"kind": "storage", "method": "POST"}]),
    _trace("webhook", 0.1, []),
]


def test_totals_count_each_billable_operation():
    c = cost.totals(TRACES)
    assert (c["firestore_reads"], c["firestore_writes"], c["firestore_deletes"]) == (6, 2, 1)
    assert (c["tasks_created"], c["task_deliveries"], c["gateway_calls"], c["invocations"]) == (1, 1, 2, 3)
    assert (c["storage_class_a"], c["storage_class_b"]) == (1, 1)
    assert c["billed_seconds"] == pytest.approx(0.3 + 0.1 + 0.1)  # each request rounded up to 100 ms


def test_prices_are_list_prices_per_unit():
    per = cost.per_thousand(cost.totals(TRACES), 1)  # one message: x 1,000
    usd = cost.price(per)
    assert usd["firestore"] == pytest.approx(6_000 * 0.03 / 1e5 + 2_000 * 0.09 / 1e5 + 1_000 * 0.01 / 1e5, abs=1e-4)
    assert usd["gateway"] == pytest.approx(2_000 * 3.0 / 1e6, abs=1e-4)
    assert usd["total"] == pytest.approx(sum(v for k, v in usd.items() if k != "total"), abs=1e-3)
    assert all(source.startswith("https://cloud.google.com/") for _, _, source in cost.PRICES.values())


def test_the_table_is_written_between_the_markers_only(tmp_path):
    per = cost.per_thousand({**cost.totals(TRACES), "cpu_seconds": 0.2}, 1)
    result = {"kinds": {"single": {"messages": 1, "per_1000": per, "usd_per_1000": cost.price(per)}}}
    table = cost.render(result, "test")
    assert "| Firestore document reads | 6,000 |" in table and "USD per million messages" in table
    doc = tmp_path / "deploy.md"
    doc.write_text(f"before\n{cost.BEGIN}\nold\n{cost.END}\nafter\n")
    assert cost.rewrite(table, doc)
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text and table in text
    unmarked = tmp_path / "unmarked.md"
    unmarked.write_text("no markers\n")
    assert not cost.rewrite(table, unmarked) and unmarked.read_text() == "no markers\n"


def test_docs_deploy_carries_the_markers():
    text = cost.DOC.read_text()
    assert text.count(cost.BEGIN) == 1 and text.count(cost.END) == 1
