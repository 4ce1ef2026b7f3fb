"""`terraform fmt -check` over terraform/: the same check Cloud Build's terraform-fmt step runs.

Runs without the Google provider (fmt needs no provider), so it runs on our machines and in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"


def test_terraform_fmt_check(tmp_path):
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("the terraform binary is not on PATH; Cloud Build runs `terraform fmt -check` as its own step")
    assert list(TF_DIR.glob("*.tf")), "terraform/ has no .tf files"
    cli_config = tmp_path / "terraformrc"  # an existing, empty CLI config silences a warning
    cli_config.write_text("")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(cli_config), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TF_DIR)],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, (
        "terraform fmt -check failed; run `terraform fmt -recursive terraform/`\n" + result.stdout + result.stderr
    )
