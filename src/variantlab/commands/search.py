"""``variantlab search``: run a variant's search trials in several worker processes that share one Optuna study.

Each worker is ``python -m variantlab.stages.train <variant> --trials-only``; the study's RDB storage hands
each trial to one of them (SQLite here, the team stack's PostgreSQL for workers on several machines: the
Prefect deployment ``search-trials`` runs one such worker per flow run). ``variantlab run`` afterwards finds
the trials done and trains the best one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from variantlab.console import info
from variantlab.proc.threads import shared_env


def worker_command(variant: str, params: Path | None = None) -> list[str]:
    argv = [sys.executable, "-m", "variantlab.stages.train", variant, "--trials-only"]
    return [*argv, "--params", str(params)] if params is not None else argv


def run_workers(root: Path, variant: str, workers: int, params: Path | None = None) -> list[int]:
    """Start ``workers`` processes at once (list argv, no shell) and wait for all; their exit codes. Each sizes
    torch's thread pool to its share of the cores (``OMP_NUM_THREADS`` and the like, unless already set)."""
    env = shared_env(workers)
    threads = env.get("OMP_NUM_THREADS", "the libraries' default")
    info(f"search@{variant}: {workers} worker process(es) on one study, {threads} thread(s) each")
    procs = [subprocess.Popen(worker_command(variant, params), cwd=root, env=env) for _ in range(workers)]
    return [proc.wait() for proc in procs]
