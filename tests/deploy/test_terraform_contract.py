"""Contract between the code and terraform/: what the code needs is what Terraform deploys.

Terraform itself validates and plans the module offline (test_terraform_plan.py); this test parses the
HCL with python-hcl2 (8.x) and checks it against the code itself:
main.ENTRY_POINTS, infra.settings.ENV / SECRET_ENV, infra.collections, the Firestore queries in the code
and the queues each function's code enqueues on. It fails when an entry point is renamed or added, an
environment variable is added to ENV without Terraform, a secret is set as plain configuration, a query
lacks its composite index, a TTL policy is dropped, a queue is renamed, a function gains or loses a queue,
a local-stack-only variable (settings.LOCAL_ONLY_ENV: MEDIA_TRUSTED_ORIGINS, MEDIA_SIGNING_KEY) appears in
Terraform, or a function becomes invocable by anyone but its caller.
"""

from __future__ import annotations

import ast
import functools
import glob
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy import hcl_cache

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import main  # noqa: E402 - after the path fix above
from infra import collections as fs_collections  # noqa: E402
from infra import settings  # noqa: E402
from tests.deploy.code_facts import ENQUEUE_CALLS, call_graph, firestore_queries, index_need, queues_by_function  # noqa: E402

PRIVATE_FUNCTIONS = {"dispatch", "notifier", "sweeper"}
PUBLIC_FUNCTIONS = {"send", "group", "batch", "messages", "optouts", "templates", "webhook", "links"}
# Local-stack-only variables (SSRF exemption for the emulators, the emulator's URL-signing key).
LOCAL_ONLY_ENV = settings.LOCAL_ONLY_ENV
# messages: a redaction deletes media copies; notifier: copies inbound media (shared/services/inbound.py)
MEDIA_FUNCTIONS = {"send", "group", "batch", "dispatch", "messages", "notifier"}
# Public paths of the gateway -> function serving them.
GATEWAY_ROUTES = {
    ("/api/v1/messages", "get"): "messages",
    ("/api/v1/messages/sms", "post"): "send",
    ("/api/v1/messages/group", "post"): "group",
    ("/api/v1/messages/batch", "post"): "batch",
    ("/api/v1/messages/{id}", "get"): "messages",
    ("/api/v1/messages/group/{group_id}", "get"): "messages",
    ("/api/v1/messages/{id}", "delete"): "messages",
    ("/api/v1/messages/group/{group_id}", "delete"): "messages",
    ("/api/v1/messages/{id}/redact", "post"): "messages",
    ("/api/v1/batches/{batch_id}", "get"): "batch",
    ("/api/v1/batches/{batch_id}", "delete"): "batch",
    ("/api/v1/pricing/messaging", "get"): "messages",
    ("/api/v1/opt-outs", "get"): "optouts",
    ("/api/v1/opt-outs/import", "post"): "optouts",
    ("/api/v1/opt-outs/{number}", "get"): "optouts",
    ("/api/v1/opt-outs/{number}", "put"): "optouts",
    ("/api/v1/opt-outs/{number}", "delete"): "optouts",
    ("/api/v1/templates", "get"): "templates",
    ("/api/v1/templates", "post"): "templates",
    ("/api/v1/templates/{template_id}", "get"): "templates",
    ("/api/v1/templates/{template_id}", "put"): "templates",
    ("/api/v1/templates/{template_id}", "delete"): "templates",
    ("/api/v1/templates/{template_id}/preview", "post"): "templates",
    ("/webhooks/telnyx", "post"): "webhook",
    ("/webhooks/twilio", "post"): "webhook",
    ("/l/{code}", "get"): "links",
}


# --- python-hcl2 8.x normaliser -------------------------------------------------------------------------
# hcl2 8.x keeps quotes on string literals ('"x"'), wraps expressions as '${...}', lists every block as a
# list of dicts carrying '__is_block__', and quotes block labels. We turn literals into str, expressions
# into Expr (a str holding the expression without '${}') and drop the markers.


class Expr(str):
    """An HCL expression (not a literal string), e.g. Expr('var.region')."""

    def __repr__(self) -> str:
        return f"Expr({str.__repr__(self)})"


def _unquote(s: str) -> str:
    return s[1:-1].replace('\\"', '"').replace("\\\\", "\\")


