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
from variantlab.errors import ConfigError, ValidationFailed


def read_new_data(path: Path, params: Params) -> Any:
    """The new file in the raw schema, read for the project's task (its labels or its target)."""
    from variantlab.io.sources import read_task_file

    return read_task_file(path, params)


def project_task(root: Path, params: Params, frame: Any = None) -> Any:
    """The task the champion's data was prepared for (``task.json``, label set frozen by prepare)."""
    from variantlab.stages.context import StageContext

    if not (root / paths.TASK).is_file():
        raise ValidationFailed("no prepared task yet: run the pipeline once first (make run)", file=str(paths.TASK))
    return StageContext(root, params).task()


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


def _drift_encoder(params: Params, root: Path) -> tuple[Any, Any]:
    from variantlab.io.zoo import load_encoder, resolve

    name = params.drift_model
    if name is None:
        raise ConfigError("the drift checks embed texts with an encoder: declare one under models:", file="params.yaml")
    return load_encoder(resolve(params.models[name], root))


def _embedding_sample(params: Params, loaded: tuple[Any, Any], texts: list[str], seed: int) -> Any:
    import random

    from variantlab.core.embeddings import embed_texts

    tokenizer, encoder = loaded
    rng = random.Random(seed)
    sample = (
        texts if len(texts) <= params.feedback.embedding_sample else rng.sample(texts, params.feedback.embedding_sample)
    )
    return embed_texts(encoder, tokenizer, sample, batch_size=64, max_length=128)


def drift_checks(
    project: Path, params: Params, task: Any, reference: Any, texts: Any, targets: Any, domains: Any | None
) -> list[Any]:
    """Label mix (or target distribution), domain mix, text length and embedding centroid against ``reference``
    (the champion's training split). ``targets``: the true labels of new data, or what the model answered for
    live inputs; ``domains`` None: not known (live inputs)."""
    from variantlab.core.drift import DriftCheck, centroid_distance, length_shift, total_variation

    cfg = params.feedback
    checks = []
    moved = task.target_drift(reference, targets)
    checks.append(DriftCheck(moved.name, moved.value, getattr(cfg, moved.limit_key), moved.detail))
    if domains is not None:
        value, detail = total_variation(reference["domain"], domains)
        checks.append(DriftCheck("domain_shift", value, cfg.max_domain_shift, detail))
    value, detail = length_shift(reference["text"], texts)
    checks.append(DriftCheck("length_shift", value, cfg.max_length_shift, detail))
    if params.models:
        seed, loaded = params.project.seed, _drift_encoder(params, project)  # loaded once, for both samples
        value, detail = centroid_distance(
            _embedding_sample(params, loaded, reference["text"].tolist(), seed),
            _embedding_sample(params, loaded, list(texts), seed),
        )
        checks.append(DriftCheck("centroid_distance", value, cfg.max_centroid_distance, detail))
    return checks


@task(name="measure-drift", task_run_name="measure-drift")
def measure_drift(data_path: str, root: str) -> dict[str, Any]:
    """Label mix (or target distribution), domain mix, text length and embedding centroid against the champion's
    training split."""
    import mlflow
    import pandas as pd

    from variantlab.core.drift import DriftReport
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
    target = current[task.target]
    checks = drift_checks(project, params, task, reference, current["text"], target, current["domain"])
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


def _prediction_log(project: Path, params: Params) -> Any:
    from variantlab.serving.log import PredictionLog, log_url

    return PredictionLog(log_url(params.serve.log_url, project))


@task(name="live-drift", task_run_name="live-drift")
def live_drift(root: str) -> dict[str, Any]:
    """The latest served inputs (``feedback_export.live_drift_window`` of them) and what the model answered,
    against the training split: text length, embedding centroid, and the answered label mix (or target
    distribution). Written to reports/live_drift.json and an MLflow run ``drift:live``."""
    import mlflow
    import pandas as pd

    from variantlab.core.drift import DriftReport
    from variantlab.io.files import write_json
    from variantlab.io.tracking import stage_run

    project = Path(root)
    params = load_params(project / "params.yaml")
    reference_file = project / paths.split_path("train")
    log = _prediction_log(project, params)
    try:
        recent = log.recent_inputs(params.feedback_export.live_drift_window)
    finally:
        log.close()
    if len(recent) < 10 or not reference_file.is_file():
        why = "no training split yet" if not reference_file.is_file() else f"only {len(recent)} logged inputs"
        get_run_logger().info("live drift skipped: %s", why)
        return {"skipped": why, "current_rows": len(recent)}
    reference = pd.read_parquet(reference_file)
    task = project_task(project, params, reference)
    answers = task.live_answers(recent["output"])
    checks = drift_checks(project, params, task, reference, recent["text"], answers, None)
    report = DriftReport(checks, len(reference), len(recent))
    payload = {
        **report.to_json(),
        "window": {"from": str(recent["created_at"].min()), "to": str(recent["created_at"].max())},
        "model_versions": sorted(recent["model_version"].astype(str).unique().tolist()),
        "reference": str(paths.split_path("train")),
        "note": "label_shift / target_shift compare what the model answered with the training labels",
    }
    with stage_run("drift:live", root=project, project=params.project.name) as run:
        mlflow.log_metrics({f"live.{c.name}": c.value for c in checks})
        mlflow.log_dict(payload, "live_drift.json")
        payload["mlflow_run_id"] = run.info.run_id
    write_json(project / paths.LIVE_DRIFT_REPORT, payload)
    create_markdown_artifact(key="live-drift", markdown=report.to_markdown(), description="Drift of the served inputs")
    if report.drifted:
        get_run_logger().warning("live inputs drifted beyond the thresholds in %s", report.drifted)
    return payload


