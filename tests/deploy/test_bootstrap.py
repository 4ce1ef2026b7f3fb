"""terraform/bootstrap.sh gives the Cloud Build deployer account a role for every kind of resource the
module manages (and the deployer is not Owner), and the planner, which pull-request builds run as, only
read-only roles: enough for cloudbuild.yaml's plan of a pull request, not to apply or to read a secret."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.test_terraform_plan import declared_types

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "terraform" / "bootstrap.sh"

# Which predefined role lets Terraform create (and read) each kind of resource or data source.
ROLE_FOR = {
    "google_project_service": "roles/serviceusage.serviceUsageAdmin",
    "google_project_iam_member": "roles/resourcemanager.projectIamAdmin",
    "google_project": "roles/resourcemanager.projectIamAdmin",  # resourcemanager.projects.get
    "google_service_account": "roles/iam.serviceAccountAdmin",
    "google_service_account_iam_member": "roles/iam.serviceAccountAdmin",
    "google_cloudfunctions2_function": "roles/cloudfunctions.admin",
    "google_cloud_run_service_iam_member": "roles/run.admin",
    "google_cloud_run_v2_service": "roles/run.admin",
    "google_storage_bucket": "roles/storage.admin",
    "google_storage_bucket_object": "roles/storage.admin",
    "google_storage_bucket_iam_member": "roles/storage.admin",
    "google_artifact_registry_repository": "roles/artifactregistry.admin",
    "google_artifact_registry_repository_iam_member": "roles/artifactregistry.admin",
    "google_cloud_tasks_queue": "roles/cloudtasks.admin",
    "google_cloud_tasks_queue_iam_member": "roles/cloudtasks.admin",
    "google_cloud_scheduler_job": "roles/cloudscheduler.admin",
    "google_firestore_database": "roles/datastore.owner",
    "google_firestore_index": "roles/datastore.owner",
    "google_firestore_field": "roles/datastore.owner",
    "google_secret_manager_secret": "roles/secretmanager.admin",
    "google_secret_manager_secret_iam_member": "roles/secretmanager.admin",
    "google_api_gateway_api": "roles/apigateway.admin",
    "google_api_gateway_api_config": "roles/apigateway.admin",
    "google_api_gateway_gateway": "roles/apigateway.admin",
    "google_logging_metric": "roles/logging.configWriter",
    "google_monitoring_dashboard": "roles/monitoring.editor",
    "google_monitoring_alert_policy": "roles/monitoring.editor",
    "archive_file": None,  # local: no Google API
    "time_sleep": None,  # local: a wait
}

# What a pull request's plan (terraform plan -refresh=false -lock=false) reads: the data sources only.
PLANNER_ROLE_FOR = {
    "google_project": "roles/browser",  # resourcemanager.projects.get
    "google_secret_manager_secret": "roles/secretmanager.viewer",  # secret metadata, never a version's data
    "google_cloud_run_v2_service": "roles/run.viewer",
    "archive_file": None,
}


def script_roles(name: str) -> list[str]:
    text = SCRIPT.read_text()
    block = re.search(rf"^{name}=\((.*?)^\)", text, re.M | re.S)
    assert block, f"no {name}=( ... ) in bootstrap.sh"
    return re.findall(r'"(roles/[\w.]+)"', block.group(1))


def deployer_roles() -> list[str]:
    return script_roles("DEPLOYER_ROLES")


def test_bootstrap_is_valid_bash():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run([bash, "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_deployer_holds_a_role_for_every_resource_the_module_manages():
    roles = set(deployer_roles())
    assert "roles/owner" not in roles and "roles/editor" not in roles
    for _kind, rtype, _provider in declared_types():
        assert rtype in ROLE_FOR, f"{rtype}: which role may create it? add it to ROLE_FOR and bootstrap.sh"
        if ROLE_FOR[rtype]:
            assert ROLE_FOR[rtype] in roles, f"{rtype} needs {ROLE_FOR[rtype]} in bootstrap.sh"
    # Deploying resources that run as service accounts (functions, the scheduler job, the gateway).
    assert "roles/iam.serviceAccountUser" in roles
    # An API Gateway api is a managed service; Cloud Build writes its logs.
    assert {"roles/servicemanagement.admin", "roles/logging.logWriter"} <= roles


def test_docs_list_the_same_roles():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    names = {
        "roles/serviceusage.serviceUsageAdmin": "Service Usage Admin",
        "roles/resourcemanager.projectIamAdmin": "Project IAM Admin",
        "roles/iam.serviceAccountAdmin": "Service Account Admin",
        "roles/iam.serviceAccountUser": "Service\nAccount User",
        "roles/monitoring.editor": "Monitoring Editor",
        "roles/logging.configWriter": "Logs Configuration Writer",
    }
    flat = " ".join(docs.split())
    for role, name in names.items():
        assert role in deployer_roles()
        assert " ".join(name.split()) in flat, name
    planner = {"roles/browser": "Browser", "roles/secretmanager.viewer": "Secret Manager Viewer",
               "roles/run.viewer": "Cloud Run Viewer", "roles/logging.logWriter": "Logs Writer"}
    assert set(planner) == set(script_roles("PLANNER_ROLES"))
    for name in planner.values():
        assert name in flat, name


def test_deploy_doc_walks_one_apply_and_a_pipeline_pull_requests_cannot_use():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    flat = " ".join(docs.split())
    assert "apply -target" not in docs and "apply` again" not in docs, "the first deployment is one apply"
    assert "gcloud secrets create mmsgate-telnyx-api-key" in docs  # the values exist before the apply
    assert '--service-account="$PLANNER"' in docs and '--service-account="$DEPLOYER"' in docs
    assert "--comment-control=COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY" in docs
    assert "cp backend.tf.example backend.tf" in flat


def test_planner_reads_what_a_pull_request_plan_reads_and_nothing_more():
    roles = set(script_roles("PLANNER_ROLES"))
    data_types = {rtype for kind, rtype, _provider in declared_types() if kind == "data"}
    for rtype in data_types:
        assert rtype in PLANNER_ROLE_FOR, f"data {rtype}: which read-only role lets a pull request's plan read it?"
        if PLANNER_ROLE_FOR[rtype]:
            assert PLANNER_ROLE_FOR[rtype] in roles, f"data {rtype} needs {PLANNER_ROLE_FOR[rtype]} for the planner"
    assert roles == {r for r in PLANNER_ROLE_FOR.values() if r} | {"roles/logging.logWriter"}, roles
    for role in roles:  # read-only, except writing its own build logs
        assert role == "roles/logging.logWriter" or re.search(r"(viewer|browser)$", role, re.I), role
        assert "secretAccessor" not in role and "serviceAccount" not in role and "admin" not in role.lower()
    text = SCRIPT.read_text()
    # State: read on the state bucket alone (no lock, no write).
    assert re.search(r'buckets add-iam-policy-binding "gs://\$STATE_BUCKET" --member="serviceAccount:\$PLANNER_EMAIL"'
                     r' \\\n\s+--role=roles/storage\.objectViewer', text), "the planner reads the state bucket"
    assert "PLANNER_EMAIL" not in text.split("DEPLOYER_ROLES=(")[1].split(")")[0]


def test_pull_request_plans_need_no_more_than_the_planner_has():
    import yaml

    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    plan = next(s for s in build["steps"] if s["id"] == "terraform-plan")["args"][-1]
    # Outside an applying build: no refresh (it would read every resource) and no lock (a write).
    assert 'mode="-refresh=false -lock=false"' in plan
    assert '[ -z "$$PR_NUMBER" ]' in plan


def test_docs_say_eight_functions():
    assert "seven" not in SCRIPT.read_text()
