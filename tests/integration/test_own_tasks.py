"""A user's own task end to end through `variantlab run`: eight topics (labels: auto), a binary task, and a
regression (the last two in `make test-slow`). Each ends with a champion registered as
variantlab-<project.name> that `variantlab predict` and MLflow's pyfunc answer with the task's own labels
(or numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.helpers import REPO, registry, run, tiny_project, tiny_sentences

sys.path.insert(0, str(REPO / "examples" / "multiclass-topics"))
from make_topics import TOPICS, write_topics


def own_project(tmp_path: Path, tiny_bert: tuple[Path, str], data: pd.DataFrame, task: dict[str, Any], **extra: Any):
    project = tiny_project(tmp_path / "p", *tiny_bert, data=data)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["task"] = task  # the whole task replaced: nothing of the default's is left
    params["variants"].pop("tiny-lora")
    params["promotion"].update(baseline=None, metric=None, floor=None)
    for key, value in extra.items():
        params[key].update(value)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    return project


def run_pipeline(project: Path) -> dict[str, Any]:
    done = run(project, "-m", "variantlab.cli", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((project / "reports/promotion.json").read_text())


def predict(project: Path, name: str, texts: list[str]) -> list[Any]:
    pd.DataFrame({"text": texts}).to_csv(project / "in.csv", index=False)
    uri = f"models:/{name}@champion"
    done = run(project, "-m", "variantlab.cli", "predict", uri, "in.csv", "-o", "out.csv")
    assert done.returncode == 0, done.stderr[-2000:]
    return pd.read_csv(project / "out.csv")["predicted"].tolist()


@pytest.mark.slow  # 40-90 s of training: make test-slow (CI runs it)
def test_eight_topics_with_auto_labels(tmp_path: Path, tiny_bert: tuple[Path, str]) -> None:
    source = write_topics(tmp_path / "topics.csv", 480)
    data = pd.read_csv(source)
    project = own_project(
        tmp_path,
        tiny_bert,
        data,
        {"kind": "classification", "label_column": "topic", "labels": "auto"},
        project={"name": "topics"},
        validation={"domains": None, "min_class_fraction": 0.05},
        split={"holdout_domains": []},
    )
    report = run_pipeline(project)
    task = json.loads((project / "data/prepared/task.json").read_text())
    assert task["labels"] == sorted(TOPICS)  # frozen, sorted, from the data
    evaluated = json.loads((project / "metrics/eval/tfidf-logreg.json").read_text())
    assert set(evaluated["per_class"]) == set(TOPICS) and evaluated["macro_f1"] > 0.9
    confusion = pd.read_csv(project / "reports/confusion/tfidf-logreg.csv")
    assert set(confusion["actual"]) == set(TOPICS)
    assert report["registered_model"] == "variantlab-topics" and report["champion_after"] == "1"
    assert registry(project, name="variantlab-topics")["aliases"] == {"champion": "1", "challenger": "1"}
    answers = predict(project, "variantlab-topics", ["We spent the evening arguing about the court ruling."])
    assert answers == ["law"]
    board = pd.read_csv(project / "reports/leaderboard.csv")
    assert {f"f1_{t}" for t in TOPICS} <= set(board.columns) and "macro_f1@all" in board.columns


@pytest.mark.slow
def test_a_binary_task_reports_roc_and_pr_auc(tmp_path: Path, tiny_bert: tuple[Path, str]) -> None:
    data = tiny_sentences(240)
    data = data[data["rating"].abs() > 1].reset_index(drop=True)  # clearly polar: a binary task
    task = {
        "kind": "classification",
        "labels": ["negative", "positive"],
        "label_rule": {"column": "rating", "bins": [{"label": "negative", "max": 0.0}, {"label": "positive"}]},
        "behaviour": {"polarity": {"positive": "positive", "negative": "negative"}},
    }
    project = own_project(tmp_path, tiny_bert, data, task, project={"name": "polar"})
    run_pipeline(project)
    evaluated = json.loads((project / "metrics/eval/tfidf-logreg.json").read_text())
    assert set(evaluated["per_class"]) == {"negative", "positive"}
    assert evaluated["roc_auc"] > 0.9 and 0 < evaluated["pr_auc"] <= 1
    assert set(evaluated["behaviour"]) == {"negation", "name_swap", "number_swap"}
    assert predict(project, "variantlab-polar", ["the movie was great one", "the day was awful two"]) == [
        "positive",
        "negative",
    ]


@pytest.mark.slow
def test_a_regression_task_end_to_end(tmp_path: Path, tiny_bert: tuple[Path, str]) -> None:
    task = {"kind": "regression", "target_column": "rating", "value_range": [-4.0, 4.0]}
    project = own_project(tmp_path, tiny_bert, tiny_sentences(240), task, project={"name": "rating"})
    params = yaml.safe_load((project / "params.yaml").read_text())  # a search that minimises validation MAE
    params["variants"]["tfidf-logreg"]["search"] = {
        "trials": 3,
        "space": {"ngram_max": {"type": "int", "low": 1, "high": 2}},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    report = run_pipeline(project)
    searched = json.loads((project / "metrics/train/tfidf-logreg.json").read_text())
    assert searched["search"]["complete"] == 3 and searched["val_mae"] == pytest.approx(
        searched["search"]["best_value"]
    )
    import optuna

    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{project / '.variantlab/optuna.db'}")
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{project / '.variantlab/optuna.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.best_value == min(t.value for t in study.trials)
    evaluated = json.loads((project / "metrics/eval/tfidf-logreg.json").read_text())
    assert {"mae", "rmse", "r2", "spearman"} <= set(evaluated) and "per_class" not in evaluated
    assert evaluated["r2"] > 0.5 and set(evaluated["behaviour"]) == {"name_swap", "number_swap"}
    board = pd.read_csv(project / "reports/leaderboard.csv")
    assert board["val_mae"].is_monotonic_increasing  # lower is better: the best on validation first
    assert report["challenger"]["variant"] == board["variant"].iloc[0]
    assert "mae" in report["reason"] and "<= floor" not in report["reason"]  # no floor declared
    answers = predict(project, "variantlab-rating", ["the film was great one", "the day was awful two"])
    assert answers[0] > 1.0 > -1.0 > answers[1]  # numbers on the target's scale, not labels
    # a second run with another variant faces the champion: the regression gate (bootstrap + Wilcoxon) decides
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"]["tfidf-logreg"]["C"] = 0.01  # heavily regularised: worse
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    again = run_pipeline(project)
    assert again["champion_before"] == "1" and again["comparison"]["test"] == "wilcoxon"
