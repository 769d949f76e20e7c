#!/usr/bin/env bash
# The system packages the team stack and the tests need, from Debian: PostgreSQL's server, and Chromium with its
# driver for the browser test of the MLflow UI (tests/e2e). Nothing downloads a browser from anywhere else.
# Installs nothing that is already there; needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ "${#need[@]}" -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system packages: installing ${need[*]} from Debian"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a cluster of its own on port 5432; the stack runs its own cluster, so stop that one.
if command -v pg_lsclusters >/dev/null; then
  $sudo pg_ctlcluster --force "$(pg_lsclusters -h | awk 'NR==1{print $1}')" main stop 2>/dev/null || true
fi
