"""Two torch processes on one machine: a thread pool of every core each, against their share of the cores each.

Each process builds SmolLM2-135M from its config (``benchmarks/configs/smollm2-135m``, random weights: the real
model's arithmetic, nothing downloaded) and runs the same fixed work: forward passes over a batch of prompts
(scoring) and forward + backward steps (training). Three arms in one run, the same work in each:

- one process alone, torch's default pool (every core);
- two processes at once, each with the default pool (what ``variantlab search --workers 2`` and pytest-xdist did);
- two processes at once, each with ``variantlab.proc.threads.shared_env(2)`` (its share of the cores).

The figure is the wall time of the two-process arms, and their ratio.

    python -m benchmarks.bench_threads          # writes reports/bench/threads.json (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import REPO, side_by_side, write_report
from variantlab.proc.threads import POOL_VARIABLES, shared_env

CONFIG = REPO / "benchmarks/configs/smollm2-135m"


def work(steps: int, batch: int, tokens: int) -> dict[str, float]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(CONFIG))
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    started = time.perf_counter()
    model.eval()
    with torch.inference_mode():
        for _ in range(steps):
            model(input_ids=ids)
    scored = time.perf_counter()
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return {
        "threads": torch.get_num_threads(),
        "score_s": scored - started,
        "train_s": time.perf_counter() - scored,
    }


def arm(processes: int, shared: bool, a: argparse.Namespace) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if k not in POOL_VARIABLES}  # the libraries' own choice
    env = shared_env(processes, base) if shared else base
    argv = [sys.executable, "-m", "benchmarks.bench_threads", "--worker"]
    argv += ["--steps", str(a.steps), "--batch", str(a.batch), "--tokens", str(a.tokens)]
    outs, wall = side_by_side(argv, processes, REPO, env)
    each = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    return {
        "processes": processes,
        "threads_each": each[0]["threads"],
        "wall_s": round(wall, 2),
        "work_s_each": [round(e["score_s"] + e["train_s"], 2) for e in each],
        "score_s_each": [round(e["score_s"], 2) for e in each],
        "train_s_each": [round(e["train_s"], 2) for e in each],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="forward passes, then as many training steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "reports/bench/threads.json")
    a = parser.parse_args()
    if a.worker:
        print(json.dumps(work(a.steps, a.batch, a.tokens)))
        return
    alone = arm(1, False, a)
    default = arm(2, False, a)
    shared = arm(2, True, a)
    report = {
        "benchmark": "threads",
        "command": "python -m benchmarks.bench_threads",
        "work": {
            "model": "SmolLM2-135M (config, random weights)",
            "steps": a.steps,
            "batch": a.batch,
            "tokens": a.tokens,
        },
        "one_process_default_pool": alone,
        "two_processes_default_pools": default,
        "two_processes_shared_cores": shared,
        "two_processes_default_over_shared_wall": round(default["wall_s"] / shared["wall_s"], 3),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    write_report(a.out, report)


if __name__ == "__main__":
    main()
