"""terraform/README.md's inputs and outputs tables are generated from variables.tf and outputs.tf
(`python -m tools.terraform_docs`) and stay in sync with them."""

from __future__ import annotations

import re
from pathlib import Path

from tools import terraform_docs

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"


def test_readme_tables_are_up_to_date():
    readme = (TF_DIR / "README.md").read_text()
    assert terraform_docs.updated(readme) == readme, "run: python -m tools.terraform_docs"


def _rows(readme: str, heading: str) -> dict[str, list[str]]:
    section = readme.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `(\w+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def _type_expression(body: str) -> str:
    """The type expression of a variable block, however many lines it spans (object({...}))."""
    start = re.search(r"^\s+type\s+=\s+", body, re.M).end()
    depth = 0
    for i, ch in enumerate(body[start:], start):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if ch == "\n" and depth == 0:
            return body[start:i].strip()
    return body[start:].strip()


def test_every_variable_and_output_has_a_row_that_tells_the_truth():
    # Read the .tf files with a plain regex, independently of the generator's HCL parsing.
    readme = (TF_DIR / "README.md").read_text()
    variables_tf = (TF_DIR / "variables.tf").read_text()
    declared = re.findall(r'^variable "(\w+)" \{\n(.*?)^\}', variables_tf, re.M | re.S)
    inputs = _rows(readme, "Inputs")
    assert set(inputs) == {name for name, _ in declared}
    for name, body in declared:
        required = "yes" if not re.search(r"^\s+default\s+=", body, re.M) else "no"
        assert inputs[name][-1] == required, (name, inputs[name])
        typ = _type_expression(body)
        squeeze = lambda text: re.sub(r"[\s,`]", "", text)  # noqa: E731 - one-line normaliser
        assert squeeze(inputs[name][1]) == squeeze(typ), (name, inputs[name][1], typ)
    outputs = _rows(readme, "Outputs")
    assert set(outputs) == set(re.findall(r'^output "(\w+)"', (TF_DIR / "outputs.tf").read_text(), re.M))
    assert "project_id" in inputs and inputs["project_id"][-1] == "yes"
