"""The promotion gate and the registry controls through the real stages and a real MLflow registry, on tiny data.

One project is promoted twice (a weak champion, then a clearly better challenger) and shared by the tests
that inspect it; tests that tamper with it restore what they change.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import registry, run, set_variants, tiny_project, tiny_sentences

WEAK = {"kind": "tfidf-logreg", "min_df": 1, "max_features": 1}
STRONG = {"kind": "tfidf-logreg", "min_df": 1}


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    project = tiny_project(
        tmp_path_factory.mktemp("gate") / "p", data=tiny_sentences(300), extra={"promotion": {"floor": 0.1}}
    )
    set_variants(project, {"weak": WEAK})
    first = run(project, "-m", "variantlab.cli", "run")
    assert first.returncode == 0, first.stderr[-3000:]
    assert registry(project)["aliases"] == {"champion": "1", "challenger": "1"}

    set_variants(project, {"weak": WEAK, "strong": STRONG})
    assert run(project, "-m", "dvc", "repro", "compare").returncode == 0
    preview = run(project, "-m", "variantlab.cli", "promote", "--dry-run")
    assert preview.returncode == 0, preview.stderr[-3000:]
    assert "would promote strong" in preview.stderr
    assert json.loads((project / "reports/promotion.dry-run.json").read_text())["promote"] is True
    after_dry = registry(project)
    assert after_dry["versions"] == 1 and len(after_dry["history"]) == 2  # a dry run registers and moves nothing

    second = run(project, "-m", "variantlab.cli", "run")
    assert second.returncode == 0, second.stderr[-3000:]
    yield project


def test_a_clearly_better_challenger_replaces_the_champion(promoted: Path) -> None:
    report = json.loads((promoted / "reports/promotion.json").read_text())
    assert report["promote"] is True and report["champion_before"] == "1" and report["champion_after"] == "2"
    assert report["against"] == "champion" and report["reason"].startswith("beats champion weak")
    comparison = report["comparison"]
    assert comparison["ci_low"] > 0 and comparison["p_value"] < 0.05 and comparison["test"] == "mcnemar"
    assert comparison["n_bootstrap"] == 1000
    state = registry(promoted)
    assert state["aliases"] == {"champion": "2", "challenger": "2"} and state["locks"] == []


def test_every_alias_move_is_in_the_history(promoted: Path) -> None:
    history = registry(promoted)["history"]
    moves = [(m["seq"], m["alias"], m["from_version"], m["to_version"], m["action"]) for m in history]
    assert moves == [
        (1, "challenger", None, "1", "challenger"),
        (2, "champion", None, "1", "promote"),
        (3, "challenger", "1", "2", "challenger"),
        (4, "champion", "1", "2", "promote"),
    ]
    assert all(m["pipeline_run_id"] and m["when"] and m["reason"] for m in history)
    shown = run(promoted, "-m", "variantlab.cli", "history", "--json")
    assert [json.loads(line)["seq"] for line in shown.stdout.splitlines()] == [1, 2, 3, 4]


def test_verify_passes_and_catches_a_changed_test_set_or_model(promoted: Path, tmp_path: Path) -> None:
    ok = run(promoted, "-m", "variantlab.cli", "verify", "models:/variantlab-sentiment@champion")
    assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
    assert "FAIL" not in ok.stdout and "metric macro_f1" in ok.stdout and "test set md5 = dvc.lock" in ok.stdout

    changed = tmp_path / "copy"
    shutil.copytree(promoted, changed)
    test = pd.read_parquet(changed / "data/prepared/test.parquet")
    test.loc[test.index[0], "label"] = "neutral" if test["label"].iloc[0] != "neutral" else "positive"
    test.to_parquet(changed / "data/prepared/test.parquet", index=False)
    bad = run(changed, "-m", "variantlab.cli", "verify", "models:/variantlab-sentiment/2")
    assert bad.returncode == 1, bad.stdout + bad.stderr[-2000:]
    for check in ("test set md5 = evaluation run", "test set md5 = dvc.lock", "test set content sha256"):
        assert f"FAIL {check}" in bad.stdout
    assert "check(s) failed" in bad.stderr

    model_id = json.loads((promoted / "metrics/train/weak.json").read_text())["model_uri"].split("/")[-1]
    (skops,) = (p for p in (promoted / "mlartifacts").rglob("model.skops") if model_id in p.parts)  # version 1
    original = skops.read_bytes()
    try:
        skops.write_bytes(original + b"\0")
        tampered = run(promoted, "-m", "variantlab.cli", "verify", "models:/variantlab-sentiment/1")
    finally:
        skops.write_bytes(original)
    assert tampered.returncode != 0 and "model files sha256" in tampered.stdout + tampered.stderr


def test_predict_writes_labels_for_a_file_and_refuses_bad_input(promoted: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2], "review": ["the film was wonderful", "the meal was awful"]}).to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    done = run(
        promoted,
        "-m",
        "variantlab.cli",
        "predict",
        "models:/variantlab-sentiment@champion",
        str(source),
        "-o",
        str(out),
        "--text-column",
        "review",
        "--proba",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = pd.read_parquet(out)
    assert result["predicted"].tolist() == ["positive", "negative"]
    assert list(result.columns) == ["id", "review", "predicted", "p_negative", "p_neutral", "p_positive"]

    missing = run(promoted, "-m", "variantlab.cli", "predict", "models:/variantlab-sentiment@champion", str(source),
                  "-o", str(tmp_path / "never.csv"))  # fmt: skip
    assert missing.returncode == 2
    assert f"{source}: column 'text': no such column" in missing.stderr
    assert not (tmp_path / "never.csv").exists()


def test_dvc_plots_diff_and_exp_show_read_the_outputs(promoted: Path) -> None:
    plots = run(promoted, "-m", "dvc", "plots", "diff", "--json")
    assert plots.returncode == 0, plots.stderr[-2000:]
    shown = json.loads(plots.stdout)  # HEAD has no outputs (they are not committed); the workspace has them all
    names = {name for name, items in shown["data"].items() if any("workspace" in i.get("revisions", []) for i in items)}
    assert {"quality-vs-latency", "quality-vs-size", "reports/pareto.png"} <= names, sorted(names)
    assert any(name.startswith("reports/calibration/") for name in names)
    exp = run(promoted, "-m", "dvc", "exp", "show", "--json")
    assert exp.returncode == 0, exp.stderr[-2000:]
    assert "metrics/eval/strong.json" in exp.stdout and "macro_f1" in exp.stdout


def test_rollback_moves_the_champion_back_and_records_it(promoted: Path) -> None:
    done = run(promoted, "-m", "variantlab.cli", "rollback", "--reason", "bad feedback from users")
    assert done.returncode == 0, done.stderr[-2000:]
    state = registry(promoted)
    assert state["aliases"]["champion"] == "1"
    last = state["history"][-1]
    assert (last["action"], last["from_version"], last["to_version"], last["reason"]) == (
        "rollback",
        "2",
        "1",
        "bad feedback from users",
    )
    again = run(promoted, "-m", "variantlab.cli", "rollback")
    assert again.returncode == 2 and "no earlier champion" in again.stderr
    assert registry(promoted)["aliases"]["champion"] == "1"


@pytest.mark.slow  # a pipeline run of its own (20-75 s): make test-slow (CI runs it)
def test_a_challenger_that_is_not_provably_better_stays_challenger(tmp_path: Path) -> None:
    base = {"kind": "tfidf-logreg", "min_df": 1}
    project = tiny_project(tmp_path / "p", data=tiny_sentences(300), extra={"promotion": {"floor": 0.1}})
    set_variants(project, {"a": base})
    assert run(project, "-m", "variantlab.cli", "run").returncode == 0
    set_variants(project, {"a": base, "b": {**base, "C": 4.5}})  # the same model, give or take noise
    done = run(project, "-m", "variantlab.cli", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((project / "reports/promotion.json").read_text())
    if report["challenger"]["variant"] == "b":  # b ranked first: the gate must refuse it
        assert report["promote"] is False and report["reason"].startswith("not provably better")
        assert registry(project)["aliases"] == {"champion": "1", "challenger": "2"}
    else:  # a stayed first: it already is the champion, nothing new is registered
        assert "already the champion" in report["reason"]
        assert registry(project)["aliases"] == {"champion": "1", "challenger": "1"}


MODELS_VIEW = """
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.MlflowClient()
experiment = mlflow.get_experiment_by_name(sys.argv[2])
models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
runs = mlflow.search_runs([experiment.experiment_id], "tags.`variantlab.stage` = 'evaluate'", output_format="list")
parent = mlflow.search_runs([experiment.experiment_id], "tags.`variantlab.stage` = 'pipeline'", output_format="list")
version = client.get_model_version("variantlab-sentiment", "2")
print(json.dumps({
    "models": [{"name": m.name, "params": m.params, "id": m.model_id, "versions": m.tags.get("mlflow.modelVersions"),
                "metrics": [[x.key, x.value, x.dataset_name] for x in m.metrics or []]} for m in models],
    "evaluate": [{"variant": r.data.tags.get("variant"), "params": r.data.params, "metrics": r.data.metrics}
                 for r in runs],
    "parent_artifacts": [a.path for a in client.list_artifacts(parent[0].info.run_id)],
    "parent_tags": parent[0].data.tags,
    "version_source": version.source, "version_description": version.description,
}))
"""


def test_every_variant_is_a_named_model_with_its_params_and_test_metrics(promoted: Path) -> None:
    """The experiment's Models tab is the leaderboard; Compare on evaluate runs shows params beside metrics."""
    import yaml

    project_name = yaml.safe_load((promoted / "params.yaml").read_text())["project"]["name"]
    shown = run(promoted, "-c", MODELS_VIEW, f"sqlite:///{promoted / 'mlflow.db'}", f"variantlab-{project_name}")
    assert shown.returncode == 0, shown.stderr[-3000:]
    view = json.loads(shown.stdout.strip().splitlines()[-1])
    named = {m["name"]: m for m in view["models"]}
    assert {"weak", "strong"} <= set(named), sorted(named)
    for variant in ("weak", "strong"):
        model = named[variant]
        assert model["params"]["variant.kind"] == "tfidf-logreg"
        test_f1 = [v for key, v, dataset in model["metrics"] if key == "macro_f1" and dataset == "test-split"]
        evaluated = json.loads((promoted / f"metrics/eval/{variant}.json").read_text())
        assert test_f1 and test_f1[-1] == pytest.approx(evaluated["macro_f1"]), model["metrics"]
    last = {}
    for r in view["evaluate"]:  # newest first: the second pipeline run's (weak's is a reused record)
        last.setdefault(r["variant"], r)
    assert last["strong"]["params"]["variant.max_features"] != last["weak"]["params"]["variant.max_features"]
    assert all("macro_f1" in r["metrics"] and "variant.kind" in r["params"] for r in last.values())
    assert {"leaderboard.json", "promotion.json", "pareto.png"} <= set(view["parent_artifacts"])
    assert view["parent_tags"]["promoted"] == "true" and view["parent_tags"]["decision.variant"] == "strong"
    assert view["version_source"] == f"models:/{named['strong']['id']}"  # the registered version is that model
    assert json.loads(named["strong"]["versions"]) == [{"name": "variantlab-sentiment", "version": "2"}]
    assert "Promoted to @champion" in view["version_description"]
