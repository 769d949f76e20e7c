import pandas as pd
import pytest

from tests.helpers import REPO, raw_sentences, tiny_sentences
from variantlab.config import load_params, parse_params
from variantlab.core.dataset import prepare_splits
from variantlab.core.preprocessing import (
    assign_splits,
    check_leakage,
    clean_text,
    content_hash,
    deduplicate,
    normalise_text,
    stratified_subsample,
)
from variantlab.core.task import apply_label_rule
from variantlab.errors import DataError, LeakageError


def test_clean_and_normalise() -> None:
    assert clean_text("  Fish &amp; chips\u00a0 rock ") == "Fish & chips rock"
    assert normalise_text("GREAT movie!!!") == normalise_text("great   movie")


def test_label_thresholds_are_inclusive() -> None:
    rule = load_params(REPO / "params.yaml").task.label_rule
    labels = apply_label_rule(pd.Series([-0.5, -0.49, 0.49, 0.5, float("nan")]), rule)
    assert labels.tolist()[:4] == ["negative", "neutral", "neutral", "positive"]
    assert pd.isna(labels.iloc[4])


def test_deduplicate_exact_then_normalised() -> None:
    raw = pd.DataFrame(
        {
            "id": list("abcde"),
            "text": ["Good!", "Good!", "good", "other", "!!!"],
            "value": [1.0] * 5,
            "label": [None] * 5,
            "domain": ["tweets"] * 5,
        }
    )
    out = deduplicate(raw)
    assert (out.exact_duplicates, out.normalised_duplicates, out.without_words) == (1, 1, 1)
    assert list(out.frame["id"]) == ["a", "d"]


def test_split_is_deterministic_and_stable_when_rows_are_added() -> None:
    frame = deduplicate(tiny_sentences(300).assign(label=None)).frame
    split = assign_splits(frame, 0.2, 0.1, "salt")
    more = deduplicate(
        pd.concat([tiny_sentences(300), tiny_sentences(600, seed=7).iloc[300:]]).assign(label=None)
    ).frame
    split_more = assign_splits(more, 0.2, 0.1, "salt")
    test_before = set(frame["norm"][split == "test"])
    test_after = set(more["norm"][split_more == "test"])
    assert test_before and test_before <= test_after
    assert test_after - test_before <= set(more["norm"].iloc[len(frame) :])
    assert 0.1 < (split == "test").mean() < 0.3


def test_leakage_check_catches_shared_text() -> None:
    a = pd.DataFrame({"norm": ["x", "y"]})
    with pytest.raises(LeakageError, match="'y' is in both train and test"):
        check_leakage({"train": a, "test": pd.DataFrame({"norm": ["y"]})})


def test_content_hash_ignores_row_order() -> None:
    frame = pd.DataFrame({"id": ["1", "2"], "text": ["a", "b"], "label": ["positive", "negative"]})
    assert content_hash(frame) == content_hash(frame.iloc[::-1])
    assert content_hash(frame) != content_hash(frame.assign(label=["positive", "positive"]))


def test_stratified_subsample_keeps_proportions() -> None:
    labels = ["a"] * 800 + ["b"] * 200
    frame = pd.DataFrame({"id": [str(i) for i in range(1000)], "label": labels, "stratum": labels, "domain": "d"})
    picked = stratified_subsample(frame, 100, seed=1)
    assert len(picked) == 100
    assert picked["label"].value_counts().to_dict() == {"a": 80, "b": 20}


def test_prepare_splits_disjoint_and_complete() -> None:
    params = load_params(REPO / "params.yaml")
    raw = raw_sentences(400)
    prepared = prepare_splits(raw, params)
    ids = [set(part["id"]) for part in prepared.splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(prepared.stats["available"].values()) == prepared.stats["rows_after_dedup"] == 400
    assert prepared.stats["test_sha256"] == content_hash(prepared.splits["test"])


def _params_with(task: dict) -> object:
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["task"] = task
    raw["promotion"]["metric"] = None  # the task's own default
    raw["split"].update({"train_subsample": None, "val_subsample": None, "holdout_domains": []})
    return parse_params(raw)


def test_auto_labels_are_frozen_sorted_from_the_data() -> None:
    params = _params_with({"kind": "classification", "labels": "auto"})
    raw = raw_sentences(400).assign(label=[("zebra", "apple", "mango", "kiwi")[i % 4] for i in range(400)])
    prepared = prepare_splits(raw, params)
    assert prepared.task.labels == ("apple", "kiwi", "mango", "zebra")
    assert list(prepared.stats["task"]["labels"]) == ["apple", "kiwi", "mango", "zebra"]


def test_auto_labels_on_one_class_is_refused() -> None:
    params = _params_with({"kind": "classification", "labels": "auto"})
    with pytest.raises(DataError, match=r"task.labels is auto but the data holds 1 label\(s\) \['only'\]"):
        prepare_splits(raw_sentences(100).assign(label="only"), params)


def test_a_class_too_small_for_every_split_is_named() -> None:
    params = _params_with({"kind": "classification", "labels": "auto"})
    raw = raw_sentences(400).assign(label=["big"] * 399 + ["rare"])
    with pytest.raises(DataError, match=r"column 'label'.*'rare' \(train \d, val \d, test \d\) too few"):
        prepare_splits(raw, params)


def test_regression_stratifies_by_target_bins() -> None:
    params = _params_with({"kind": "regression", "target_column": "rating", "strata": 4})
    raw = raw_sentences(400).assign(label=pd.NA)
    prepared = prepare_splits(raw, params)
    train = prepared.splits["train"]
    assert prepared.task.kind == "regression" and train["label"].isna().all()
    assert sorted(train["stratum"].unique()) == ["0", "1", "2", "3"]  # quartiles of the target
