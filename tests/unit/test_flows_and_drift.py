"""Flow parameters as versioned params, the deployments in both places, drift measures, feedback splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.retrain import select_stages
from variantlab.config import parse_params
from variantlab.core.dataset import prepare_splits
from variantlab.core.drift import centroid_distance, length_shift, total_variation
from variantlab.core.preprocessing import content_hash
from variantlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_a_variant_subset_selects_only_its_stages() -> None:
    stages = ["ingest", "prepare", "train@a", "train@b", "evaluate@a", "evaluate@b", "compare", "promote"]
    assert select_stages(stages, ["b"], {"a", "b"}) == [
        "ingest",
        "prepare",
        "train@b",
        "evaluate@b",
        "compare",
        "promote",
    ]
    assert select_stages(stages, None, {"a", "b"}) == stages
    with pytest.raises(ConfigError, match="unknown variants"):
        select_stages(stages, ["c"], {"a", "b"})


def test_a_failing_command_records_its_own_line_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drivers read why a stage failed, and whether a retry may help, from this record, not DVC's output."""
    from variantlab.console import TRANSIENT_EXIT, guarded
    from variantlab.errors import DataError
    from variantlab.io.records import LAST_ERROR, read_record

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")

    def unreachable() -> int:
        try:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        except OSError as error:
            raise RuntimeError("API request to http://127.0.0.1:1/api failed") from error

    def bad_file() -> int:
        raise DataError("row 3: not a number", file="data/external/x.csv", column="price")

    assert guarded("ingest", unreachable, []) == TRANSIENT_EXIT
    record = read_record(tmp_path, LAST_ERROR)
    assert record is not None and record["exit_code"] == TRANSIENT_EXIT and record["command"] == "ingest"
    assert guarded("validate", bad_file, []) == 2
    record = read_record(tmp_path, LAST_ERROR)
    assert record is not None and record["exit_code"] == 2
    assert record["message"] == "validate failed: data/external/x.csv: column 'price': row 3: not a number"
    with pytest.raises(ValueError, match="a bug"):  # not a network failure: a traceback, not a retry
        guarded("train", lambda: (_ for _ in ()).throw(ValueError("a bug")), [])


def test_served_deployments_match_prefect_yaml() -> None:
    from pipelines.deployments import build_deployments

    declared = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    served = {d.name: d for d in build_deployments(REPO)}
    names = {
        "nightly-retrain",
        "retrain-on-new-data",
        "search-trials",
        "feedback-to-retrain",
        "online-gate",
        "prune-prediction-log",
    }
    assert set(served) == set(declared) == names
    for name, deployment in served.items():
        assert deployment.entrypoint.replace("\\", "/").endswith(declared[name]["entrypoint"])
    crons = [s["cron"] for s in declared["nightly-retrain"]["schedules"]]
    assert [s.schedule.cron for s in served["nightly-retrain"].schedules] == crons == ["0 2 * * *"]
    every = [s["interval"] for s in declared["feedback-to-retrain"]["schedules"]]
    minutes = parse_params(yaml.safe_load((REPO / "params.yaml").read_text())).feedback_export.check_every_minutes
    served_every = [s.schedule.interval.total_seconds() for s in served["feedback-to-retrain"].schedules]
    assert served_every == every == [minutes * 60]
    online = parse_params(yaml.safe_load((REPO / "params.yaml").read_text())).promotion.online_every_minutes
    declared_online = [s["interval"] for s in declared["online-gate"]["schedules"]]
    assert [s.schedule.interval.total_seconds() for s in served["online-gate"].schedules] == declared_online
    assert declared_online == [online * 60]
    retention = [s["cron"] for s in declared["prune-prediction-log"]["schedules"]]
    assert [s.schedule.cron for s in served["prune-prediction-log"].schedules] == retention == ["30 3 * * *"]


def test_drift_measures() -> None:
    same, _ = total_variation(pd.Series(["a", "b"] * 50), pd.Series(["b", "a"] * 10))
    assert same == pytest.approx(0.0)
    moved, detail = total_variation(pd.Series(["a"] * 80 + ["b"] * 20), pd.Series(["a"] * 20 + ["b"] * 80))
    assert moved == pytest.approx(0.6) and detail["current"] == {"a": 0.2, "b": 0.8}
    short, long = pd.Series(["x" * 10] * 50), pd.Series(["x" * 200] * 50)
    assert length_shift(short, long)[0] == pytest.approx(1.0) and length_shift(short, short)[0] == 0.0
    rng = np.random.default_rng(0)
    a = rng.normal(size=(100, 8)) + 5
    assert centroid_distance(a, a[::-1])[0] == pytest.approx(0.0, abs=1e-9)
    assert centroid_distance(a, -a)[0] == pytest.approx(2.0)


def test_feedback_rows_train_only_and_never_move_the_test_set() -> None:
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text())).model_copy(
        update={"split": parse_params(yaml.safe_load((REPO / "params.yaml").read_text())).split.model_copy(
            update={"train_subsample": 50, "val_subsample": None, "holdout_domains": []})}
    )  # fmt: skip
    words = ["good", "bad", "fine", "great", "awful", "okay", "nice", "poor"]
    base = pd.DataFrame(
        {
            "id": [f"b{i}" for i in range(400)],
            "text": [f"sentence {i} was {words[i % 8]}" for i in range(400)],
            "value": [(-2.0, 0.0, 2.0)[i % 3] for i in range(400)],
            "label": pd.Series([("negative", "neutral", "positive")[i % 3] for i in range(400)], dtype="string"),
            "domain": ["tweets"] * 400,
        }
    )
    before = prepare_splits(base, params)
    feedback = base.head(120).assign(
        id=[f"feedback:x:{i}" for i in range(120)],
        text=[f"new text {i} was {words[i % 8]}" for i in range(120)],
    )
    copy_of_test = (
        before.splits["test"]
        .head(3)[["id", "text", "value", "label", "domain"]]
        .assign(id=lambda f: "feedback:x:dup" + f["id"])
    )
    after = prepare_splits(pd.concat([base, feedback, copy_of_test], ignore_index=True), params)
    assert content_hash(after.splits["test"]) == content_hash(before.splits["test"])
    assert content_hash(after.splits["val"]) == content_hash(before.splits["val"])
    train_ids = set(after.splits["train"]["id"])
    assert {f"feedback:x:{i}" for i in range(120)} <= train_ids  # all of it, beyond the subsample of 50
    assert not any(i.startswith("feedback:x:dup") for i in train_ids)  # a copy of a test sentence is dropped
    assert after.stats["feedback_rows"] == 120
