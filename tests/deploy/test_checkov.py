"""checkov's Terraform checks over terraform/: no failed check, and every skip carries a reason.

checkov ships its own fork of python-hcl2 under the same import name, so it lives in its own virtual
environment (.venv-checkov, made by `make .venv-checkov/.stamp` from tools/checkov-requirements.txt).
--skip-download keeps it offline. --quiet is left out on purpose: it would hide the skipped checks,
whose reasons this test reads.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

# Runs a real server or tool (terraform, checkov, the simulator): not part of the fast pure-Python tier.
pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
MIN_REASON = 30  # characters: a reason, not a placeholder


@functools.cache
def checkov_report() -> dict:
    if not CHECKOV.exists():
        message = f"{CHECKOV.relative_to(ROOT)} is missing: run `make .venv-checkov/.stamp` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(CHECKOV), "-d", "terraform", "--framework", "terraform", "--skip-download", "--compact",
         "-o", "json"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), f"checkov crashed (rc={result.returncode}):\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r.get("check_type") == "terraform"]
    return report


def test_checkov_reports_no_failed_check():
    report = checkov_report()
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= 40, f"checkov saw too few resources: {summary}"
    failed = report["results"].get("failed_checks", [])
    assert not failed, "checkov failed checks:\n" + "\n".join(
        f"  {c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]}): {c['check_name']}"
        for c in failed
    )


def test_every_skipped_check_carries_a_reason():
    report = checkov_report()
    skipped = report["results"].get("skipped_checks", [])
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= MIN_REASON, \
            f"{check['check_id']} on {check['resource']} is skipped without a reason"
    # Every inline skip in the HCL has a reason and still suppresses something (no stale skips).
    used = {(c["check_id"], Path(c["file_abs_path"]).name) for c in skipped}
    for path in sorted(TF_DIR.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = SKIP_COMMENT.search(line)
            if not m:
                continue
            check_id, reason = m.group(1), (m.group(2) or "").strip()
            assert len(reason) >= MIN_REASON, f"{path.name}:{lineno}: skip of {check_id} has no real reason"
            assert (check_id, path.name) in used, f"{path.name}:{lineno}: skip of {check_id} suppresses nothing"


def _resource(name: str) -> str:
    """checkov names the module's resources through the example that calls it (module.mmsgate.<type>.<name>)."""
    return re.sub(r"^(module\.\w+\.)+", "", name)


def test_key_hardening_checks_pass():
    report = checkov_report()
    passed = {(c["check_id"], _resource(c["resource"])) for c in report["results"].get("passed_checks", [])}
    for bucket in ("media", "source"):
        for check in ("CKV_GCP_29", "CKV_GCP_114", "CKV_GCP_62", "CKV_GCP_78"):
            assert (check, f"google_storage_bucket.{bucket}") in passed, (check, bucket)
    # dispatch, notifier and sweeper refuse internet ingress; only the gateway-fronted ones are skipped.
    assert ("CKV_GCP_124", "google_cloudfunctions2_function.private") in passed
