"""The Prefect flow on tiny data under prefect_test_harness: one task per DVC stage, cached on a re-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from prefect.testing.utilities import prefect_test_harness

from tests.helpers import tiny_project


@pytest.fixture(scope="module")
def harness() -> Any:
    # Prefect's temporary server can be slow on a cold machine: wait for it rather than fail.
    with prefect_test_harness(server_startup_timeout=180):
        yield


def task_runs(flow_run_id: Any) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return list(client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))))


def artifact_keys(flow_run_id: Any) -> set[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in found if a.key}


def test_flow_runs_each_stage_as_a_task_and_reuses_on_rerun(
    harness: Any, tiny_bert: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.retrain import retrain

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tiny_project(tmp_path / "p", *tiny_bert)
    variants = ["tfidf-logreg", "tiny-probe", "tiny-lora"]
    stages = [
        "ingest",
        "validate",
        "prepare",
        *(f"{s}@{v}" for s in ("train", "evaluate") for v in variants),
        "compare",
        "promote",
    ]

    first = retrain(root=str(project), return_state=True)
    assert first.is_completed()
    assert [r["stage"] for r in first.result()] == stages
    assert not any(r["cached"] for r in first.result())
    runs = task_runs(first.state_details.flow_run_id)
    assert sorted(r.name for r in runs) == sorted(stages)
    assert all(r.state.is_completed() for r in runs)
    assert {"leaderboard", "promotion"} <= artifact_keys(first.state_details.flow_run_id)

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    parent = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`variantlab.stage` = 'pipeline'", output_format="list"
    )
    assert len(parent) == 1 and parent[0].data.tags["prefect.flow_run_id"] == str(first.state_details.flow_run_id)
    children = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'",
    )
    assert sorted(c.info.run_name for c in children) == sorted(s.replace("@", ":") for s in stages)
    assert all(c.info.status == "FINISHED" for c in children)
    assert str(mlflow.MlflowClient().get_model_version_by_alias("variantlab-sentiment", "champion").version) == "1"

    second = retrain(root=str(project), return_state=True)
    assert second.is_completed()
    assert all(r["cached"] for r in second.result())
    latest = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.`variantlab.stage` = 'pipeline'",
        output_format="list",
        order_by=["attributes.start_time DESC"],
    )[0]
    reused = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`mlflow.parentRunId` = '{latest.info.run_id}'",
    )
    assert len(reused) == len(stages) and all(r.data.tags.get("variantlab.reused") == "true" for r in reused)
    assert (
        len(mlflow.search_model_versions(filter_string="name = 'variantlab-sentiment'")) == 1
    )  # nothing re-registered
