"""Changing ``promotion.metric`` is a change `dvc repro` acts on: train records (and a search chooses by) the
metric, so train re-runs, and compare ranks by the new one. It used to re-run compare alone, which then
stopped with a traceback and left no leaderboard."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import run, tiny_project, tiny_sentences


def set_metric(project: Path, metric: str | None) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["promotion"]["metric"] = metric
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow  # two pipeline runs (about 60 s): make test-slow (CI runs it)
def test_changing_the_promotion_metric_retrains_and_reranks(tmp_path: Path) -> None:
    from variantlab.io.files import read_json

    extra = {"promotion": {"baseline": None}, "variants": {"tfidf-weak": {"kind": "tfidf-logreg", "C": 0.01}}}
    project = tiny_project(tmp_path / "p", data=tiny_sentences(240), extra=extra)
    first = run(project, "-m", "variantlab.cli", "run", "compare")  # dvc repro, stages forked warm: quicker
    assert first.returncode == 0, first.stderr[-3000:]
    assert "val_macro_f1" in pd.read_csv(project / "reports/leaderboard.csv").columns

    set_metric(project, "accuracy")
    second = run(project, "-m", "dvc", "repro", "compare")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for variant in ("tfidf-logreg", "tfidf-weak"):
        assert "val_accuracy" in read_json(project / f"metrics/train/{variant}.json"), variant
    board = pd.read_csv(project / "reports/leaderboard.csv")
    assert "val_accuracy" in board.columns and list(board["val_accuracy"]) == sorted(board["val_accuracy"])[::-1]
    evaluated = {v: read_json(project / f"metrics/eval/{v}.json")["accuracy"] for v in board["variant"]}
    assert dict(zip(board["variant"], board["quality"], strict=True)) == evaluated
    status = run(project, "-m", "dvc", "status", "compare", "--json")
    assert status.returncode == 0 and status.stdout.strip() in ("{}", ""), status.stdout
