"""`terraform test` of the module (terraform/tests/*.tftest.hcl): the plan's invariants, asserted by
Terraform itself in plan mode, offline, against the schema-only provider stand-in (tools/tfstub) that
test_terraform_plan.py uses. What the code needs (TTL fields, the composite indexes its queries need) is
read from the code (code_facts.py) and given to the tests as variables.

The module is tested from a copy of its folder alone: it must plan without the repository around it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
TESTS = sorted((TF_DIR / "tests").glob("*.tftest.hcl"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.deploy import code_facts  # noqa: E402
from tests.deploy.test_terraform_contract import cfg  # noqa: E402
from tests.deploy.test_terraform_plan import IGNORED, cli_config, output, run_tf, terraform  # noqa: E402, F401
from tests.deploy.tfcli import need  # noqa: E402

# Attributes that name something unique in a project or region.
NAME_FIELDS = ("name", "account_id", "secret_id", "api_id", "gateway_id", "repository_id", "display_name",
               "api_config_id_prefix", "dashboard_json")
# Named within something already prefixed (an object in its bucket) or not a name (an API to enable).
NOT_NAMES = {"google_storage_bucket_object", "google_project_service"}


def test_the_prefix_invariant_covers_every_named_resource():
    # terraform test cannot list every resource of a plan: invariants.tftest.hcl names each named type.
    text = "\n".join(path.read_text() for path in TESTS)
    for rtype, named in cfg().resources.items():
        if rtype in NOT_NAMES or rtype.endswith("_iam_member"):  # a grant's `name` is what it grants on
            continue
        for name in named:
            if any(f in named[name] for f in NAME_FIELDS):
                assert f"{rtype}.{name}" in text, f"{rtype}.{name} is named but not in the prefix invariant"


@pytest.mark.stack
def test_terraform_test_passes(terraform, cli_config, tmp_path):  # noqa: F811 - fixtures imported above
    assert TESTS, "no terraform/tests/*.tftest.hcl"
    version = run_tf(terraform, cli_config, tmp_path, "version", "-json")
    found = tuple(int(x) for x in json.loads(version.stdout)["terraform_version"].split("-")[0].split(".")[:2])
    need(found >= (1, 11), f"terraform test with overrides during plan needs Terraform 1.11 or later, not {found}")
    module = tmp_path / "terraform-google-mmsgate"
    shutil.copytree(TF_DIR, module, ignore=shutil.ignore_patterns("examples", *IGNORED))
    facts = tmp_path / "code_facts.tfvars.json"
    facts.write_text(json.dumps(code_facts.facts(), indent=1))
    init = run_tf(terraform, cli_config, module, "init", "-input=false")
    assert init.returncode == 0, output(init)
    result = run_tf(terraform, cli_config, module, "test", f"-var-file={facts}")
    runs = sum(len(re.findall(r'^run "', path.read_text(), re.M)) for path in TESTS)
    assert result.returncode == 0 and f"Success! {runs} passed, 0 failed." in result.stdout, output(result)
