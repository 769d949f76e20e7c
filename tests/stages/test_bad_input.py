"""Bad input at the stage level (the full table of bad inputs is tests/reliability/test_bad_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import clean_env, run, tiny_project, tiny_sentences


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tiny_project(tmp_path / "p")


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def outputs(project: Path) -> list[str]:
    """Pipeline outputs present in the project (the committed benchmark reports are not outputs)."""
    found = []
    for folder in ("data/raw", "data/prepared", "models", "metrics", "reports"):
        found += [str(p.relative_to(project)) for p in (project / folder).rglob("*") if p.is_file()]
    return sorted(f for f in found if not f.startswith("reports/bench/"))


def test_rating_out_of_range_fails_validation_and_promotes_nothing(project: Path) -> None:
    data = tiny_sentences()
    data.loc[5, "rating"] = 7.5
    data.to_csv(project / "data/external/tiny.csv", index=False)
    done = run(project, "-m", "variantlab.cli", "run")
    assert done.returncode != 0
    assert "[error] rating_range: expected rating within [-4, 4]" in done.stderr
    assert "'rating': 7.5" in done.stderr
    assert (
        "validate: error: data/raw/sentences.parquet: 1 expectation(s) of severity error failed: rating_range"
        in done.stderr
    )
    assert not (project / "reports/validation.json").exists()
    assert not (project / "models").exists() and not (project / "reports/promotion.json").exists()
    check = (
        "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); "
        "print(len(mlflow.search_registered_models()), "
        "sorted(r.info.status for r in mlflow.search_runs(search_all_experiments=True, output_format='list')))"
    )
    state = run(project, "-c", check, f"sqlite:///{project / 'mlflow.db'}")
    assert state.stdout.split()[0] == "0", state.stderr
    assert "FAILED" in state.stdout and "RUNNING" not in state.stdout


def test_unknown_params_key_is_one_line_before_any_work(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["tset_fraction"] = 0.3
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    for argv in (["-m", "variantlab.stages.ingest"], ["-m", "variantlab.cli", "run"]):
        done = run(project, *argv, env=clean_env())
        assert done.returncode == 2
        assert done.stderr.strip().endswith("params.yaml: unknown key 'split.tset_fraction'"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert outputs(project) == []
    assert not (project / "mlflow.db").exists()


def test_unknown_variant_on_the_command_line(project: Path) -> None:
    done = run(project, "-m", "variantlab.stages.train", "nope")
    assert done.returncode == 2
    assert "unknown variant 'nope' (declared: tfidf-logreg)" in done.stderr


def test_user_parquet_with_labels_ingests(project: Path) -> None:
    frame = pd.DataFrame({"text": ["good", "bad"], "label": ["positive", "negative"]})
    frame.to_parquet(project / "data/external/own.parquet")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["source"] = "data/external/own.parquet"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = run(project, "-m", "variantlab.stages.ingest")
    assert done.returncode == 0, done.stderr
    raw = pd.read_parquet(project / "data/raw/sentences.parquet")
    assert raw["label"].tolist() == ["positive", "negative"] and set(raw["domain"]) == {"all"}