def norm(value):
    if isinstance(value, dict):
        return {
            (_unquote(k) if k.startswith('"') and k.endswith('"') and len(k) >= 2 else k): norm(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, str):
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return _unquote(value)
        if value.startswith("${") and value.endswith("}"):
            return Expr(value[2:-1])
        return Expr(value)
    return value


def parse_object_literal(text: str) -> dict:
    """Parse an HCL object constructor such as '{A = b, C = "d"}' into a normalised dict."""
    parsed = hcl_cache.loads(f"x = {text}\n")
    return norm(parsed["x"])


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at separators outside brackets and strings."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def call_args(expr: str, fn: str) -> list[str]:
    m = re.fullmatch(rf"\s*{fn}\((.*)\)\s*", expr, re.DOTALL)
    assert m, f"expected {fn}(...), got {expr!r}"
    return split_top_level(m.group(1))


class Config:
    def __init__(self, directory: Path):
        self.resources: dict[str, dict[str, dict]] = {}
        self.data: dict[str, dict[str, dict]] = {}
        self.locals: dict = {}
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.terraform: list[dict] = []
        self.files = sorted(directory.glob("*.tf"))
        assert self.files, f"no .tf files in {directory}"
        for path in self.files:
            doc = hcl_cache.load(path)
            for block in doc.get("resource", []):
                for rtype, named in norm(block).items():
                    for name, body in named.items():
                        assert name not in self.resources.get(rtype, {}), f"duplicate {rtype}.{name}"
                        self.resources.setdefault(rtype, {})[name] = body
            for block in doc.get("data", []):
                for dtype, named in norm(block).items():
                    self.data.setdefault(dtype, {}).update(named)
            for block in doc.get("locals", []):
                for key, value in norm(block).items():
                    assert key not in self.locals, f"local.{key} defined twice"
                    self.locals[key] = value
            for block in doc.get("variable", []):
                self.variables.update(norm(block))
            for block in doc.get("output", []):
                self.outputs.update(norm(block))
            self.terraform.extend(norm(b) for b in doc.get("terraform", []))

    def resource(self, rtype: str, name: str) -> dict:
        assert name in self.resources.get(rtype, {}), f"missing resource {rtype}.{name}"
        return self.resources[rtype][name]

    def default(self, var: str):
        assert var in self.variables, f"missing variable {var}"
        return self.variables[var].get("default")

    def text(self) -> str:
        return "\n".join(p.read_text() for p in self.files)


def block(body: dict, name: str) -> dict:
    value = body.get(name)
    assert isinstance(value, list) and len(value) == 1, f"expected one {name} block, got {value!r}"
    return value[0]


def dynamic_block(body: dict, name: str) -> dict:
    for entry in body.get("dynamic", []):
        if name in entry:
            return entry[name]
    raise AssertionError(f"missing dynamic {name!r} block")


@functools.cache
def cfg() -> Config:
    return Config(TF_DIR)


# --- Functions and entry points -------------------------------------------------------------------------


def function_resources() -> dict[str, tuple[str, dict]]:
    """function name -> (resource name, resource body), expanding the two for_each resources."""
    c = cfg()
    out: dict[str, tuple[str, dict]] = {}
    is_public = {"public": True, "private": False}
    for rname, body in c.resources.get("google_cloudfunctions2_function", {}).items():
        assert rname in is_public, f"unexpected function resource {rname}"
        assert body["for_each"] == f"local.{rname}_functions", body["for_each"]
        negate = "" if is_public[rname] else "!"
        assert re.fullmatch(
            rf"\{{for (\w+), (\w+) in local\.functions : \1 => \2 if {negate}\2\.public\}}",
            c.locals[f"{rname}_functions"],
        ), c.locals[f"{rname}_functions"]
        bc = block(body, "build_config")
        assert bc["entry_point"] == Expr("each.key") and isinstance(bc["entry_point"], Expr), rname
        assert body["name"] == "${var.name_prefix}-${each.key}", rname
        for name, fn in c.locals["functions"].items():
            if fn["public"] is is_public[rname]:
                assert name not in out, f"function {name} deployed twice"
                out[name] = (rname, body)
    return out


def test_every_entry_point_is_deployed_with_its_name():
    assert set(function_resources()) == set(main.ENTRY_POINTS)
    assert set(cfg().locals["functions"]) == set(main.ENTRY_POINTS)
    for name, module in main.ENTRY_POINTS.items():
        assert module == f"functions.{name}", "the archive layout assumes functions/<name>.py"


def test_every_function_module_is_an_entry_point():
    # A module under functions/ defining a top-level function of its own name is a deployable function.
    for path in sorted((ROOT / "functions").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if path.stem in defined:
            assert path.stem in main.ENTRY_POINTS, f"functions/{path.name} is not in main.ENTRY_POINTS"


@pytest.mark.parametrize("name", sorted(main.ENTRY_POINTS))
def test_entry_point_module_defines_its_function(name):
    path = ROOT / "functions" / f"{name}.py"
    if not path.exists():
        pytest.skip(f"functions/{name}.py is not written yet")
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    assert name in names, f"functions/{name}.py does not define {name}()"


def test_functions_share_one_hash_named_archive_and_a_python_runtime():
    c = cfg()
    assert re.fullmatch(r"python3(1[1-9])", c.default("python_runtime"))
    obj = c.resource("google_storage_bucket_object", "source")
    assert re.search(r"data\.archive_file\.source\[0\]\.output_(md5|sha256)", obj["name"]), obj["name"]
    assert obj["source"] == "data.archive_file.source[0].output_path"
    # The functions build from local.source: the module's own archive, or the caller's (var.source_archive).
    source = c.locals["source"]
    assert "var.source_archive != null ? var.source_archive" in source, source
    assert "google_storage_bucket_object.source[*].name" in source, source
    for name, (_rname, body) in function_resources().items():
        bc = block(body, "build_config")
        assert bc["runtime"] == Expr("var.python_runtime"), name
        storage = block(block(bc, "source"), "storage_source")
        assert storage == {"bucket": "local.source.bucket", "object": "local.source.object",
                           "generation": "local.source.generation"}, name
        sc = block(body, "service_config")
        assert sc["service_account_email"] == "google_service_account.function[each.key].email", name
    accounts = c.resource("google_service_account", "function")
    assert accounts["for_each"] == "local.functions"
    assert accounts["account_id"] == "${var.name_prefix}-fn-${each.key}"


def test_module_reads_nothing_outside_its_folder():
    # Vendored, or fetched from a registry, the module has only its own folder: the code comes in through
    # var.source_dir or var.source_archive, never through a path relative to the module.
    for path in sorted(TF_DIR.glob("*.tf")):
        text = path.read_text()
        for m in re.finditer(r"path\.module\}?([^\s\"]*)", text):
            assert not m.group(1).startswith("/.."), f"{path.name} reads {m.group(0)} outside the module"
        assert "path.cwd" not in text, path.name
    variables = cfg().variables
    assert variables["source_dir"]["default"] is None and variables["source_archive"]["default"] is None
    conditions = [v["condition"] for v in variables["source_archive"]["validation"]]
    assert "(var.source_dir == null) != (var.source_archive == null)" in conditions, conditions


def test_archive_holds_every_deployable_file_and_nothing_else():
    c = cfg()
    files = c.locals["source_files"]
    assert '"main.py"' in files and '"requirements.txt"' in files, files
    assert "local.source_dirs" in files and "local.source_extensions" in files
    dirs, exts = c.locals["source_dirs"], c.locals["source_extensions"]
    assert set(dirs) == {"functions", "shared", "infra"}, dirs
    assert "py" in exts
    covered = {"main.py", "requirements.txt"}
    for d in dirs:
        for ext in exts:
            covered |= set(glob.glob(f"{d}/**/*.{ext}", root_dir=ROOT, recursive=True))
    for d in dirs:
        for path in (ROOT / d).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo", ".md"):
                continue
            assert rel in covered, f"{rel} is deployable but not in the source archive (add its extension)"
    archive = c.data["archive_file"]["source"]
    assert archive["output_path"].startswith("${path.root}/.terraform/"), "keep the zip out of git"
    assert dynamic_block(archive, "source")["for_each"] == "local.source_files"

    # What the archive leaves out must not be imported by what it holds.
    excluded = {"tools", "tests", "bench", "docs", "terraform"}
    sources = [ROOT / "main.py"] + [p for d in dirs for p in (ROOT / d).rglob("*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            for mod in mods:
                assert mod.split(".")[0] not in excluded, f"{path.relative_to(ROOT)} imports {mod}"


def _requirement_lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def test_requirements_txt_equals_pyproject_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = _requirement_lines((ROOT / "requirements.txt").read_text())
    assert [r.replace(" ", "") for r in reqs] == [d.replace(" ", "") for d in deps], (
        "requirements.txt (the archive's) must list exactly pyproject.toml's [project].dependencies"
    )


# --- Environment and secrets ----------------------------------------------------------------------------


def resolve_env(local_name: str) -> dict:
    """Resolve local.<name> to a dict: a literal map, another local, or merge() of those and maps."""
    value = cfg().locals[local_name]
    if isinstance(value, dict):
        return value
    assert isinstance(value, Expr), value
    if re.fullmatch(r"local\.\w+", value):
        return resolve_env(value.removeprefix("local."))
    out: dict = {}
    for arg in call_args(value, "merge"):
        if arg.startswith("{"):
            out.update(parse_object_literal(arg))
        else:
            assert re.fullmatch(r"local\.\w+", arg), arg
            out.update(resolve_env(arg.removeprefix("local.")))
    return out


def function_env(name: str) -> dict:
    _, body = function_resources()[name]
    ev = block(body, "service_config")["environment_variables"]
    assert isinstance(ev, Expr) and re.fullmatch(r"local\.\w+", ev), f"{name}: environment_variables = {ev!r}"
    return resolve_env(ev.removeprefix("local."))


def function_secrets(name: str) -> set[str]:
    _, body = function_resources()[name]
    dyn = dynamic_block(block(body, "service_config"), "secret_environment_variables")
    assert re.fullmatch(
        r"\{for (\w+), (\w+) in local\.deployed_secret_env : "
        r"\1 => data\.google_secret_manager_secret\.this\[\1\]\.secret_id"
        r" if contains\(\2, each\.key\)\}",
        dyn["for_each"],
    ), dyn["for_each"]
    content = block(dyn, "content")
    assert content["key"] == "secret_environment_variables.key"
    assert content["secret"] == "secret_environment_variables.value"
    assert content["version"] == "latest"
    return {secret for secret, fns in cfg().locals["secret_env"].items() if name in fns}


def test_secret_env_matches_settings():
    tf = {k: set(v) for k, v in cfg().locals["secret_env"].items()}
    assert tf == {k: set(v) for k, v in settings.SECRET_ENV.items()}
    for secret in settings.SECRET_ENV:
        assert secret in settings.ENV, f"secret {secret} is not declared in ENV"


def test_only_the_secrets_of_switched_on_carriers_are_deployed():
    # A deployment without Twilio (the default) needs no Twilio secret: the secrets Terraform reads, grants
    # and sets are local.secret_env less those switched off (local.optional_secrets); Telnyx's and the
    # signing key are always on.
    c = cfg()
    assert c.locals["optional_secrets"] == {"TWILIO_AUTH_TOKEN": Expr("var.twilio_enabled")}
    assert c.locals["deployed_secret_env"] == (
        "{for name, fns in local.secret_env : name => fns if lookup(local.optional_secrets, name, true)}")
    assert c.default("twilio_enabled") is False
    env = resolve_env("env")
    assert env["TWILIO_ACCOUNT_SID"] == 'var.twilio_enabled ? var.twilio_account_sid : ""'


@pytest.mark.parametrize("name", sorted(main.ENTRY_POINTS))
def test_function_gets_every_env_var_it_reads(name):
    env = function_env(name)
    assert set(env) <= set(settings.ENV), f"{name}: unknown variables {set(env) - set(settings.ENV)}"
    assert not set(env) & set(settings.SECRET_ENV), f"{name}: secret set as plain configuration"
    assert not LOCAL_ONLY_ENV & set(env), f"{name}: local-only variables {sorted(LOCAL_ONLY_ENV & set(env))}"
    assert function_secrets(name) == {s for s, fns in settings.SECRET_ENV.items() if name in fns}, name
    missing = set(settings.ENV) - LOCAL_ONLY_ENV - set(settings.SECRET_ENV) - set(env)
    assert not missing, f"{name} does not get {sorted(missing)} from Terraform"


def test_function_urls_are_deterministic_and_free_of_cycles():
    c = cfg()
    urls = c.locals["function_urls"]
    assert re.fullmatch(
        r'\{for (\w+) in keys\(local\.functions\) : \1 => "https://\$\{var\.name_prefix\}-\$\{\1\}-'
        r'\$\{data\.google_project\.this\.number\}\.\$\{var\.region\}\.run\.app"\}',
        urls,
    ), urls
    env = resolve_env("env")
    assert env["DISPATCH_URL"] == 'local.function_urls["dispatch"]'
    assert env["NOTIFIER_URL"] == 'local.function_urls["notifier"]'
    # Nothing the functions or the gateway are configured from may wait for a function to exist.
    for local_name in ("env", "function_urls", "openapi_spec", "public_base_url", "telnyx_webhook_url",
                       "twilio_webhook_url"):
        assert "google_cloudfunctions2_function" not in str(c.locals[local_name]), local_name


def test_env_values_come_from_the_resources_they_name():
    env = resolve_env("env")
    assert env["GOOGLE_CLOUD_PROJECT"] == Expr("var.project_id")
    assert env["TASKS_LOCATION"] == Expr("var.region")
    assert env["DISPATCH_QUEUE"] == Expr("google_cloud_tasks_queue.dispatch.name")
    assert env["NOTIFY_QUEUE"] == Expr("google_cloud_tasks_queue.notify.name")
    assert env["TASKS_INVOKER_SA"] == Expr("google_service_account.tasks_invoker.email")
    assert env["MEDIA_BUCKET"] == Expr("google_storage_bucket.media.name")
    assert env["MEDIA_ALLOWED_HOSTS"] == Expr('join(",", local.media_allowed_hosts)')
    hosts = cfg().locals["media_allowed_hosts"]
    assert '"storage.googleapis.com"' in hosts, hosts
    assert '"${google_storage_bucket.media.name}.storage.googleapis.com"' in hosts, hosts
    assert env["TELNYX_WEBHOOK_URL"] == Expr("local.telnyx_webhook_url")
    assert cfg().locals["telnyx_webhook_url"] == "${local.public_base_url}/webhooks/telnyx"
    # Twilio signs the URL it called, so the functions must know it as the number's webhook is set.
    assert env["TWILIO_WEBHOOK_URL"] == Expr("local.twilio_webhook_url")
    assert cfg().locals["twilio_webhook_url"] == "${local.public_base_url}/webhooks/twilio"
    assert env["CARRIER_WEIGHTS"] == Expr("local.carrier_weights")
    assert cfg().locals["carrier_weights"] == \
        'join(",", [for carrier, weight in var.carrier_weights : "${carrier}=${weight}"])'
    assert cfg().default("carrier_weights") == {"telnyx": 100}
    assert settings.carrier_weights(settings.ENV["CARRIER_WEIGHTS"][0]) == {"telnyx": 100}
    # No custom domain is deployed, so none is claimed: the gateway's own origin is the public one.
    assert cfg().locals["public_base_url"] == "https://${google_api_gateway_gateway.this.default_hostname}"
    assert "public_base_url" not in cfg().variables


def test_env_defaults_in_terraform_equal_the_codes():
    # A variable feeding an env var defaults to the code's default for it (e.g. DISPATCH_MAX_ATTEMPTS).
    checked = 0
    for key, value in resolve_env("env").items():
        m = re.fullmatch(r"(?:tostring\()?var\.(\w+)\)?", value)
        code_default = settings.ENV[key][0]
        if not m or not code_default:
            continue
        assert str(cfg().default(m.group(1))) == code_default, f"{key}: var.{m.group(1)} default differs"
        checked += 1
    assert checked >= 6


def test_local_only_escape_hatches_are_absent():
    assert {"MEDIA_TRUSTED_ORIGINS", "MEDIA_SIGNING_KEY"} <= LOCAL_ONLY_ENV <= set(settings.ENV)
    for path in TF_DIR.rglob("*"):
        if path.is_file() and ".terraform" not in path.parts:
            text = path.read_text(errors="replace")
            for name in sorted(LOCAL_ONLY_ENV):
                assert name not in text, f"{path.name} mentions {name}"


def test_media_limits_are_typed_described_and_validated():
    env = resolve_env("env")
    for var, key in (("media_max_bytes", "MEDIA_MAX_BYTES"), ("media_url_ttl_seconds", "MEDIA_URL_TTL_SECONDS"),
                     ("media_fetch_timeout_seconds", "MEDIA_FETCH_TIMEOUT_SECONDS")):
        spec = cfg().variables[var]
        assert spec["type"] == Expr("number") and spec.get("description"), var
        assert spec.get("validation"), f"{var} has no validation"
        assert env[key] == Expr(f"tostring(var.{var})"), key
    assert "614400" in cfg().variables["media_max_bytes"]["description"], "document the carrier-safe setting"


def test_secret_values_never_reach_terraform():
    # The operator creates each secret with its value (docs/deploy.md, step 3); Terraform reads only its
    # metadata (the google_secret_manager_secret data source reads no version), so a missing secret fails
    # the plan by name, and no value is ever in a variable, the plan or the state.
    c = cfg()
    text = c.text()
    for reader in ("google_secret_manager_secret_version", "google_secret_manager_secret_version_access"):
        assert reader not in c.resources and reader not in c.data, reader
    assert "secret_data" not in text
    assert "google_secret_manager_secret" not in c.resources, "the module does not create secrets (empty ones)"
    secrets = c.data["google_secret_manager_secret"]["this"]
    assert secrets["for_each"] == "local.secret_ids" and secrets["secret_id"] == "each.value"
    assert c.locals["secret_ids"] == (
        '{for name in keys(local.deployed_secret_env) : name => lookup(var.secret_ids, name, '
        '"${var.name_prefix}-${lower(replace(name, "_", "-"))}")}')
    # Earlier states created the secrets: they are forgotten, never destroyed (their values stay).
    removed = [b for p in c.files for b in hcl_cache.loads(p.read_text()).get("removed", [])]
    assert any(norm(b)["from"] == "google_secret_manager_secret.this"
               and block(norm(b), "lifecycle") == {"destroy": False} for b in removed), removed
    grants = c.resource("google_secret_manager_secret_iam_member", "accessor")
    assert grants["for_each"] == "local.secret_grants"
    assert grants["role"] == "roles/secretmanager.secretAccessor"
    assert grants["secret_id"] == "data.google_secret_manager_secret.this[each.value.secret].secret_id"
    assert grants["member"] == "serviceAccount:${google_service_account.function[each.value.function].email}"
    assert "local.deployed_secret_env" in c.locals["secret_grants"]


# --- Queues ---------------------------------------------------------------------------------------------


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    assert m, duration
    return float(m.group(1))


def test_queue_names_carry_the_prefix_and_reach_the_code():
    # Queue ids are unique per project and region, so each deployment's carry its prefix; the functions
    # get them from DISPATCH_QUEUE / NOTIFY_QUEUE, whose code defaults serve the local stack only.
    c = cfg()
    assert c.locals["queue_ids"] == {"dispatch": "${var.name_prefix}-dispatch", "notify": "${var.name_prefix}-notify"}
    assert c.resource("google_cloud_tasks_queue", "dispatch")["name"] == Expr("local.queue_ids.dispatch")
    assert c.resource("google_cloud_tasks_queue", "notify")["name"] == Expr("local.queue_ids.notify")
    assert {"DISPATCH_QUEUE", "NOTIFY_QUEUE"} <= set(settings.ENV)


def test_dispatch_queue_paces_at_telnyx_rate_and_shares_max_attempts():
    c = cfg()
    q = c.resource("google_cloud_tasks_queue", "dispatch")
    assert block(q, "rate_limits")["max_dispatches_per_second"] == Expr("var.dispatch_rate_per_second")
    assert c.default("dispatch_rate_per_second") == 15
    retry = block(q, "retry_config")
    assert retry["max_attempts"] == Expr("var.dispatch_max_attempts")
    assert resolve_env("env")["DISPATCH_MAX_ATTEMPTS"] == Expr("tostring(var.dispatch_max_attempts)")
    assert str(c.default("dispatch_max_attempts")) == settings.ENV["DISPATCH_MAX_ATTEMPTS"][0]
    # With a max_retry_duration, retries would go on past max_attempts until it ran out as well.
    assert _seconds(retry.get("max_retry_duration", "0s")) == 0


def test_notify_queue_retries_customer_webhooks_for_24_hours():
    retry = block(cfg().resource("google_cloud_tasks_queue", "notify"), "retry_config")
    assert _seconds(retry["max_retry_duration"]) == 86400
    assert retry["max_attempts"] == -1 or retry["max_attempts"] >= 100
    assert 1 <= _seconds(retry["min_backoff"]) <= 60
    assert 600 <= _seconds(retry["max_backoff"]) <= 86400


def test_enqueue_grants_are_exactly_what_each_function_needs():
    c = cfg()
    fns = c.locals["functions"]
    queue_py = (ROOT / "infra" / "queue.py").read_text()
    helpers = set(re.findall(r"^    def (enqueue_\w+)\(", queue_py, re.M))
    assert helpers == set(ENQUEUE_CALLS), f"the queue helpers changed: update code_facts.ENQUEUE_CALLS ({helpers})"
    # The call graph follows module-level functions; a class method that enqueued would hide behind calls on
    # objects it cannot follow (rt.x.y()), so none may, besides the queue adapter itself.
    graph = call_graph()
    hidden = [name for name, queues in graph.enqueues.items()
              if queues and name.split(".")[-2][:1].isupper() and not name.startswith("infra.queue.")]
    assert not hidden, f"enqueue calls inside class methods: {hidden}"
    used = queues_by_function()
    assert used["batch"] == {"dispatch"} and used["dispatch"] == {"dispatch", "notify"}, used
    for name in main.ENTRY_POINTS:
        # Least privilege both ways: every queue the code can enqueue on, and no other.
        assert set(fns[name]["enqueues"]) == used[name], (name, used[name])
    grant = c.resource("google_cloud_tasks_queue_iam_member", "enqueuer")
    assert grant["for_each"] == "local.enqueue_grants"
    assert grant["role"] == "roles/cloudtasks.enqueuer"
    assert grant["name"] == "local.queues[each.value.queue].name"
    assert grant["member"] == "serviceAccount:${google_service_account.function[each.value.function].email}"
    assert "cfg.enqueues" in c.locals["enqueue_grants"]
    assert c.locals["queues"] == {
        "dispatch": Expr("google_cloud_tasks_queue.dispatch"),
        "notify": Expr("google_cloud_tasks_queue.notify"),
    }
    act_as = c.resource("google_service_account_iam_member", "tasks_invoker_user")
    assert act_as["for_each"] == "local.enqueuing_functions"
    assert act_as["role"] == "roles/iam.serviceAccountUser"
    assert act_as["service_account_id"] == "google_service_account.tasks_invoker.name"
    assert "length(cfg.enqueues) > 0" in c.locals["enqueuing_functions"]


# --- Firestore ------------------------------------------------------------------------------------------


def test_ttl_policies_match_collections():
    c = cfg()
    assert c.locals["firestore_ttl_fields"] == fs_collections.TTL_FIELDS
    ttl = c.resource("google_firestore_field", "ttl")
    assert ttl["for_each"] == "local.firestore_ttl_fields"
    assert ttl["collection"] == "each.key" and ttl["field"] == "each.value"
    assert ttl.get("ttl_config") == [{}], "each TTL field needs a ttl_config block"
    for collection in fs_collections.TTL_FIELDS:
        assert collection in fs_collections.ALL


def test_composite_indexes_match_collections():
    c = cfg()
    tf = [
        (idx["collection"], tuple((f, o) for f, o in idx["fields"]))
        for idx in c.locals["firestore_composite_indexes"].values()
    ]
    assert len(tf) == len(set(tf)), "duplicate composite index"
    assert set(tf) == {(coll, tuple(fields)) for coll, fields in fs_collections.COMPOSITE_INDEXES}
    for coll, fields in tf:
        assert coll in fs_collections.ALL
        assert len(fields) >= 2 and all(o in ("ASCENDING", "DESCENDING") for _, o in fields)
    idx = c.resource("google_firestore_index", "composite")
    assert idx["for_each"] == "local.firestore_composite_indexes"
    assert idx["collection"] == "each.value.collection"
    dyn = dynamic_block(idx, "fields")
    assert dyn["for_each"] == "each.value.fields"
    assert block(dyn, "content") == {"field_path": "fields.value[0]", "order": "fields.value[1]"}


def test_every_query_that_needs_a_composite_index_has_one():
    # Firestore serves equality and array-contains filters by merging single-field indexes; a query that
    # also has an inequality or an order on a second field needs a composite index: its equality fields
    # first, then the inequality / order field (code_facts.index_need).
    queries = firestore_queries()
    assert queries, "found no Firestore query in the deployed code: has the query style changed?"
    indexes = {(coll, tuple(f for f, _ in fields)) for coll, fields in fs_collections.COMPOSITE_INDEXES}
    needing = 0
    for collection, filters, orders, path, line in queries:
        need = index_need(filters, orders)
        if need is None:
            continue
        needing += 1
        equality, tail = need
        ok = any(
            coll == collection and sorted(idx[: len(idx) - len(tail)]) == equality and list(idx[-len(tail):]) == tail
            for coll, idx in indexes
        )
        assert ok, f"{path}:{line}: query on {collection} {filters} order_by {orders} has no composite index"
    assert needing >= 1


def test_each_deployment_has_its_own_firestore_database():
    c = cfg()
    db = c.resource("google_firestore_database", "this")
    assert db["type"] == "FIRESTORE_NATIVE" and db["name"] == Expr("local.firestore_database")
    assert c.locals["firestore_database"] == \
        'var.firestore_database != "" ? var.firestore_database : "${var.name_prefix}-db"'
    for rtype, name in (("google_firestore_index", "composite"), ("google_firestore_field", "ttl")):
        assert c.resource(rtype, name)["database"] == Expr("local.firestore_database"), rtype
    # The functions read it (infra/clients.py), and the local stack keeps the emulator's default database.
    assert resolve_env("env")["FIRESTORE_DATABASE"] == Expr("local.firestore_database")
    assert settings.ENV["FIRESTORE_DATABASE"][0] == "(default)"
    clients = (ROOT / "infra" / "clients.py").read_text()
    assert "database=settings().firestore_database" in clients


# --- Storage --------------------------------------------------------------------------------------------


def test_buckets_are_private_uniform_and_expire():
    c = cfg()
    for name, bucket in c.resources["google_storage_bucket"].items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
        assert bucket.get("lifecycle_rule"), f"{name} has no lifecycle rule"
    media = c.resource("google_storage_bucket", "media")
    ages = [block(r, "condition").get("age") for r in media["lifecycle_rule"]]
    assert Expr("var.media_retention_days") in ages
    assert all(block(r, "action")["type"] == "Delete" for r in media["lifecycle_rule"])


def test_media_access_is_limited_to_the_functions_that_store_or_sign_media():
    c = cfg()
    assert {n for n, f in c.locals["functions"].items() if f["media"]} == MEDIA_FUNCTIONS
    admin = c.resource("google_storage_bucket_iam_member", "media_object_admin")
    assert admin["for_each"] == "local.media_functions"
    assert admin["bucket"] == "google_storage_bucket.media.name"
    assert admin["role"] == "roles/storage.objectAdmin"
    signer = c.resource("google_service_account_iam_member", "self_token_creator")
    assert signer["for_each"] == "local.media_functions"
    assert signer["role"] == "roles/iam.serviceAccountTokenCreator"
    # Token Creator on its own account only.
    assert signer["service_account_id"] == "google_service_account.function[each.key].name"
    assert signer["member"] == "serviceAccount:${google_service_account.function[each.key].email}"


def test_no_project_wide_grant_beyond_firestore_logging_and_the_build_staging_bucket():
    allowed = {"roles/datastore.user", "roles/logging.logWriter"}
    for name, grant in cfg().resources.get("google_project_iam_member", {}).items():
        if name == "build_staged_source_reader":
            continue
        assert grant["role"] in allowed, f"project-level {grant['role']} in {name}"
        assert "condition" not in grant, name
    firestore = cfg().resource("google_project_iam_member", "firestore_user")
    assert firestore["for_each"] == "local.functions"
    assert firestore["member"] == "serviceAccount:${google_service_account.function[each.key].email}"
    for rtype in ("google_project_iam_binding", "google_project_iam_policy"):
        assert rtype not in cfg().resources


def test_build_account_reads_the_gen2_staging_bucket_and_nothing_else():
    # Gen2 builds fetch the source from Cloud Functions' own gcf-v2-sources-<number>-<region> bucket,
    # which exists only after the first deploy: a project grant conditioned on that bucket alone.
    c = cfg()
    grant = c.resource("google_project_iam_member", "build_staged_source_reader")
    assert grant["role"] == "roles/storage.objectViewer"
    assert grant["member"] == "serviceAccount:${google_service_account.build.email}"
    expression = block(grant, "condition")["expression"]
    assert expression == 'resource.name.startsWith("projects/_/buckets/${local.gcf_sources_bucket}")', expression
    assert c.locals["gcf_sources_bucket"] == "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
    for _name, (_rname, body) in function_resources().items():
        assert block(body, "build_config")["service_account"] == Expr("google_service_account.build.id")


def test_functions_wait_for_their_grants_to_propagate():
    # IAM grants propagate in minutes (hashicorp/terraform-provider-google#20571): the functions wait for a
    # time_sleep that starts once every grant their deployment needs exists, and again only when they change.
    c = cfg()
    sleep = c.resource("time_sleep", "iam_propagation")
    assert sleep["create_duration"] == "${var.iam_propagation_seconds}s"
    triggers = str(sleep["triggers"])
    for grant in ("google_project_iam_member.build_log_writer",
                  "google_artifact_registry_repository_iam_member.build_writer",
                  "google_storage_bucket_iam_member.build_source_reader",
                  "google_project_iam_member.build_staged_source_reader",
                  "google_storage_bucket_iam_member.build_archive_reader",
                  "google_secret_manager_secret_iam_member.accessor"):
        assert grant in triggers, grant
    for _name, (_rname, body) in function_resources().items():
        assert "time_sleep.iam_propagation" in body["depends_on"]


def test_alerts_on_log_based_metrics_wait_until_the_metrics_exist():
    # Cloud Monitoring refuses an alert on a log-based metric for up to 10 minutes after its creation
    # (hashicorp/terraform-provider-google#11102): those alerts wait for a time_sleep after the metrics.
    c = cfg()
    sleep = c.resource("time_sleep", "log_metrics_visible")
    assert sleep["create_duration"] == "${var.log_metric_wait_seconds}s"
    assert "google_logging_metric.counter" in str(sleep["triggers"])
    assert "google_logging_metric.distribution" in str(sleep["triggers"])
    for name, policy in c.resources["google_monitoring_alert_policy"].items():
        reads_log_metric = "log_metric_types" in str(policy["conditions"])
        assert reads_log_metric == ("time_sleep.log_metrics_visible" in policy.get("depends_on", [])), name


# --- Invokers and ingress -------------------------------------------------------------------------------


INVOKER_TYPES = (
    "google_cloud_run_service_iam_member", "google_cloud_run_v2_service_iam_member",
    "google_cloudfunctions2_function_iam_member", "google_cloud_run_service_iam_binding",
    "google_cloud_run_v2_service_iam_binding", "google_cloudfunctions2_function_iam_binding",
)


def invoker_grants() -> dict[str, set[str]]:
    """function -> members holding run.invoker on it."""
    c = cfg()
    fns = c.locals["functions"]
    out: dict[str, set[str]] = {n: set() for n in main.ENTRY_POINTS}
    for rtype in INVOKER_TYPES:
        for rname, grant in c.resources.get(rtype, {}).items():
            target = grant.get("service") or grant.get("name") or grant.get("cloud_function")
            m = re.fullmatch(r'google_cloudfunctions2_function\.(public|private)\[(each\.key|"(\w+)")\]\.name', target)
            assert m, f"{rtype}.{rname}: cannot tell which function {target!r} is"
            if m.group(3):
                names = {m.group(3)}
            elif grant["for_each"] == f"local.{m.group(1)}_functions":
                names = {n for n, f in fns.items() if f["public"] is (m.group(1) == "public")}
            else:
                lm = re.fullmatch(r"toset\(\[(.*)\]\)", grant["for_each"])
                assert lm, f"{rtype}.{rname}: for_each {grant['for_each']!r}"
                names = {x.strip().strip('"') for x in lm.group(1).split(",")}
            assert grant["role"] in ("roles/run.invoker", "roles/cloudfunctions.invoker"), grant["role"]
            members = grant["members"] if "members" in grant else [grant["member"]]
            for name in names:
                assert fns[name]["public"] is (m.group(1) == "public"), f"{name} is not a {m.group(1)} function"
                out[name] |= set(members)
    return out


def test_no_function_is_open_to_everyone():
    text = cfg().text()
    assert "allUsers" not in text and "allAuthenticatedUsers" not in text


def test_invokers_are_exactly_the_callers():
    assert {n for n, f in cfg().locals["functions"].items() if f["public"]} == PUBLIC_FUNCTIONS
    tasks = "serviceAccount:${google_service_account.tasks_invoker.email}"
    scheduler = "serviceAccount:${google_service_account.scheduler.email}"
    gateway = "serviceAccount:${google_service_account.gateway.email}"
    assert invoker_grants() == {
        "dispatch": {tasks},
        "notifier": {tasks},
        "sweeper": {scheduler},
        "send": {gateway},
        "group": {gateway},
        "batch": {gateway},
        "messages": {gateway},
        "optouts": {gateway},
        "templates": {gateway},
        "webhook": {gateway},
        "links": {gateway},
    }
    for name, grant in cfg().resources.get("google_project_iam_member", {}).items():
        assert "invoker" not in grant["role"], f"project-wide invoker grant {name}"


def test_private_functions_refuse_internet_ingress():
    c = cfg()
    assert c.default("private_ingress") == "ALLOW_INTERNAL_ONLY"
    for name, (rname, body) in function_resources().items():
        ingress = block(body, "service_config")["ingress_settings"]
        if rname == "public":
            assert name in PUBLIC_FUNCTIONS and ingress == "ALLOW_ALL", (name, ingress)
        else:
            assert name in PRIVATE_FUNCTIONS and ingress == Expr("var.private_ingress"), (name, ingress)


def test_min_instances_keep_caller_and_telnyx_facing_functions_warm():
    default = cfg().default("min_instances")
    for name in ("send", "group", "webhook"):
        assert default.get(name, 0) >= 1, name
    for _name, (_rname, body) in function_resources().items():
        assert block(body, "service_config")["min_instance_count"] == Expr("lookup(var.min_instances, each.key, 0)")


# --- API Gateway and scheduler --------------------------------------------------------------------------


def test_gateway_routes_public_paths_to_the_right_functions():
    c = cfg()
    args = call_args(c.locals["openapi_spec"], "templatefile")
    assert args[0] == '"${path.module}/openapi-gateway.yaml.tftpl"'
    tpl_vars = parse_object_literal(args[1])
    urls = {}
    for key, value in tpl_vars.items():
        if key.endswith("_url"):
            m = re.fullmatch(r'local\.function_urls\["(\w+)"\]', value)
            assert m and m.group(1) == key.removesuffix("_url"), f"{key} = {value}"
            urls[key] = m.group(1)
    assert set(urls.values()) == PUBLIC_FUNCTIONS, "the gateway must front exactly the public functions"

    template = (TF_DIR / "openapi-gateway.yaml.tftpl").read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", template))
    assert placeholders == set(tpl_vars), (placeholders, set(tpl_vars))
    rendered = re.sub(r"\$\{(\w+)\}", lambda m: f"https://{m.group(1)}.backend.test", template)
    doc = yaml.safe_load(rendered)
    assert doc["swagger"] == "2.0"
    assert "securityDefinitions" not in doc and "security" not in doc
    routes = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            backend = op["x-google-backend"]
            assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS", (path, method)
            assert "security" not in op and op.get("operationId")
            m = re.fullmatch(r"https://(\w+)_url\.backend\.test", backend["address"])
            assert m, backend["address"]
            routes[(path, method)] = m.group(1)
    assert routes == GATEWAY_ROUTES

    config = c.resource("google_api_gateway_api_config", "this")
    backend_sa = block(block(config, "gateway_config"), "backend_config")["google_service_account"]
    assert backend_sa == "google_service_account.gateway.email"
    for rtype in ("google_api_gateway_api", "google_api_gateway_api_config", "google_api_gateway_gateway"):
        assert c.resource(rtype, "this")["provider"] == "google-beta", rtype


def test_no_function_times_out_before_the_gateway_gives_up():
    # API Gateway waits `deadline` seconds for a backend; a function with a shorter timeout would cut the
    # request (the opt-out import's 60 s on the optouts function, which once had 30 s on another).
    template = (TF_DIR / "openapi-gateway.yaml.tftpl").read_text()
    doc = yaml.safe_load(re.sub(r"\$\{(\w+)\}", lambda m: f"https://{m.group(1)}.backend.test", template))
    fns = cfg().locals["functions"]
    longest: dict[str, float] = {}
    for ops in doc["paths"].values():
        for op in ops.values():
            backend = op["x-google-backend"]
            name = re.fullmatch(r"https://(\w+)_url\.backend\.test", backend["address"]).group(1)
            longest[name] = max(longest.get(name, 0), float(backend.get("deadline", 15.0)))
    assert longest["optouts"] == 60.0, longest
    for name, deadline in longest.items():
        timeout = fns[name]["timeout"]
        assert timeout >= deadline, f"{name}: timeout {timeout} s < gateway deadline {deadline} s"


def test_sweeper_is_scheduled_with_an_oidc_token():
    c = cfg()
    job = c.resource("google_cloud_scheduler_job", "sweep")
    assert job["schedule"] == Expr("var.sweep_schedule") and c.default("sweep_schedule") == "* * * * *"
    target = block(job, "http_target")
    sweeper_uri = 'google_cloudfunctions2_function.private["sweeper"].service_config[0].uri'
    assert target["http_method"] == "POST" and target["uri"] == sweeper_uri
    oidc = block(target, "oidc_token")
    assert oidc["service_account_email"] == "google_service_account.scheduler.email"
    assert oidc["audience"] == sweeper_uri


# --- Shape ----------------------------------------------------------------------------------------------


def test_providers_are_pinned_and_apis_enabled():
    c = cfg()
    providers = {}
    for tf in c.terraform:
        for rp in tf.get("required_providers", []):
            providers.update(rp)
        assert "backend" not in tf, "the module has no backend: the root module (examples/) chooses it"
    # A module accepts a range of major versions (terraform-google-modules style); the root modules pin
    # exact versions through their lock files.
    for name in ("google", "google-beta"):
        assert providers[name]["source"] == f"hashicorp/{name}"
        assert providers[name]["version"] == ">= 6.50, < 8", providers[name]
    assert providers["time"]["source"] == "hashicorp/time"
    assert not re.search(r'^provider\s+"', c.text(), re.M), "the module configures no provider"
    services = c.locals["services"]
    for api in ("cloudfunctions", "run", "cloudbuild", "cloudtasks", "cloudscheduler", "firestore",
                "secretmanager", "apigateway", "iamcredentials", "artifactregistry", "logging", "monitoring"):
        assert f"{api}.googleapis.com" in services, api
    # enable_apis = false leaves API enablement to the caller.
    assert c.resource("google_project_service", "this")["for_each"] == \
        Expr("var.enable_apis ? toset(local.services) : toset([])")
    readme = (TF_DIR / "README.md").read_text()
    for api in services:
        assert api in readme, f"terraform/README.md must list {api} for callers with enable_apis = false"


def test_every_variable_is_typed_described_and_validated_and_every_output_described():
    c = cfg()
    for name, var in c.variables.items():
        assert var.get("type"), f"variable {name} has no type"
        assert len(var.get("description", "")) > 10, f"variable {name} has no description"
        if var["type"] != Expr("bool"):
            assert var.get("validation"), f"variable {name} has no validation"
    for name, out in c.outputs.items():
        assert len(out.get("description", "")) > 10, f"output {name} has no description"
    for name in ("gateway_url", "function_urls", "media_bucket", "queues", "secrets", "firestore_database"):
        assert name in c.outputs, name


EXAMPLES = sorted(p.parent for p in (TF_DIR / "examples").glob("*/main.tf"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_root_module_calling_the_module(example):
    c, module = Config(example), cfg()
    values = norm(hcl_cache.load(example / "terraform.tfvars.example"))
    assert set(values) <= set(c.variables), set(values) - set(c.variables)
    required = {n for n, v in c.variables.items() if "default" not in v}
    assert required <= set(values), required - set(values)
    text = c.text()
    assert re.search(r'^provider\s+"google"', text, re.M) and re.search(r'^provider\s+"google-beta"', text, re.M)
    # State stays local until the operator adds the backend: backend.tf.example holds the GCS one.
    assert not re.search(r'backend\s+"', text), "no backend block in an example: backend.tf.example holds it"
    assert re.search(r'backend\s+"gcs"', (example / "backend.tf.example").read_text())
    calls = [body for blk in (hcl_cache.loads(p.read_text()).get("module", []) for p in c.files) for b in blk
             for body in norm(b).values()]
    assert len(calls) == 1 and calls[0]["source"] == "../..", calls
    args = set(calls[0]) - {"source", "providers", "depends_on"}
    assert args <= set(module.variables), args - set(module.variables)
    module_required = {n for n, v in module.variables.items() if "default" not in v}
    assert module_required <= args, module_required - args
    # The code: the checkout's root (basic) or a prebuilt archive (source_archive), never both.
    assert ("source_dir" in args) != ("source_archive" in args), args
    if "source_dir" in args:
        assert calls[0]["source_dir"] == "${path.module}/../../.."


def test_cloudbuild_tests_then_plans_and_applies_only_when_told():
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = {s["id"]: s for s in build["steps"]}
    order = ["install", "lint", "test", "terraform-fmt", "terraform-init", "terraform-validate",
             "terraform-plan", "secrets-check", "terraform-apply"]
    assert [s["id"] for s in build["steps"] if s["id"] in order] == order
    assert "make test" in steps["test"]["args"][-1]
    assert steps["terraform-fmt"]["args"][:2] == ["fmt", "-check"] and steps["terraform-fmt"]["dir"] == "terraform"
    assert steps["terraform-validate"]["args"] == ["validate"]
    assert "-out=tfplan" in steps["terraform-plan"]["args"][-1]
    apply = steps["terraform-apply"]
    assert "APPLY=${_APPLY}" in apply["env"] and "BUILD_BRANCH=$BRANCH_NAME" in apply["env"]
    assert "PR_NUMBER=$_PR_NUMBER" in apply["env"]
    script = apply["args"][-1]
    assert '"$$APPLY" = "true"' in script and '"$$BUILD_BRANCH" = "$$APPLY_BRANCH"' in script
    assert '[ -z "$$PR_NUMBER" ]' in script, "a pull request's build never applies"
    assert "apply -input=false" in script and "tfplan" in script
    # The example keeps no backend block: the pipeline uses its backend.tf.example.
    init = steps["terraform-init"]["args"][-1]
    assert "cp backend.tf.example backend.tf" in init and '-backend-config="bucket=$$STATE_BUCKET"' in init
    assert build["substitutions"]["_APPLY"] == "false" and build["substitutions"]["_APPLY_BRANCH"] == "main"
    # Plan and apply run in a root module (with providers and a backend), the repository's example by default.
    tf_dir = build["substitutions"]["_TF_DIR"]
    assert (ROOT / tf_dir / "main.tf").exists() and (ROOT / tf_dir) in EXAMPLES, tf_dir
    for step in build["steps"]:
        if step["name"] == "${_TERRAFORM_IMAGE}" and step["id"] not in ("terraform-binary", "terraform-fmt"):
            assert step.get("dir") == "${_TF_DIR}", step["id"]


def test_cloudbuild_refuses_to_apply_before_every_secret_has_a_value():
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = [s["id"] for s in build["steps"]]
    check = build["steps"][steps.index("secrets-check")]
    assert steps.index("secrets-check") < steps.index("terraform-apply")
    assert build["steps"][steps.index("terraform-apply")]["waitFor"] == ["secrets-check"]
    script = check["args"][-1]
    # The ids: the secret data sources the plan read (whatever secret_ids the root module passes) ...
    assert "terraform show -json tfplan > tfplan.json" in build["steps"][steps.index("terraform-plan")]["args"][-1]
    assert 'r.get("type") == "google_secret_manager_secret"' in script and "tfplan.json" in script
    # ... else the module's default ids, <prefix>-<SECRET_ENV name, lower, dashes>.
    m = re.search(r"for secret in ([\w\- ]+); do", script)
    assert m, script
    assert cfg().locals["secret_ids"].endswith('"${var.name_prefix}-${lower(replace(name, "_", "-"))}")}')
    assert set(m.group(1).split()) == {k.lower().replace("_", "-") for k in settings.SECRET_ENV}
    assert "$$NAME_PREFIX-$$secret" in script and "state=ENABLED" in script and "exit 1" in script
    assert "NAME_PREFIX=${_NAME_PREFIX}" in check["env"]
    assert "TF_VAR_name_prefix=${_NAME_PREFIX}" in build["steps"][steps.index("terraform-plan")]["env"]


# --- Monitoring -----------------------------------------------------------------------------------------


def metric_calls() -> dict[str, list[str]]:
    """event name -> where the deployed code calls log.metric(<event>, ...)."""
    found: dict[str, list[str]] = {}
    for path in [p for d in ("functions", "shared", "infra") for p in sorted((ROOT / d).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "metric"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.setdefault(node.args[0].value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_business_event_has_a_log_based_metric():
    from infra import log

    c = cfg()
    events = {}
    for group in ("log_counters", "log_distributions"):
        for name, spec in c.locals[group].items():
            assert spec["event"] not in events.values(), spec["event"]
            events[name] = spec["event"]
    assert set(events.values()) == set(log.METRIC_EVENTS)
    for name, spec in c.locals["log_distributions"].items():
        assert spec["field"] in ("count", "latency_ms"), name
    # The code emits no event that no metric counts.
    unknown = {e: where for e, where in metric_calls().items() if e not in log.METRIC_EVENTS}
    assert not unknown, unknown
    counter = c.resource("google_logging_metric", "counter")
    assert counter["filter"] == '${local.function_logs} AND jsonPayload.event=\"${each.value.event}\"'
    assert "local.service_names" in c.locals["function_logs"]
    # Exactly this deployment's services: "<prefix>-.*" would match a deployment whose prefix extends it.
    assert c.locals["service_names"] == '${var.name_prefix}-(${join("|", keys(local.functions))})'
    assert not re.search(r"^[^#]*name_prefix\}-\.\*", c.text(), re.M), "a filter matches <prefix>-.*"


def test_alerts_cover_errors_queue_age_and_depth_give_ups_and_signatures():
    c = cfg()
    policies = c.resources["google_monitoring_alert_policy"]
    assert set(policies) == {"function_errors", "dispatch_backlog", "webhook_gave_up", "invalid_signatures",
                             "carrier_unhealthy"}
    filters = {name: " ".join(str(block(cond, "condition_threshold")["filter"]) for cond in p["conditions"])
               for name, p in policies.items()}
    assert "run.googleapis.com/request_count" in filters["function_errors"]
    assert "queue/task_attempt_delays" in filters["dispatch_backlog"] and "queue/depth" in filters["dispatch_backlog"]
    assert 'log_metric_types[\"webhook_gave_up\"]' in filters["webhook_gave_up"]
    assert 'log_metric_types[\"signature_invalid\"]' in filters["invalid_signatures"]
    assert 'log_metric_types[\"carrier_health\"]' in filters["carrier_unhealthy"]
    assert "metric.labels.healthy" in filters["carrier_unhealthy"]
    for name, p in policies.items():
        assert p["notification_channels"] == Expr("var.notification_channels"), name
        assert "var.name_prefix" in p["display_name"], name
