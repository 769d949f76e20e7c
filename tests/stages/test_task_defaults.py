"""The task brings its own defaults: a new user's file with many labels, or a rare one, goes through with the
shipped ``validation:`` settings (the class floor is relative to the number of labels), and a regression
needs no change to ``promotion:``."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import DELETE, tiny_project

WORDS = [f"w{i}" for i in range(400)]


def topic_file(sizes: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """Distinct texts whose topic is learnable from its own words; ``sizes``: rows per topic."""
    rng = random.Random(seed)
    rows = []
    for t, (topic, n) in enumerate(sizes.items()):
        own = WORDS[t * 10 : t * 10 + 10]
        for i in range(n):
            text = f"{rng.choice(own)} {rng.choice(own)} {rng.choice(WORDS[300:])} note {i} of {topic}"
            rows.append({"id": f"{topic}-{i}", "text": text, "topic": topic})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def own_task_project(target: Path, data: pd.DataFrame) -> Path:
    """A project on ``data`` with the shipped validation and promotion settings: only the task is the user's."""
    extra = {"split": {"holdout_domains": []}, "promotion": {"floor": DELETE, "baseline": None}}
    project = tiny_project(target, extra=extra)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["task"] = {"kind": "classification", "label_column": "topic", "labels": "auto"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data.to_csv(project / "data/external/tiny.csv", index=False)
    return project


def stages_through(project: Path, monkeypatch: pytest.MonkeyPatch, *, models: bool) -> None:
    from variantlab.config import load_params
    from variantlab.stages import compare, evaluate, ingest, prepare, train, validate
    from variantlab.stages.context import StageContext

    monkeypatch.chdir(project)
    params = load_params(project / "params.yaml")
    for stage in (ingest, validate, prepare):
        assert stage.run(StageContext(project, params)) == 0, stage
    if models:
        for name in params.variants:
            assert train.run(StageContext(project, params, name)) == 0
            assert evaluate.run(StageContext(project, params, name)) == 0
        assert compare.run(StageContext(project, params)) == 0


def test_twenty_labels_prepare_with_the_shipped_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process_stages: None
) -> None:
    from variantlab.io.files import read_json

    project = own_task_project(tmp_path / "twenty", topic_file({f"topic{i:02d}": 60 for i in range(20)}))
    stages_through(project, monkeypatch, models=False)
    task = read_json(project / "data/prepared/task.json")
    assert len(task["labels"]) == 20
    floors = [
        c for c in read_json(project / "reports/validation.json")["expectations"] if c["key"].startswith("class_")
    ]
    assert len(floors) == 20 and all(c["success"] for c in floors)


def test_eight_topics_with_a_rare_one_run_with_the_shipped_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process_stages: None
) -> None:
    sizes = {f"topic{i}": 70 for i in range(7)} | {"rare": 30}  # 30 of 520 rows: under 6%
    project = own_task_project(tmp_path / "eight", topic_file(sizes))
    stages_through(project, monkeypatch, models=True)
    board = pd.read_csv(project / "reports/leaderboard.csv")
    assert list(board["variant"]) == ["tfidf-logreg"] and board.loc[0, "macro_f1"] > 0.5
    assert "f1_rare" in board.columns
