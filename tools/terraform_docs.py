"""The inputs and outputs tables of terraform/README.md, generated from terraform/variables.tf and
terraform/outputs.tf (as terraform-docs would, between the same markers).

    python -m tools.terraform_docs           # rewrite the tables in terraform/README.md
    python -m tools.terraform_docs --check   # exit 1 if they are out of date (tests/deploy/test_terraform_docs.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "terraform"
README = MODULE / "README.md"
BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"


def _literal(value):
    """python-hcl2 8.x keeps quotes on strings and wraps expressions in ${...}; undo both."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
        return value
    if isinstance(value, dict):
        return {_literal(k): _literal(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def blocks(kind: str, filename: str) -> dict[str, dict]:
    with (MODULE / filename).open() as fh:
        doc = hcl2.load(fh)
    out = {}
    for block in doc.get(kind, []):
        for name, body in block.items():
            out[_literal(name)] = _literal(body)
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(spec: dict) -> str:
    if "default" not in spec:
        return "n/a"
    value = spec["default"]
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def render() -> str:
    variables = blocks("variable", "variables.tf")
    outputs = blocks("output", "outputs.tf")
    lines = [BEGIN, "## Inputs", "", "| Name | Description | Type | Default | Required |", "|---|---|---|---|:---:|"]
    for name in sorted(variables):
        spec = variables[name]
        required = "yes" if "default" not in spec else "no"
        lines.append(f"| `{name}` | {_cell(spec.get('description', ''))} | `{_cell(spec.get('type', 'any'))}` | "
                     f"{_cell(_default(spec))} | {required} |")
    lines += ["", "## Outputs", "", "| Name | Description |", "|---|---|"]
    for name in sorted(outputs):
        lines.append(f"| `{name}` | {_cell(outputs[name].get('description', ''))} |")
    lines.append(END)
    return "\n".join(lines)


def updated(readme: str) -> str:
    assert BEGIN in readme and END in readme, f"{README} lacks the {BEGIN} / {END} markers"
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + render() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    current = README.read_text()
    new = updated(current)
    if args.check:
        if new != current:
            print("terraform/README.md is out of date: run python -m tools.terraform_docs", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
