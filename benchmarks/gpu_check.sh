#!/usr/bin/env bash
# On a CUDA machine: the training benchmark with bf16, printing samples/s of ours and of the Trainer, and MFU.
# Usage: bash benchmarks/gpu_check.sh [extra bench_train.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device"
print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__)
PY
python benchmarks/bench_train.py --device cuda --bf16 --steps 100 --batch-size 32 --max-length 128 \
  --out reports/bench/train-gpu.json "$@"
