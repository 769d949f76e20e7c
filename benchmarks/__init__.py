"""Side-by-side benchmarks: each writes JSON under reports/bench/ (see the Makefile's bench targets)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def copy_checkout(target: Path) -> Path:
    """A fresh git + DVC project with this checkout's files as git sees them: no outputs, no dvc.lock, no tests."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file() and not name.startswith(("tests/", "dvc.lock")):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    git = ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=target, check=True)
    return target


def bench_env(**extra: str) -> dict[str, str]:
    """This environment without a tracking server, stack or Prefect API of the caller's: the project's own store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VARIANTLAB_", "PREFECT_API"))}
    return {**env, "DVC_NO_ANALYTICS": "1", **extra}


def timed(argv: list[str], cwd: Path, env: Mapping[str, str], repeat: int = 3) -> float:
    """Median wall seconds of a command, after one warm-up run (which fills the page cache)."""
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def side_by_side(argv: list[str], n: int, cwd: Path, env: Mapping[str, str]) -> tuple[list[str], float]:
    """Start ``n`` copies of ``argv`` at the same moment and wait for all: their stdouts and the wall seconds. A
    copy that fails raises."""
    started = time.perf_counter()
    procs = [subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - started
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a worker failed: {[p.returncode for p in procs]}")
    return outs, wall


def write_report(out: Path, report: Mapping[str, Any], hide: str | None = None) -> None:
    """``reports/bench/<name>.json``, and the report on stdout (without its bulky ``hide`` key)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != hide}, indent=2))