def export_due(waiting: int, oldest_age_hours: float | None, params: Params, force: bool) -> str | None:
    """Why an export is due now, or None."""
    cfg = params.feedback_export
    if waiting == 0:
        return None
    if force:
        return "forced"
    if waiting >= cfg.min_rows:
        return f"{waiting} rows waiting >= feedback_export.min_rows {cfg.min_rows}"
    if cfg.max_age_hours is not None and oldest_age_hours is not None and oldest_age_hours >= cfg.max_age_hours:
        return f"oldest waiting row is {oldest_age_hours:.1f} h old >= feedback_export.max_age_hours"
    return None


@task(name="export-feedback", task_run_name="export-feedback")
def export_feedback(root: str, force: bool = False) -> dict[str, Any]:
    """Write the feedback not yet exported (with its texts) as a data file in the task's own columns, and mark
    it exported; the file stays under data/feedback/exports/ whatever the retrain decides."""
    return export_waiting(root, force, get_run_logger())


def source_summary(usable: Any, values: Any, params: Params, project: Path) -> dict[str, Any]:
    """Per source (token id, or "none"): rows, the answers' mix (labels) or mean (numbers), and how often the
    correction agrees with what the champion answered: a source that disagrees with everyone stands out."""
    import json

    import pandas as pd

    task = project_task(project, params)
    answered = task.live_answers(usable["output"].map(json.loads)).reindex(usable.index)
    sources = usable["source"].fillna("none") if "source" in usable else pd.Series("none", index=usable.index)
    out: dict[str, Any] = {}
    for source, rows in usable.groupby(sources).groups.items():
        given = pd.Series(values, index=usable.index).loc[rows]
        entry: dict[str, Any] = {"rows": len(rows)}
        if pd.api.types.is_numeric_dtype(given):
            entry["mean"] = float(given.mean())
            entry["mean_abs_difference_from_champion"] = float((given - pd.to_numeric(answered.loc[rows])).abs().mean())
        else:
            entry["mix"] = {str(k): int(v) for k, v in given.astype(str).value_counts().items()}
            entry["agrees_with_champion"] = float((given.astype(str) == answered.loc[rows].astype(str)).mean())
        out[str(source)] = entry
    return out


def export_waiting(root: str, force: bool, logger: Any) -> dict[str, Any]:
    """``export_feedback``'s work, outside Prefect too: ``logger`` takes ``info`` and ``warning``."""
    import datetime as dt

    import pandas as pd

    from variantlab.core.corpus import NO_DOMAIN
    from variantlab.core.task import user_columns
    from variantlab.io.files import write_csv

    project = Path(root)
    params = load_params(project / "params.yaml")
    log = _prediction_log(project, params)
    try:
        waiting = log.waiting_feedback()
        usable = waiting[waiting["text"].notna()]
        oldest = None
        if len(usable):
            first = pd.Timestamp(usable["created_at"].min())
            first = first.tz_localize("UTC") if first.tzinfo is None else first
            oldest = (pd.Timestamp.now(tz="UTC") - first).total_seconds() / 3600
        reason = export_due(len(usable), oldest, params, force)
        summary: dict[str, Any] = {"waiting": len(usable), "without_text": int(len(waiting) - len(usable))}
        if summary["without_text"]:
            logger.warning(
                "%d feedback rows have no text (served with --no-store-text) and cannot become data",
                summary["without_text"],
            )
        if reason is None:
            logger.info("no export: %d rows waiting (%s)", len(usable), "not due")
            return {**summary, "exported": 0, "path": None}
        columns = user_columns(params)  # the file's own column: a label (or answer text), else a number
        target = columns.label or str(columns.value)
        values = usable["label"] if columns.label else usable["value"]
        frame = pd.DataFrame({"id": usable["prediction_id"], "text": usable["text"], target: values.to_numpy()})
        if usable["domain"].notna().any():
            frame["domain"] = usable["domain"].fillna(NO_DOMAIN).to_numpy()
        try:
            summary["sources"] = source_summary(usable, values, params, project)
        except ValidationFailed:  # no prepared task to read the champion's answers with: rows per source only
            summary["sources"] = {
                str(k): {"rows": int(v)} for k, v in usable["source"].fillna("none").value_counts().items()
            }
        batch = dt.datetime.now(dt.UTC).strftime(paths.FEEDBACK_EXPORT_STAMP)
        path = project / paths.FEEDBACK_EXPORTS / f"feedback-{batch}.csv"
        write_csv(path, frame)
        log.mark_exported(usable["prediction_id"].tolist(), batch)
    finally:
        log.close()
    logger.info("exported %d feedback rows -> %s (%s); by source: %s", len(frame), path, reason, summary["sources"])
    return {**summary, "exported": len(frame), "path": str(path), "batch": batch, "reason": reason}


@flow(name="variantlab-feedback-to-retrain", log_prints=True)
def feedback_to_retrain(
    root: str = ".", force: bool = False, variants: list[str] | None = None, profile: str | None = None
) -> dict[str, Any]:
    """Report the drift of the served inputs; when enough feedback waits (or ``force``), export it and run
    retrain-on-new-data on it: validate, drift, append, retrain, gate."""
    drift = live_drift(root)
    exported = export_feedback(root, force)
    if not exported["path"]:
        return {"live_drift": drift.get("drifted"), "exported": exported, "retrain": None}
    retrained = retrain_on_new_data(exported["path"], root=root, variants=variants, profile=profile)
    return {"live_drift": drift.get("drifted"), "exported": exported, "retrain": retrained}


if __name__ == "__main__":
    retrain_on_new_data(sys.argv[1])
