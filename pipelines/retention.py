"""Retention as a Prefect flow: ``serve.retention_days`` applied to the prediction log once a day
(deployment ``prune-prediction-log``). The same work outside Prefect: ``variantlab feedback prune``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact


@task(name="prune-prediction-log", task_run_name="prune-prediction-log")
def prune_prediction_log(root: str, dry_run: bool = False) -> dict[str, Any]:
    from variantlab.config import load_params
    from variantlab.serving.retention import prune

    project = Path(root).resolve()
    return prune(project, load_params(project / "params.yaml"), dry_run=dry_run)


@flow(name="variantlab-retention", log_prints=True)
def retention_flow(root: str = ".", dry_run: bool = False) -> dict[str, Any]:
    """Delete predictions and exported feedback older than serve.retention_days (feedback not yet exported stays)."""
    from variantlab.serving.retention import describe

    result = prune_prediction_log(root, dry_run)
    create_markdown_artifact(key="retention", markdown=describe(result), description="What retention deleted")
    print(describe(result))
    return result
