"""serve.retention_days: predictions and exported feedback older than the cutoff go, with their shadow answers and
old export files; feedback not yet exported stays with its prediction; a dry run counts and deletes nothing."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import REPO, clean_env
from variantlab import paths
from variantlab.config import load_params
from variantlab.errors import ConfigError
from variantlab.serving import log as plog
from variantlab.serving.retention import prune

NOW = dt.datetime.now(dt.UTC)  # the CLI prunes against the clock: the rows are dated from it


def stamp(days_ago: float) -> str:
    return (NOW - dt.timedelta(days=days_ago)).strftime("feedback-%Y%m%dT%H%M%SZ.csv")


def seed(project: Path, params_from_repo: bool = True) -> None:
    """Eight predictions: p0-p3 are 100 days old, p4-p7 one day old. Feedback: p0 exported (old), p1 not yet
    exported (old), p4 exported (new). Shadow answers on p0, p2 and p5. Export files: one old, one new, one not
    named by the export."""
    if params_from_repo:
        shutil.copy(REPO / "params.yaml", project / "params.yaml")
    log = plog.PredictionLog(plog.log_url(None, project))
    try:
        rows = []
        for i in range(8):
            rows.append(
                {
                    "id": f"p{i}",
                    "created_at": NOW - dt.timedelta(days=100 if i < 4 else 1),
                    "model_name": "m",
                    "model_version": "1",
                    "input_sha256": "0" * 64,
                    "text": f"text {i}",
                    "output": '"positive"',
                    "latency_ms": 1.0,
                    "model_ms": 1.0,
                    "batch_rows": 1,
                }
            )
        log.record(rows)
        for pid in ("p0", "p1", "p4"):
            log.add_feedback(pid, label="negative", value=None, domain=None, source="abcd1234")
        log.mark_exported(["p0", "p4"], "batch")
        with log.engine.begin() as connection:
            for pid in ("p0", "p1"):
                connection.execute(
                    plog.feedback.update()
                    .where(plog.feedback.c.prediction_id == pid)
                    .values(created_at=NOW - dt.timedelta(days=99))
                )
        log.record_shadow(
            [
                {
                    "prediction_id": pid,
                    "created_at": NOW,
                    "champion_version": "1",
                    "model_version": "2",
                    "output": '"negative"',
                    "agrees": False,
                    "model_ms": 1.0,
                }
                for pid in ("p0", "p2", "p5")
            ]
        )
    finally:
        log.close()
    exports = project / paths.FEEDBACK_EXPORTS
    exports.mkdir(parents=True)
    for name in (stamp(120), stamp(1), "feedback-notes.csv"):
        (exports / name).write_text("id,text,label\n")


def contents(project: Path) -> dict[str, list[str]]:
    engine = sa.create_engine(plog.log_url(None, project))
    with engine.connect() as connection:
        out = {
            table.name: sorted(connection.execute(sa.select(table.c[key])).scalars())
            for table, key in (
                (plog.predictions, "id"),
                (plog.feedback, "prediction_id"),
                (plog.shadow, "prediction_id"),
            )
        }
    engine.dispose()
    out["exports"] = sorted(p.name for p in (project / paths.FEEDBACK_EXPORTS).iterdir())
    return out


def test_prune_deletes_old_predictions_and_exported_feedback_and_keeps_what_is_not_yet_data(tmp_path: Path) -> None:
    seed(tmp_path)
    params = load_params(tmp_path / "params.yaml")
    before = contents(tmp_path)
    counted = prune(tmp_path, params, days=30, dry_run=True, at=NOW)
    assert contents(tmp_path) == before  # a dry run changes nothing
    done = prune(tmp_path, params, days=30, at=NOW)
    expected = {"predictions": 3, "feedback": 1, "shadow_predictions": 2, "kept_unexported_feedback": 1}
    assert {k: done[k] for k in expected} == {k: counted[k] for k in expected} == expected
    assert done["export_files"] == counted["export_files"] == 1
    after = contents(tmp_path)
    assert after["predictions"] == ["p1", "p4", "p5", "p6", "p7"]  # p1 waits to be exported: it stays
    assert after["feedback"] == ["p1", "p4"]
    assert after["shadow_predictions"] == ["p5"]
    assert after["exports"] == sorted([stamp(1), "feedback-notes.csv"])
    assert prune(tmp_path, params, days=30, at=NOW)["predictions"] == 0  # idempotent

    # the deleted prediction is gone for feedback too: a late correction is a 404, not a new row
    log = plog.PredictionLog(plog.log_url(None, tmp_path))
    try:
        with pytest.raises(plog.UnknownPrediction):
            log.get("p2")
    finally:
        log.close()


def test_retention_settings_and_the_cli(tmp_path: Path) -> None:
    seed(tmp_path)
    params = load_params(tmp_path / "params.yaml")
    keep_all = params.model_copy(update={"serve": params.serve.model_copy(update={"retention_days": None})})
    assert "everything is kept" in prune(tmp_path, keep_all)["skipped"]
    with pytest.raises(ConfigError, match="more than 0"):
        prune(tmp_path, params, days=0)

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "variantlab.cli", "feedback", *argv],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    dry = cli("prune", "--dry-run")  # serve.retention_days (90) from params.yaml; the rows are 100 days old
    assert dry.returncode == 0, dry.stderr
    assert "would delete 3 predictions, 1 exported feedback rows" in dry.stderr
    assert len(contents(tmp_path)["predictions"]) == 8
    done = cli("prune", "--days", "200")
    assert done.returncode == 0 and "deleted 0 predictions" in done.stderr, done.stderr
    done = cli("prune")
    assert done.returncode == 0 and "deleted 3 predictions" in done.stderr, done.stderr
    assert contents(tmp_path)["predictions"] == ["p1", "p4", "p5", "p6", "p7"]
