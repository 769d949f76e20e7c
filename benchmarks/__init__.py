"""Side-by-side benchmarks: each writes JSON under reports/bench/ (see the Makefile's bench targets)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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
