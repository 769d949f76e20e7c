"""`processes: 2`: the train stage runs as 2 DDP processes (gloo on CPU); rank 0 alone logs and writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run, tiny_project


@pytest.mark.slow  # 40-90 s of training: make test-slow (CI runs it)
def test_train_stage_under_torchrun_with_two_processes(tiny_bert: tuple[Path, str], tmp_path: Path) -> None:
    full = {"kind": "full", "model": "tiny", "max_length": 16, "batch_size": 8, "epochs": 2, "lr": 3e-3, "processes": 2}
    project = tiny_project(tmp_path / "p", *tiny_bert, extra={"variants": {"tiny-full": full}})
    prepared = run(project, "-m", "dvc", "repro", "prepare")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    done = run(project, "-m", "dvc", "repro", "train@tiny-full", timeout=600)  # `processes: 2` -> torchrun
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((project / "metrics/train/tiny-full.json").read_text())
    assert record["world_size"] == 2 and record["kind"] == "full"
    assert record["val_macro_f1"] > 0.5, record
    assert (project / "models/tiny-full/MLmodel").is_file()
    count = (
        "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); print(len(mlflow.search_runs("
        "search_all_experiments=True, output_format='list', filter_string=\"tags.variant = 'tiny-full'\")))"
    )
    assert run(project, "-c", count, f"sqlite:///{project / 'mlflow.db'}").stdout.strip() == "1"  # rank 0 only
