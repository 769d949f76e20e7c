#!/usr/bin/env bash
# Which services of the local team stack run, and where. Exit 3 when any is down.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/variantlab stack status "$@"
