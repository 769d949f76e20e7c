"""The search flow: trials of one variant's Optuna study, run by as many Prefect workers as are started.

Each flow run is one or more trial workers (``variantlab.stages.train <variant> --trials-only``); the study
lives in RDB storage (``VARIANTLAB_OPTUNA_STORAGE``: the team stack's PostgreSQL), so flow runs on several
workers share it and each trial runs once. Prefect schedules the workers; Optuna and the storage hand out the
trials. The retrain flow then finds the trials done and trains the best.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from prefect import flow, get_run_logger, task

from variantlab.commands.search import worker_command
from variantlab.config import load_params
from variantlab.errors import ConfigError


class SearchWorkerFailed(RuntimeError):
    pass


@task(name="search-worker", task_run_name="trials of {variant} #{index}")
def search_worker(root: str, variant: str, index: int) -> int:
    """One trial worker; the trials it finished, counted in the Optuna storage by the worker's name."""
    import os
    import uuid

    from variantlab.io.study import WORKER_ENV, storage_url, trials_by_worker

    logger = get_run_logger()
    worker = f"search-flow:{uuid.uuid4().hex[:12]}"
    env = {**os.environ, WORKER_ENV: worker}
    done = subprocess.run(worker_command(variant), cwd=root, env=env, capture_output=True, text=True, check=False)
    logger.info("%s", (done.stderr or "").strip()[-4000:])
    if done.returncode != 0:
        raise SearchWorkerFailed(f"trial worker {index} of {variant} exited {done.returncode}")
    search = load_params(Path(root) / "params.yaml").variant(variant).search
    return trials_by_worker(storage_url(search, Path(root)), worker)


@flow(name="variantlab-search", log_prints=True)
def search(root: str = ".", variant: str = "", workers: int = 1) -> int:
    """Run ``workers`` trial workers of ``variant`` in this flow run; returns the trials they ran."""
    project = Path(root).resolve()
    params = load_params(project / "params.yaml")
    if params.variant(variant).search is None:
        raise ConfigError(f"variant '{variant}' has no `search:`", file="params.yaml")
    futures = [search_worker.submit(str(project), variant, i) for i in range(workers)]
    return sum(f.result() for f in futures)


if __name__ == "__main__":
    search()
