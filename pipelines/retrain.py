"""The retrain flow: one Prefect task per DVC stage, all under one MLflow parent run.

Each task runs ``dvc repro --single-item <stage>`` (a list argv, no shell), so DVC still decides what is
stale and what is cached; the Prefect UI shows each stage, and a stage DVC skipped is reported as cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from variantlab import paths
from variantlab.config import load_params
from variantlab.io import dvc
from variantlab.io.tracking import pipeline_run, record_reused


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero; the message carries the tail of its output."""


@task(name="dvc-stage", task_run_name="{stage}")
def run_stage(stage: str, root: str, parent_run_id: str, project: str) -> dict[str, Any]:
    logger = get_run_logger()
    result = dvc.repro(Path(root), stage, single_item=True, env={"VARIANTLAB_PARENT_RUN_ID": parent_run_id}, echo=False)
    logger.info("dvc repro --single-item %s\n%s", stage, result.output.strip())
    if result.returncode != 0:
        tail = "\n".join(result.output.strip().splitlines()[-15:])
        raise StageFailed(f"stage {stage} failed (exit {result.returncode}):\n{tail}")
    cached = stage in result.skipped and stage not in result.ran
    if cached:
        record_reused(stage, Path(root) / dvc.metrics_file(stage), root=Path(root), project=project)
    return {"stage": stage, "cached": cached}


@flow(name="variantlab-retrain", log_prints=True)
def retrain(root: str = ".") -> list[dict[str, Any]]:
    """Reproduce the whole pipeline, stage by stage, and publish the leaderboard and the decision."""
    project_root = Path(root).resolve()
    params = load_params(project_root / "params.yaml")
    tags = {"prefect.flow_run_id": str(flow_run.get_id() or ""), "orchestrator": "prefect"}
    results = []
    with pipeline_run(project_root, params.project.name, tags=tags) as parent:
        for stage in dvc.stage_names(project_root, params):
            results.append(run_stage(stage, str(project_root), parent.info.run_id, params.project.name))
    board = project_root / paths.LEADERBOARD_MD
    if board.is_file():
        create_markdown_artifact(
            key="leaderboard",
            markdown=board.read_text(encoding="utf-8"),
            description="Variants ranked on the frozen test set",
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
