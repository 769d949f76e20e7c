#!/usr/bin/env bash
# Stop the local team stack (newest service first). Its data stays in the state folder for the next `up`.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/variantlab stack down "$@"
