#!/usr/bin/env bash
# On a CUDA machine: our training loop against the Hugging Face Trainer with bf16, for the encoder and for a
# decoder LLM of SmolLM2-135M's shape (LoRA and full fine-tuning), printing samples/s of each and MFU.
# The models are built from their configs (benchmarks/configs/) with random weights and random token ids, so the
# check needs no weights, no data and no network: torch, transformers and peft only.
# Usage: bash benchmarks/gpu_check.sh [extra bench_train.py flags]   (about 4 minutes on one H100)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device"
print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__)
PY
common=(--device cuda --bf16 --batch-size 32 --max-length 128 "$@")
"$PY" benchmarks/bench_train.py --config benchmarks/configs/all-minilm-l6-v2 --steps 100 "${common[@]}" \
  --out reports/bench/train-gpu.json
"$PY" benchmarks/bench_train.py --config benchmarks/configs/smollm2-135m --lora --steps 50 "${common[@]}" \
  --out reports/bench/train-llm-lora-gpu.json
"$PY" benchmarks/bench_train.py --config benchmarks/configs/smollm2-135m --steps 50 "${common[@]}" \
  --out reports/bench/train-llm-full-gpu.json
