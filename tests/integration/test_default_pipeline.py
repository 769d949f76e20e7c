"""The whole default pipeline, once, on the real VADER corpus and the real all-MiniLM-L6-v2.

By default it runs `variantlab run` in a fresh copy of the project (about 8 minutes on 2 cores). With
``VARIANTLAB_E2E_PROJECT`` set to a checkout where `make run` just ran on a fresh store (what `.ci/run` does),
it inspects that run instead of repeating it; `dvc status` must show it up to date with the code under test.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import clean_env, copy_project, made_run, run

pytestmark = pytest.mark.e2e

VARIANTS = ["tfidf-logreg", "minilm-probe", "minilm-full", "minilm-lora", "minilm-pruned", "minilm-full-more-data"]
STAGES = [
    "ingest",
    "validate",
    "prepare",
    *(f"{stage}:{v}" for stage in ("train", "evaluate") for v in VARIANTS),
    "compare",
    "promote",
]

INSPECT = """
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
parents = mlflow.search_runs(search_all_experiments=True, output_format="list",
                             filter_string="tags.`variantlab.stage` = 'pipeline'")
out = {"parents": [], "runs": len(mlflow.search_runs(search_all_experiments=True, output_format="list"))}
for parent in parents:
    kids = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    out["parents"].append({"status": parent.info.status, "artifacts": [a.path for a in
                           mlflow.MlflowClient().list_artifacts(parent.info.run_id)],
                           "children": sorted((k.info.run_name, k.info.status) for k in kids)})
experiment = mlflow.get_experiment_by_name("variantlab-sentiment")
out["logged_models"] = {m.name: {x.key: x.value for x in m.metrics or [] if x.dataset_name == "test-split"}
                        for m in mlflow.search_logged_models(experiment_ids=[experiment.experiment_id],
                                                             output_format="list")}
champion = mlflow.pyfunc.load_model("models:/variantlab-sentiment@champion")
texts = ["I absolutely love this, what a wonderful and delightful film!",
         "This is terrible. I hate it, the worst purchase I have ever made.",
         "The committee meets on Tuesday."]
out["champion_predictions"] = [str(p) for p in champion.predict(__import__("pandas").DataFrame({"text": texts}))]
for variant in sys.argv[2].split(","):
    local = mlflow.pyfunc.load_model(f"models/{variant}")
    out[variant] = [str(p) for p in local.predict(__import__("pandas").DataFrame({"text": texts[:2]}))]
