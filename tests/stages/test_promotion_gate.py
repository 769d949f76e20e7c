"""The promotion gate through the real stages and a real MLflow registry, on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.helpers import run, tiny_project, tiny_sentences

REGISTRY = """
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.MlflowClient()
versions = client.search_model_versions("name = 'variantlab-sentiment'")
aliases = client.get_registered_model("variantlab-sentiment").aliases if versions else {}
print(json.dumps({"versions": len(versions), "aliases": {k: str(v) for k, v in aliases.items()}}))
"""


def registry(project: Path) -> dict:
    done = run(project, "-c", REGISTRY, f"sqlite:///{project / 'mlflow.db'}")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def set_variants(project: Path, variants: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"] = variants
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_clearly_better_challenger_replaces_the_champion(tmp_path: Path) -> None:
    weak = {"kind": "tfidf-logreg", "min_df": 1, "max_features": 1}
    project = tiny_project(tmp_path / "p", data=tiny_sentences(300), extra={"promotion": {"floor": 0.1}})
    set_variants(project, {"weak": weak})
    first = run(project, "-m", "variantlab.cli", "run")
    assert first.returncode == 0, first.stderr[-3000:]
    assert registry(project)["aliases"] == {"champion": "1", "challenger": "1"}

    set_variants(project, {"weak": weak, "strong": {"kind": "tfidf-logreg", "min_df": 1}})
    dry = run(project, "-m", "dvc", "repro", "compare")
    assert dry.returncode == 0, dry.stderr[-3000:]
    preview = run(project, "-m", "variantlab.stages.promote", "--dry-run")
    assert preview.returncode == 0, preview.stderr[-3000:]
    assert "would promote strong" in preview.stderr
    assert registry(project)["versions"] == 1  # a dry run registers and moves nothing

    second = run(project, "-m", "variantlab.cli", "run")
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads((project / "reports/promotion.json").read_text())
    assert report["promote"] is True and report["champion_before"] == "1" and report["champion_after"] == "2"
    comparison = report["comparison"]
    assert comparison["ci_low"] > 0 and comparison["mcnemar_p"] < 0.05 and comparison["n_bootstrap"] == 1000
    assert registry(project)["aliases"] == {"champion": "2", "challenger": "2"}


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
