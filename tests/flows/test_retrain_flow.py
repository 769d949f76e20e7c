"""The Prefect flow on tiny data under prefect_test_harness: one task per DVC stage, cached on a re-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from tests.helpers import DELETE, clean_env, tiny_project, tiny_sentences
from variantlab.proc.services import prefect_server


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # A server we start and wait for: Prefect's ephemeral one is known to time out on a cold CI machine.
    home = tmp_path_factory.mktemp("prefect-home")
    with (
        prefect_server(home, clean_env()) as server,
        temporary_settings(updates={PREFECT_API_URL: server.api, PREFECT_API_AUTH_STRING: server.auth}),
    ):
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


@pytest.mark.slow  # 40-90 s of training: make test-slow (CI runs it)
def test_flow_runs_each_stage_as_a_task_and_reuses_on_rerun(
    harness: Any, tiny_bert: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.retrain import retrain

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # two variants are enough for one task per stage and variant (LoRA training has its own tests)
    project = tiny_project(tmp_path / "p", *tiny_bert, extra={"variants": {"tiny-lora": DELETE}})
    variants = ["tfidf-logreg", "tiny-probe"]
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


def attempts(task_run_id: str) -> int:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return int(client.read_task_run(task_run_id).run_count)


def test_transient_failures_are_retried_with_backoff_and_data_errors_are_not(
    harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    from pipelines.retrain import run_stage

    stage = run_stage.with_options(retries=2, retry_delay_seconds=0)

    @flow
    def one_stage(root: str) -> tuple[str, str, str]:
        from variantlab.config import load_params
        from variantlab.pipeline import Execution

        run = Execution(Path(root), load_params(Path(root) / "params.yaml"), parent_run_id="", env={})
        state = stage("ingest", run, return_state=True)
        return str(state.state_details.task_run_id), state.type.value, state.message or ""

    project = tiny_project(tmp_path / "p")
    # The tracking server is down: the stage exits 75 and is tried 1 + 2 times.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    task_run, state, message = one_stage(str(project))
    assert state == "FAILED" and "TransientStageError" in message and "exit 75" in message
    assert attempts(task_run) == 3

    # Bad data is not retried: one attempt, and the error names the file, column and row.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    bad = tiny_sentences(60)
    bad["rating"] = bad["rating"].astype(object)
    bad.loc[4, "rating"] = "lots"
    bad.to_csv(project / "data/external/tiny.csv", index=False)
    task_run, state, message = one_stage(str(project))
    assert state == "FAILED" and "StageFailed" in message and "TransientStageError" not in message
    assert "column 'rating'" in message and "exit 2" in message
    assert attempts(task_run) == 1


@pytest.mark.slow
def test_the_flow_runs_a_users_own_task(harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight topics with labels: auto, through the Prefect flow: the champion answers the user's labels."""
    import subprocess
    import sys

    import pandas as pd
    import yaml

    from pipelines.retrain import retrain
    from tests.helpers import REPO

    sys.path.insert(0, str(REPO / "examples" / "multiclass-topics"))
    from make_topics import TOPICS, write_topics

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tiny_project(tmp_path / "p", data=pd.read_csv(write_topics(tmp_path / "topics.csv", 400)))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["project"]["name"] = "topics"
    params["task"] = {"kind": "classification", "label_column": "topic", "labels": "auto"}
    params["validation"].update(domains=None, min_class_fraction=0.05)
    params["split"]["holdout_domains"] = []
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)

    state = retrain(root=str(project), return_state=True)
    assert state.is_completed(), state.message
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/variantlab-topics@champion")
    answers = model.predict(pd.DataFrame({"text": ["The marathon was in the news again today."]}))
    assert list(answers) == ["sport"]
    proba = model.predict(pd.DataFrame({"text": ["a pension"]}), params={"output": "proba"})
    assert list(proba.columns) == sorted(TOPICS)
