"""Retention: ``serve.retention_days`` bounds how long the prediction log keeps what users sent.

Once a day (the ``prune-prediction-log`` deployment, or ``variantlab feedback prune``) it deletes, older than
the cutoff: the feedback already exported, the predictions no remaining feedback points to (with their shadow
answers), and the export files in ``data/feedback/exports``. Feedback not yet exported stays with its prediction:
it has not become data yet. Rows accepted into training data (``data/feedback/accepted.parquet``) are versioned
by DVC and not touched here. Whether texts are stored at all stays ``serve.store_text``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from variantlab import paths
from variantlab.config import Params
from variantlab.errors import ConfigError


def export_files_before(folder: Path, cutoff: dt.datetime) -> list[Path]:
    """Export files whose batch is older than ``cutoff``; files not named by the export are left alone."""
    found = []
    for path in sorted(folder.glob("feedback-*.csv")):
        try:
            stamp = dt.datetime.strptime(path.stem.removeprefix("feedback-"), paths.FEEDBACK_EXPORT_STAMP).replace(
                tzinfo=dt.UTC
            )
        except ValueError:
            continue
        if stamp < cutoff:
            found.append(path)
    return found


def prune(
    project: Path, params: Params, *, days: float | None = None, dry_run: bool = False, at: dt.datetime | None = None
) -> dict[str, Any]:
    """Apply the retention policy to ``project``'s prediction log and export files; returns what went (or, with
    ``dry_run``, what would go). ``days`` overrides ``serve.retention_days``."""
    from variantlab.serving.log import PredictionLog, log_url

    days = params.serve.retention_days if days is None else days
    if days is None:
        return {"skipped": "serve.retention_days is null: everything is kept", "dry_run": dry_run}
    if not days > 0:
        raise ConfigError(f"retention days must be more than 0, got {days}")
    cutoff = (at or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    log = PredictionLog(log_url(params.serve.log_url, project))
    try:
        counts = log.prune(cutoff, dry_run=dry_run)
    finally:
        log.close()
    files = export_files_before(project / paths.FEEDBACK_EXPORTS, cutoff)
    if not dry_run:
        for path in files:
            path.unlink(missing_ok=True)
    return {
        "days": days,
        "cutoff": cutoff.isoformat(timespec="seconds"),
        "dry_run": dry_run,
        **counts,
        "export_files": len(files),
    }


def describe(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"retention: {result['skipped']}"
    verb = "would delete" if result["dry_run"] else "deleted"
    return (
        f"retention ({result['days']:g} days, before {result['cutoff']}): {verb} {result['predictions']} predictions, "
        f"{result['feedback']} exported feedback rows, {result['shadow_predictions']} shadow answers and "
        f"{result['export_files']} export files; kept {result['kept_unexported_feedback']} older feedback rows not "
        "yet exported"
    )
