#!/usr/bin/env bash
# Run one example task as it is, in a throw-away clone of this checkout, and print its leaderboard and wall time.
# Usage: bash examples/run_example.sh binary-sentiment|regression-rating|multiclass-topics|llm-variants|text-to-text [target-dir]
# (after `make setup`: it uses this checkout's .venv).
set -euo pipefail
name=${1:?usage: examples/run_example.sh <example> [target-dir]}
here=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$here/examples/$name/params.yaml" ] || { echo "no such example: $name" >&2; exit 2; }
target=${2:-$(mktemp -d)/$name}
export PATH="$here/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
git clone -q "$here" "$target"
cd "$target"
cp "examples/$name/params.yaml" params.yaml
if [ "$name" = multiclass-topics ]; then python examples/multiclass-topics/make_topics.py data/external/topics.csv; fi
if [ "$name" = text-to-text ]; then python examples/text-to-text/make_dates.py data/external/dates.csv; fi
git add -A && git -c user.email=example@localhost -c user.name=example commit -qm "example $name"
started=$(date +%s)
variantlab run
echo "example $name: $(( $(date +%s) - started )) s in $target"
