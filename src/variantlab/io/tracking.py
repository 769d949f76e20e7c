"""MLflow conventions: where the store is, one parent run per pipeline execution, one child run per stage."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from variantlab import paths
from variantlab.core import timing
from variantlab.io import records

PARENT_ENV = "VARIANTLAB_PARENT_RUN_ID"
EXPERIMENT_PREFIX = "variantlab-"
# MLflow 3's experiment kind for classic model training; without it the UI has to guess from the runs.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def project_root() -> Path:
    return Path(os.environ.get("VARIANTLAB_ROOT", ".")).resolve()


def default_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite store in the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


def quiet_progress() -> None:
    """MLflow's artifact progress bars only on a terminal; in logs they are noise."""
    if not sys.stderr.isatty():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def configure(root: Path, project: str) -> str:
    """Point MLflow at the project's store and experiment; returns the experiment id."""
    import mlflow

    quiet_progress()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stage output to what the user acts on
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    name = f"{EXPERIMENT_PREFIX}{project}"
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return str(experiment.experiment_id)
    # A local store keeps its artifacts next to it (mlartifacts/); a server decides for itself.
    location = (root / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
    try:
        experiment_id = mlflow.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
        )
    except mlflow.exceptions.MlflowException:  # created by a concurrent stage in the meantime
        experiment_id = mlflow.get_experiment_by_name(name).experiment_id  # type: ignore[union-attr]
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def git_commit(root: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def git_short(root: Path) -> str:
    commit = git_commit(root)
    return commit[:7] if commit != "unknown" else "nogit"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def stage_run(
    stage: str, *, root: Path, project: str, variant: str | None = None, system_metrics: bool = False
) -> Iterator[Any]:
    """A child run of the pipeline execution named in ``VARIANTLAB_PARENT_RUN_ID`` (a top-level run without it).

    An exception inside the block ends the run FAILED, never stuck RUNNING.
    """
    import mlflow

    from variantlab.proc import warm

    experiment_id = configure(root, project)
    tags = {
        "variantlab.stage": stage,
        "mlflow.source.git.commit": git_commit(root),
        "variantlab.warm": "true" if os.environ.get(warm.CHILD_ENV) == "1" else "false",
    }
    if variant:
        tags["variant"] = variant
    parent = os.environ.get(PARENT_ENV) or None
    name = f"{stage}:{variant}" if variant else stage
    mark_orphans(experiment_id)
    with (
        mlflow.start_run(
            run_name=name, parent_run_id=parent, tags={**tags, **owner_tags()}, log_system_metrics=system_metrics
        ) as run,
        ended_killed_on_interrupt(),
    ):
        startup = timing.startup_seconds()
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        finally:
            # What drivers read instead of DVC's console output: this stage ran, its run, status and times.
            records.stage_finished(
                root,
                f"{stage}@{variant}" if variant else stage,
                run_id=run.info.run_id,
                status=status,
                seconds=timing.since_command_start(),
            )
            with contextlib.suppress(Exception):  # timings never fail a stage
                mlflow.log_metrics(
                    {
                        "time.startup_s": round(startup, 3),
                        "time.compute_s": round(timing.compute_seconds(), 3),
                        "time.stage_s": round(timing.since_command_start(), 3),
                    }
                )


OWNER_PID, OWNER_HOST = "variantlab.pid", "variantlab.host"


def owner_tags() -> dict[str, str]:
    """Which process runs this MLflow run, so a later run can tell it was orphaned by ``kill -9``."""
    import socket

    return {OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}


@contextlib.contextmanager
def ended_killed_on_interrupt() -> Iterator[None]:
    """Ctrl-C or SIGTERM inside the block ends the active run KILLED (MLflow alone would say FAILED)."""
    import mlflow

    from variantlab.console import Terminated

    try:
        yield
    except (KeyboardInterrupt, Terminated):
        mlflow.end_run("KILLED")
        raise


def _alive(pid: int, started_ms: int) -> bool:
    """Whether ``pid`` is still the process that started a run at ``started_ms`` (pids get reused)."""
    import psutil

    try:
        return bool(psutil.Process(pid).create_time() * 1000 <= started_ms + 1000)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def mark_orphans(experiment_id: str) -> list[str]:
    """End FAILED every RUNNING run of this host whose process is gone (killed with -9, power loss)."""
    import socket

    import mlflow

    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_HOST}` = '{socket.gethostname()}'",
        max_results=200,
    )
    orphans = []
    for run in runs:
        pid = run.data.tags.get(OWNER_PID, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid), run.info.start_time):
            client.set_tag(run.info.run_id, "variantlab.orphaned", "process gone; marked FAILED by a later run")
            client.set_terminated(run.info.run_id, "FAILED")
            orphans.append(run.info.run_id)
    if orphans:
        logging.getLogger(__name__).warning("marked %d orphaned MLflow run(s) FAILED: %s", len(orphans), orphans)
    return orphans


def log_dvc_inputs(paths: Mapping[str, Path]) -> dict[str, str]:
    """Tag the run with the md5 of each input, the digest DVC records for it in dvc.lock."""
    import mlflow

    from variantlab.io.files import md5_file

    digests = {name: md5_file(path) for name, path in paths.items()}
    mlflow.set_tags({f"dvc.md5.{name}": digest for name, digest in digests.items()})
    return digests


def log_frame_input(frame: Any, *, name: str, source: Path, digest: str, context: str) -> Any:
    """Log ``frame`` as an MLflow dataset input of the active run; returns the dataset (to link metrics to it)."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings():
        # A relative path matches two equivalent local source types; MLflow warns and picks one.
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(frame, source=str(source), name=name, digest=digest[:32])
    mlflow.log_input(dataset, context=context)
    return dataset


@contextlib.contextmanager
def pipeline_run(
    root: Path, project: str, *, name: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[Any]:
    """The parent run of one pipeline execution; stages started inside see it through the environment."""
    import datetime

    import mlflow

    experiment_id = configure(root, project)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    run_name = name or f"pipeline-{stamp}-{git_short(root)}"
    all_tags = {"variantlab.stage": "pipeline", "mlflow.source.git.commit": git_commit(root), **(tags or {})}
    mark_orphans(experiment_id)
    with mlflow.start_run(run_name=run_name, tags={**all_tags, **owner_tags()}) as run, ended_killed_on_interrupt():
        previous = os.environ.get(PARENT_ENV)
        os.environ[PARENT_ENV] = run.info.run_id
        try:
            yield run
        finally:
            if previous is None:
                os.environ.pop(PARENT_ENV, None)
            else:
                os.environ[PARENT_ENV] = previous


def record_reused(stage: str, metrics_file: Path, *, root: Path, project: str) -> None:
    """A stage DVC skipped as unchanged still appears under the parent run, pointing at the run that made it.

    Uses the client API so it works inside a process whose parent run is the active one.
    """
    import mlflow

    from variantlab.io.files import read_json

    producer = "unknown"
    if metrics_file.is_file():
        producer = read_json(metrics_file).get("mlflow_run_id") or producer
    stage_name, _, variant = stage.partition("@")
    tags = {
        "variantlab.stage": stage_name,
        "variantlab.reused": "true",
        "variantlab.reused_from_run": producer,
        "mlflow.source.git.commit": git_commit(root),
    }
    if variant:
        tags["variant"] = variant
        trained = root / paths.train_metrics(variant)
        if trained.is_file():
            tags["strategy"] = str(read_json(trained).get("kind", "unknown"))
    if parent := os.environ.get(PARENT_ENV):
        tags["mlflow.parentRunId"] = parent
    client = mlflow.MlflowClient()
    run = client.create_run(
        configure(root, project), run_name=f"{stage_name}:{variant}" if variant else stage_name, tags=tags
    )
    _copy_params_and_metrics(client, producer, run.info.run_id)
    client.set_terminated(run.info.run_id)


def _copy_params_and_metrics(client: Any, source: str, target: str) -> None:
    """The producing run's params and latest metrics on the reused run, so the latest pipeline run compares every
    variant in the Runs view, whichever stages DVC skipped."""
    import time

    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    try:
        data = client.get_run(source).data
    except MlflowException:
        return
    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in data.params.items()]
    metrics = [Metric(k, v, now, 0) for k, v in data.metrics.items()]
    for start in range(0, max(len(params), len(metrics)), 100):
        client.log_batch(target, metrics=metrics[start : start + 100], params=params[start : start + 100])


def attach_leaderboard(root: Path, run_id: str) -> None:
    """The leaderboard (an MLflow table, and its markdown, CSV and Pareto plot) on run ``run_id``: the pipeline
    run, where people look first; also when DVC reused the compare stage."""
    import mlflow
    import pandas as pd

    csv = root / paths.LEADERBOARD_CSV
    if not csv.is_file():
        return
    client = mlflow.MlflowClient()
    client.log_table(run_id, pd.read_csv(csv), "leaderboard.json")
    for path in (paths.LEADERBOARD_MD, paths.LEADERBOARD_CSV, paths.PARETO_PNG):
        if (root / path).is_file():
            client.log_artifact(run_id, str(root / path))


def attach_decision(root: Path, run_id: str) -> None:
    """The promotion report and its verdict as tags on run ``run_id`` (the pipeline run)."""
    import mlflow

    from variantlab.io.files import read_json

    report_file = root / paths.PROMOTION_REPORT
    if not report_file.is_file():
        return
    report = dict(read_json(report_file))
    client = mlflow.MlflowClient()
    client.log_dict(run_id, report, "promotion.json")
    tags = {"promoted": str(report.get("promote", False)).lower(), "reason": str(report.get("reason", ""))[:5000]}
    chosen = (report.get("selection") or {}).get("challenger")
    if chosen:
        tags["decision.variant"] = str(chosen)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
