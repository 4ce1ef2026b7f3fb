#!/usr/bin/env bash
# Once per project, before the first `terraform init`: the APIs Terraform needs to start, the bucket that
# holds Terraform state, and the two service accounts Cloud Build runs as (docs/deploy.md, "Continuous
# deployment with Cloud Build"):
#   - the deployer, for builds of the main branch: the roles applying terraform/ needs (and no Owner);
#   - the planner, for builds of pull requests: read-only, and no access to any secret's value. A pull request
#     can change cloudbuild.yaml and run what it likes, so what its build may do is what this account may do.
# Safe to run again: it creates what is missing and re-grants the roles.
#
#   PROJECT_ID=my-project REGION=us-central1 bash terraform/bootstrap.sh
#
# Optional: STATE_BUCKET (default <project>-tfstate), DEPLOYER (default mmsgate-deployer), PLANNER (default
# mmsgate-planner).
# Run it as a project Owner (or with Service Usage Admin, Storage Admin, Service Account Admin and Project
# IAM Admin). docs/deploy.md explains every step.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID}"
REGION="${REGION:-us-central1}"
STATE_BUCKET="${STATE_BUCKET:-$PROJECT_ID-tfstate}"
DEPLOYER="${DEPLOYER:-mmsgate-deployer}"
DEPLOYER_EMAIL="$DEPLOYER@$PROJECT_ID.iam.gserviceaccount.com"
PLANNER="${PLANNER:-mmsgate-planner}"
PLANNER_EMAIL="$PLANNER@$PROJECT_ID.iam.gserviceaccount.com"

# What `terraform apply` of the module does, as roles on the project. Each line: the role, and why.
DEPLOYER_ROLES=(
  "roles/serviceusage.serviceUsageAdmin"   # enable the APIs (apis.tf) and the gateway's managed service
  "roles/resourcemanager.projectIamAdmin"  # the functions' project grants (Firestore user, build log writer)
  "roles/iam.serviceAccountAdmin"          # create the service accounts and grants on them
  "roles/iam.serviceAccountUser"           # deploy functions, jobs and the gateway that run as them
  "roles/cloudfunctions.admin"             # the nine functions
  "roles/run.admin"                        # invoker grants on the functions' Cloud Run services
  "roles/storage.admin"                    # buckets, their IAM, the source archive
  "roles/artifactregistry.admin"           # the functions' image repository and its IAM
  "roles/cloudtasks.admin"                 # queues and their IAM
  "roles/cloudscheduler.admin"             # the sweeper's job
  "roles/datastore.owner"                  # the Firestore database, indexes and TTL policies
  "roles/secretmanager.admin"              # who may read each secret (its IAM), and the pipeline's version check
  "roles/apigateway.admin"                 # API Gateway api, config, gateway
  "roles/servicemanagement.admin"          # the managed service behind an API Gateway api
  "roles/logging.configWriter"             # log-based metrics
  "roles/monitoring.editor"                # dashboard and alert policies
  "roles/logging.logWriter"                # the build's own logs (cloudbuild.yaml logs to Cloud Logging)
)

# What a pull request's `terraform plan -refresh=false -lock=false` reads, as read-only roles on the project
# (and Object Viewer on the state bucket, below). No role here writes anything but build logs, none reads a
# secret's value (Secret Manager Viewer is metadata only), and none can act as another account.
PLANNER_ROLES=(
  "roles/browser"                          # the project's number (data "google_project")
  "roles/secretmanager.viewer"             # that each secret exists (data "google_secret_manager_secret")
  "roles/run.viewer"                       # the deterministic-URL check's Cloud Run service lookup
  "roles/logging.logWriter"                # the build's own logs
)

echo "== APIs Terraform needs before it can enable the rest"
gcloud services enable --project="$PROJECT_ID" \
  serviceusage.googleapis.com cloudresourcemanager.googleapis.com iam.googleapis.com \
  storage.googleapis.com cloudbuild.googleapis.com secretmanager.googleapis.com

echo "== Terraform state bucket gs://$STATE_BUCKET"
if ! gcloud storage buckets describe "gs://$STATE_BUCKET" --project="$PROJECT_ID" >/dev/null 2>&1; then
  gcloud storage buckets create "gs://$STATE_BUCKET" --project="$PROJECT_ID" --location="$REGION" \
    --uniform-bucket-level-access --public-access-prevention
fi
gcloud storage buckets update "gs://$STATE_BUCKET" --versioning >/dev/null

echo "== Deployer service account $DEPLOYER_EMAIL"
if ! gcloud iam service-accounts describe "$DEPLOYER_EMAIL" --project="$PROJECT_ID" >/dev/null 2>&1; then
  gcloud iam service-accounts create "$DEPLOYER" --project="$PROJECT_ID" \
    --display-name="mmsgate deployer (Cloud Build)" \
    --description="Runs terraform plan and apply of mmsgate from Cloud Build."
fi
for role in "${DEPLOYER_ROLES[@]}"; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$DEPLOYER_EMAIL" \
    --role="$role" --condition=None --quiet >/dev/null
  echo "   $role"
done
# (Storage Admin above covers the state bucket too: Terraform reads and writes its state objects.)

echo "== Planner service account $PLANNER_EMAIL (pull-request builds: read-only)"
if ! gcloud iam service-accounts describe "$PLANNER_EMAIL" --project="$PROJECT_ID" >/dev/null 2>&1; then
  gcloud iam service-accounts create "$PLANNER" --project="$PROJECT_ID" \
    --display-name="mmsgate planner (Cloud Build, pull requests)" \
    --description="Runs terraform plan of mmsgate for pull requests: reads state and metadata, applies nothing."
fi
for role in "${PLANNER_ROLES[@]}"; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$PLANNER_EMAIL" \
    --role="$role" --condition=None --quiet >/dev/null
  echo "   $role"
done
# The state, read only: a pull request's plan neither writes it nor takes its lock.
gcloud storage buckets add-iam-policy-binding "gs://$STATE_BUCKET" --member="serviceAccount:$PLANNER_EMAIL" \
  --role=roles/storage.objectViewer >/dev/null
echo "   roles/storage.objectViewer on gs://$STATE_BUCKET"

echo
echo "Done. Next (docs/deploy.md):"
echo "  cd terraform/examples/basic && cp backend.tf.example backend.tf && terraform init -backend-config=\"bucket=$STATE_BUCKET\""
echo "  The main-branch trigger runs as:  projects/$PROJECT_ID/serviceAccounts/$DEPLOYER_EMAIL"
echo "  The pull-request trigger runs as: projects/$PROJECT_ID/serviceAccounts/$PLANNER_EMAIL"
