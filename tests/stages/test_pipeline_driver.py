"""What the pipeline driver learns from a real ``dvc repro``: which stages ran, which DVC reused (unchanged, or
restored from its run cache), how long each took, and a failing stage's own line and exit code. It reads the
stages' records, so no DVC release that rewords its output can change it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import clean_env, tiny_project, tiny_sentences

PREPARED = ["ingest", "validate", "prepare"]


def test_ran_reused_restored_and_failed_come_from_the_stages_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from variantlab.config import load_params
    from variantlab.pipeline import reproduce

    project = tiny_project(tmp_path / "p", data=tiny_sentences(150))
    for key, value in clean_env().items():
        monkeypatch.setenv(key, value)
    for key in ("MLFLOW_TRACKING_URI", "VARIANTLAB_PARENT_RUN_ID", "PYTHONPATH"):
        monkeypatch.delenv(key, raising=False)
    params = load_params(project / "params.yaml")

    first = reproduce(project, params, "prepare", echo=False)
    assert first.returncode == 0, first.output[-3000:]
    assert first.covered == PREPARED and first.ran == PREPARED and first.reused == []
    assert all(0 < s < 120 for s in first.seconds.values())

    again = reproduce(project, params, "prepare", echo=False)
    assert again.returncode == 0 and again.ran == [] and again.reused == PREPARED

    for out in ("data/raw", "data/prepared", "reports/validation.json"):  # `make clean`: DVC's run cache restores
        shutil.rmtree(project / out) if (project / out).is_dir() else (project / out).unlink()
    restored = reproduce(project, params, "prepare", echo=False)
    assert restored.returncode == 0 and restored.ran == [] and restored.reused == PREPARED
    assert (project / "data/prepared/train.parquet").is_file()

    single = reproduce(project, params, "validate", single_item=True, echo=False)
    assert single.covered == ["validate"] and single.reused == ["validate"]

    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["validation"]["text_max_chars"] = 10  # every tiny sentence is longer: validate refuses the data
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    failed = reproduce(project, load_params(project / "params.yaml"), "prepare", echo=False)
    assert failed.returncode != 0 and failed.exit_code == 2
    assert failed.error is not None and failed.error.startswith("validate failed: data/raw/sentences.parquet")
    assert "text_length_max" in failed.error
    assert failed.ran == [] and failed.reused == []  # a failed repro claims nothing was reused
