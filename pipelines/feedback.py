"""The feedback loop: new data -> validation and drift -> a new DVC-tracked data version -> retrain -> promote.

``retrain_on_new_data(data_path)`` validates the file with the pipeline's own Great Expectations suite,
measures drift against the data the current champion was trained on, appends the accepted rows to
``data/feedback/accepted.parquet`` (``dvc add``: a new version of the data), then runs the retrain flow, whose
promotion gate decides. Invalid data fails the flow before anything is written, registered or promoted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from pipelines.retrain import retrain
from variantlab import paths
from variantlab.config import Params, load_params
from variantlab.errors import ValidationFailed


def read_new_data(path: Path, params: Params) -> Any:
    """The new file in the raw schema, read for the project's task (its labels or its target)."""
    from variantlab.io.sources import read_task_file

    return read_task_file(path, params)


def project_task(root: Path, params: Params, frame: Any) -> Any:
    """The task the champion's data was prepared for (label set frozen), or the params' task on this frame."""
    from variantlab.core.task import resolve_task
    from variantlab.stages.context import StageContext

    if (root / paths.TASK).is_file():
        return StageContext(root, params).task()
    return resolve_task(params, frame["label"], file=str(paths.TASK))


@task(name="validate-new-data", task_run_name="validate-new-data")
def validate_new_data(data_path: str, root: str) -> dict[str, Any]:
    """The same GX suite the validate stage runs; an error-severity failure rejects the file."""
    from variantlab.core.expectations import build_suite, validation_view
    from variantlab.io.validation import render_failures, run_suite

    params = load_params(Path(root) / "params.yaml")
    frame = read_new_data(Path(data_path), params)
    task = project_task(Path(root), params, frame)
    report = run_suite(validation_view(frame, task), build_suite(params.validation, task))
    if report.errors or report.warnings:
        get_run_logger().warning(render_failures(report, data_path))
    if report.errors:
        failed = ", ".join(o.key for o in report.errors)
        raise ValidationFailed(
            f"rejected, nothing changed: {len(report.errors)} expectation(s) failed: {failed}", file=data_path
        )
    return report.summary()


def _embedding_sample(params: Params, root: Path, texts: list[str], seed: int) -> Any:
    import random

    from variantlab.core.embeddings import embed_texts
    from variantlab.io.zoo import load_encoder, resolve

    name = params.feedback.embedding_model or next(iter(params.models))
    tokenizer, encoder = load_encoder(resolve(params.models[name], root))
    rng = random.Random(seed)
    sample = (
        texts if len(texts) <= params.feedback.embedding_sample else rng.sample(texts, params.feedback.embedding_sample)
    )
    return embed_texts(encoder, tokenizer, sample, batch_size=64, max_length=128)


@task(name="measure-drift", task_run_name="measure-drift")
def measure_drift(data_path: str, root: str) -> dict[str, Any]:
    """Label mix (or target distribution), domain mix, text length and embedding centroid against the champion's
    training split."""
    import mlflow
    import pandas as pd

    from variantlab.core.drift import (
        DriftCheck,
        DriftReport,
        centroid_distance,
        length_shift,
        target_shift,
        total_variation,
    )
    from variantlab.io.files import md5_file, write_json
    from variantlab.io.tracking import stage_run

    project = Path(root)
    params = load_params(project / "params.yaml")
    cfg = params.feedback
    reference_file = project / paths.split_path("train")
    if not reference_file.is_file():
        raise ValidationFailed(
            "no training split to compare with; run the pipeline once first", file=str(reference_file)
        )
    reference = pd.read_parquet(reference_file)
    current = read_new_data(Path(data_path), params)
    task = project_task(project, params, current)
    checks = []
    if task.is_classification:
        value, detail = total_variation(reference["label"], current["label"])
        checks.append(DriftCheck("label_shift", value, cfg.max_label_shift, detail))
    else:
        value, detail = target_shift(reference["value"], current["value"])
        checks.append(DriftCheck("target_shift", value, cfg.max_target_shift, detail))
    value, detail = total_variation(reference["domain"], current["domain"])
    checks.append(DriftCheck("domain_shift", value, cfg.max_domain_shift, detail))
    value, detail = length_shift(reference["text"], current["text"])
    checks.append(DriftCheck("length_shift", value, cfg.max_length_shift, detail))
    if params.models:
        seed = params.project.seed
        value, detail = centroid_distance(
            _embedding_sample(params, project, reference["text"].tolist(), seed),
            _embedding_sample(params, project, current["text"].tolist(), seed),
        )
        checks.append(DriftCheck("centroid_distance", value, cfg.max_centroid_distance, detail))
    report = DriftReport(checks, len(reference), len(current))
    payload = {**report.to_json(), "data_path": data_path, "reference": str(paths.split_path("train"))}
    with stage_run("drift", root=project, project=params.project.name) as run:
        mlflow.set_tags({"data_path": data_path[:250], "reference_md5": md5_file(reference_file)})
        mlflow.log_metrics({c.name: c.value for c in checks})
        mlflow.log_dict(payload, "drift.json")
        payload["mlflow_run_id"] = run.info.run_id
    write_json(project / paths.DRIFT_REPORT, payload)
    create_markdown_artifact(key="drift", markdown=report.to_markdown(), description=f"Drift of {data_path}")
    if report.drifted and cfg.reject_on_drift:
        raise ValidationFailed(
            f"rejected, nothing changed: drift beyond the thresholds in {', '.join(report.drifted)}", file=data_path
        )
    if report.drifted:
        get_run_logger().warning(
            "drift beyond the thresholds in %s (accepted: feedback.reject_on_drift is false)", report.drifted
        )
    return payload


@task(name="append-data", task_run_name="append-data")
def append_data(data_path: str, root: str) -> dict[str, Any]:
    """Append the accepted rows to data/feedback/accepted.parquet and version it with ``dvc add``."""
    import pandas as pd

    from variantlab.io.files import md5_file, sha256_file, write_parquet

    project = Path(root)
    new = read_new_data(Path(data_path), load_params(project / "params.yaml"))
    batch = sha256_file(Path(data_path))[:12]
    new = new.assign(id=[f"{paths.FEEDBACK_ID_PREFIX}{batch}:{i}" for i in new["id"].astype(str)])
    target = project / paths.FEEDBACK_FILE
    old = pd.read_parquet(target) if target.is_file() else new.iloc[0:0]
    fresh = new[~new["id"].isin(old["id"])]
    combined = pd.concat([old, fresh], ignore_index=True)
    write_parquet(target, combined)
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "add", str(paths.FEEDBACK_FILE)],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dvc add {paths.FEEDBACK_FILE} failed:\n{done.stdout}{done.stderr}")
    digest = md5_file(target)
    get_run_logger().info("appended %d new rows (%d in all) -> %s (md5 %s)", len(fresh), len(combined), target, digest)
    return {"appended": len(fresh), "total": len(combined), "md5": digest, "batch": batch}


@flow(name="variantlab-retrain-on-new-data", log_prints=True)
def retrain_on_new_data(
    data_path: str, root: str = ".", variants: list[str] | None = None, profile: str | None = None
) -> dict[str, Any]:
    """Validate ``data_path``, measure its drift, version it, retrain and let the promotion gate decide."""
    validation = validate_new_data(data_path, root)
    drift = measure_drift(data_path, root)
    appended = append_data(data_path, root)
    stages = retrain(root=root, variants=variants, profile=profile)
    return {"validation": validation, "drift": drift["drifted"], "appended": appended, "stages": stages}


if __name__ == "__main__":
    retrain_on_new_data(sys.argv[1])
