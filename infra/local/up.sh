#!/usr/bin/env bash
# Start the team stack on this machine without Docker: PostgreSQL (Debian), an S3 server (moto),
# the MLflow server (PostgreSQL + S3 artifacts + basic auth) and the Prefect server, all on loopback.
# Waits until each one is healthy. Extra arguments go to `variantlab stack up` (e.g. --mlflow-port 0).
# Use it from a checkout with:  set -a; source .variantlab/stack/stack.env; set +a
set -euo pipefail
cd "$(dirname "$0")/../.."
bash infra/local/install-system-packages.sh
exec .venv/bin/variantlab stack up "$@"
