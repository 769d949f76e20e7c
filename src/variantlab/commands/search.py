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


def worker_command(variant: str, params: Path | None = None) -> list[str]:
    argv = [sys.executable, "-m", "variantlab.stages.train", variant, "--trials-only"]
    return [*argv, "--params", str(params)] if params is not None else argv


def run_workers(root: Path, variant: str, workers: int, params: Path | None = None) -> list[int]:
    """Start ``workers`` processes at once (list argv, no shell) and wait for all; their exit codes."""
    info(f"search@{variant}: {workers} worker process(es) on one study")
    procs = [subprocess.Popen(worker_command(variant, params), cwd=root) for _ in range(workers)]
    return [proc.wait() for proc in procs]