print(json.dumps(out))
"""


def default_run(tmp_path: Path) -> tuple[Path, str]:
    """The project and what its `variantlab run` printed (``VARIANTLAB_E2E_RUN_LOG``: the log `.ci/run` kept)."""
    if project := made_run():
        log = os.environ.get("VARIANTLAB_E2E_RUN_LOG")
        return project, Path(log).read_text(errors="replace") if log else ""
    project = copy_project(tmp_path / "project")
    first = run(project, "-m", "variantlab.cli", "run", timeout=1500)
    assert first.returncode == 0, first.stderr[-4000:]
    return project, first.stdout + first.stderr


def check_printed(printed: str, board: pd.DataFrame) -> None:
    """The run ends with the short summary, and prints no library report a user cannot act on."""
    assert "LOAD REPORT" not in printed and "MISSING" not in printed  # transformers' report on the unused pooler
    if not printed:
        return
    summary = printed[printed.rindex("Variants, best first by macro_f1") :].splitlines()
    rows = [line.split() for line in summary if re.match(r"\d+\s", line)]  # rank, then the variant
    assert [row[1] for row in rows] == list(board["variant"]), summary  # one line per variant, in rank order
    assert f"{board['macro_f1'].iloc[0]:.4f}" in " ".join(rows[0])
    assert any(line.startswith(f"{board['variant'].iloc[0]} promoted to @champion: ") for line in summary), summary
    assert "Champion: variantlab-sentiment@champion = version 1" in summary
    assert [line.split()[:2] for line in summary if line.startswith("  variantlab ")] == [
        ["variantlab", "ui"],
        ["variantlab", "serve-model"],
        ["variantlab", "predict"],
    ]


def test_default_pipeline_end_to_end(tmp_path: Path) -> None:
    project, printed = default_run(tmp_path)

    board = pd.read_csv(project / "reports/leaderboard.csv")
    check_printed(printed, board)
    status = run(project, "-m", "variantlab.cli", "status")
    assert status.returncode == 0, status.stderr
    check_printed(status.stdout, board)  # `variantlab status` prints the same summary
    assert set(board["variant"]) == set(VARIANTS)
    costs = {"trainable_params", "total_params", "train_time_s", "model_size_mb", "peak_rss_mb", "latency_ms_p50"}
    assert costs <= set(board.columns)
    assert board["macro_f1"].iloc[0] > 0.55  # a floor a broken model or label mix-up would not reach
    assert {c for c in board.columns if c.startswith("macro_f1@")} == {
        "macro_f1@tweets",
        "macro_f1@movie_reviews",
        "macro_f1@amazon_reviews",
        "macro_f1@nyt_editorials",
    }
    prepared = json.loads((project / "metrics/prepare.json").read_text())
    assert prepared["rows"]["test"] == prepared["available"]["test"] > 4000  # the test set is never subsampled
    promotion = json.loads((project / "reports/promotion.json").read_text())
    assert promotion["promote"] is True and promotion["against"] == "baseline"
    assert promotion["reference"]["variant"] == "tfidf-logreg" and promotion["comparison"]["ci_low"] > 0
    assert "beats baseline tfidf-logreg" in promotion["reason"]
    for variant in VARIANTS:  # calibration, batch-32 latency and behaviour for every variant
        evaluated = json.loads((project / f"metrics/eval/{variant}.json").read_text())
        assert 0 <= evaluated["ece"] < 0.5 and evaluated["latency_b32_ms_p50"] > 0
        assert set(evaluated["behaviour"]) == {"negation", "name_swap", "number_swap"}
        assert (project / f"reports/calibration/{variant}.png").stat().st_size > 1000
    fine_tuned = json.loads((project / "metrics/eval/minilm-full.json").read_text())["behaviour"]
    assert fine_tuned["name_swap"]["pass_rate"] >= 0.8  # a real model mostly ignores who is speaking

    env = clean_env(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false")
    state = run(project, "-c", INSPECT, f"sqlite:///{project / 'mlflow.db'}", ",".join(VARIANTS), env=env)
    assert state.returncode == 0, state.stderr[-3000:]
    found = json.loads(state.stdout.strip().splitlines()[-1])
    (parent,) = found["parents"]
    assert parent["status"] == "FINISHED"
    assert [name for name, _ in parent["children"]] == sorted(STAGES)
    assert {status for _, status in parent["children"]} == {"FINISHED"}
    assert {"leaderboard.md", "leaderboard.csv", "pareto.png", "params.yaml"} <= set(parent["artifacts"])
    assert found["champion_predictions"][:2] == ["positive", "negative"]
    # the Models tab is the leaderboard: one logged model per variant, named by it, with its test macro-F1
    assert set(found["logged_models"]) == set(VARIANTS), found["logged_models"]
    for variant, metrics in found["logged_models"].items():
        expected = board.loc[board["variant"] == variant, "macro_f1"].item()
        assert abs(metrics["macro_f1"] - expected) < 1e-6, (variant, metrics)
    for variant in VARIANTS[1:]:  # every open-model variant gets the obvious cases right
        assert found[variant] == ["positive", "negative"], variant
    assert set(found["tfidf-logreg"]) <= {"negative", "neutral", "positive"}

    stamps = {p: p.stat().st_mtime_ns for p in (project / "models").rglob("*") if p.is_file()}
    second = run(project, "-m", "dvc", "repro")
    assert second.returncode == 0, second.stderr
    assert "Data and pipelines are up to date." in second.stdout
    assert "Running stage" not in second.stdout + second.stderr
    assert stamps == {p: p.stat().st_mtime_ns for p in (project / "models").rglob("*") if p.is_file()}
    after = json.loads(
        run(
            project, "-c", INSPECT, f"sqlite:///{project / 'mlflow.db'}", ",".join(VARIANTS), env=env
        ).stdout.splitlines()[-1]
    )
    assert after["runs"] == found["runs"]  # a no-op repro starts no MLflow run
