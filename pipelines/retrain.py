"""The retrain flow: one Prefect task per DVC stage, all under one MLflow parent run.

Each task runs ``dvc repro --single-item <stage>`` (a list argv, no shell), so DVC still decides what is
stale and what is cached; the Prefect UI shows each stage, and a stage DVC skipped is reported as cached.

Flow parameters reach the pipeline as versioned params, never as hidden state: ``profile`` is written into
``params.yaml`` the way ``dvc exp run --set-param`` does (comments kept; DVC records it in ``dvc.lock``), and
``variants`` picks which ``train@``/``evaluate@`` stages run (the others keep their DVC-cached outputs).

A stage that fails for a transient reason (the tracking server or the object store unreachable: the stage
exits 75) is retried with exponential back-off; a stage that fails on bad data or config is not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from variantlab import paths
from variantlab.config import load_params
from variantlab.console import TRANSIENT_EXIT
from variantlab.errors import ConfigError
from variantlab.io import dvc
from variantlab.io.tracking import tracking_uri
from variantlab.pipeline import Execution, execution

RETRIES = int(os.environ.get("VARIANTLAB_STAGE_RETRIES", "3"))
RETRY_BASE_S = float(os.environ.get("VARIANTLAB_RETRY_BASE_S", "10"))  # 10 s, 20 s, 40 s


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero for a reason a retry will not fix (bad data, bad config, a bug)."""


class TransientStageError(StageFailed):
    """A DVC stage exited 75: a service it needs was unreachable. Retried with back-off."""


def retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # the result itself could not be read: do not retry blindly
        return False
    return isinstance(error, TransientStageError)


@task(
    name="dvc-stage",
    task_run_name="{stage}",
    retries=RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_BASE_S),
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,  # a stage's result is DVC's to cache, and the execution is no value to hash
)
def run_stage(stage: str, run: Execution) -> dict[str, Any]:
    """``dvc repro --single-item <stage>`` in the flow's execution; the stage's own record says what happened."""
    started = time.perf_counter()
    logger = get_run_logger()
    result = run.reproduce(stage, single_item=True, echo=False)
    logger.info("dvc repro --single-item %s\n%s", stage, result.output.strip())
    if result.returncode != 0:
        tail = "\n".join(result.output.strip().splitlines()[-15:])
        error = TransientStageError if result.exit_code == TRANSIENT_EXIT else StageFailed
        raise error(f"stage {stage} failed (exit {result.exit_code}): {result.error or tail}")
    return {
        "stage": stage,
        "cached": stage in result.reused,
        "seconds": result.seconds.get(stage, 0.0),  # the stage's own command, as its record says
        "task_seconds": round(time.perf_counter() - started, 2),  # plus DVC's start-up and bookkeeping
    }


def select_stages(stages: list[str], variants: list[str] | None, declared: set[str]) -> list[str]:
    if variants is None:
        return stages
    unknown = sorted(set(variants) - declared)
    if unknown:
        raise ConfigError(f"unknown variants {unknown} (declared: {sorted(declared)})", file="params.yaml")
    return [s for s in stages if "@" not in s or s.partition("@")[2] in variants]


def mlflow_ui_link(uri: str, experiment_id: str, run_id: str) -> str:
    base = (
        uri
        if uri.startswith(("http://", "https://"))
        else os.environ.get("VARIANTLAB_MLFLOW_UI", "http://127.0.0.1:5000")
    )
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


@flow(name="variantlab-retrain", log_prints=True)
def retrain(root: str = ".", variants: list[str] | None = None, profile: str | None = None) -> list[dict[str, Any]]:
    """Reproduce the pipeline stage by stage and publish the leaderboard, the decision and the MLflow run link.

    ``variants``: retrain only these (default: all); ``profile``: ``cpu`` or ``gpu``, written to params.yaml.
    """
    logger = get_run_logger()
    project_root = Path(root).resolve()
    if profile is not None and load_params(project_root / "params.yaml").profile != profile:
        from variantlab.commands.profile import switch_profile

        # as `variantlab profile <name>` does: the setting, and the variants the profile adds to variants:
        logger.info("params.yaml: %s", switch_profile(project_root / "params.yaml", profile))
    params = load_params(project_root / "params.yaml")
    stages = select_stages(dvc.stage_names(project_root, params), variants, set(params.variants))
    tags = {
        "prefect.flow_run_id": str(flow_run.get_id() or ""),
        "orchestrator": "prefect",
        "flow.variants": ",".join(variants) if variants else "all",
        "flow.profile": params.profile,
    }
    results = []
    # The same driver as `variantlab run`: one parent run, one warm interpreter the stages fork from.
    with execution(project_root, params, tags=tags) as run:
        import mlflow

        parent = mlflow.get_run(run.parent_run_id)
        create_link_artifact(
            key="mlflow-run",
            link=mlflow_ui_link(tracking_uri(project_root), parent.info.experiment_id, parent.info.run_id),
            link_text=f"MLflow parent run {parent.info.run_id}",
            description="This pipeline execution in the MLflow UI",
        )
        for stage in stages:
            results.append(run_stage(stage, run))
    board = project_root / paths.LEADERBOARD_MD
    if board.is_file():
        create_markdown_artifact(
            key="leaderboard",
            markdown=board.read_text(encoding="utf-8"),
            description="Variants ranked on the validation split (test-set columns for reporting)",
        )
    promotion = project_root / paths.PROMOTION_REPORT
    if promotion.is_file():
        create_markdown_artifact(
            key="promotion",
            markdown=f"```json\n{promotion.read_text(encoding='utf-8')}\n```",
            description="The promotion decision and its reasons",
        )
    return results


if __name__ == "__main__":
    retrain()
