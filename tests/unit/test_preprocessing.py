import pandas as pd
import pytest

from tests.helpers import REPO, tiny_sentences
from variantlab.config import load_params
from variantlab.core.dataset import prepare_splits
from variantlab.core.preprocessing import (
    assign_splits,
    check_leakage,
    clean_text,
    content_hash,
    deduplicate,
    label_from_rating,
    normalise_text,
    stratified_subsample,
)
from variantlab.errors import LeakageError


def test_clean_and_normalise() -> None:
    assert clean_text("  Fish &amp; chips\u00a0 rock ") == "Fish & chips rock"
    assert normalise_text("GREAT movie!!!") == normalise_text("great   movie")


def test_label_thresholds_are_inclusive() -> None:
    labels = label_from_rating(pd.Series([-0.5, -0.49, 0.49, 0.5, float("nan")]), -0.5, 0.5)
    assert labels.tolist()[:4] == ["negative", "neutral", "neutral", "positive"]
    assert pd.isna(labels.iloc[4])


def test_deduplicate_exact_then_normalised() -> None:
    raw = pd.DataFrame(
        {
            "id": list("abcde"),
            "text": ["Good!", "Good!", "good", "other", "!!!"],
            "rating": [1.0] * 5,
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
    frame = pd.DataFrame({"id": [str(i) for i in range(1000)], "label": ["a"] * 800 + ["b"] * 200, "domain": "d"})
    picked = stratified_subsample(frame, 100, seed=1)
    assert len(picked) == 100
    assert picked["label"].value_counts().to_dict() == {"a": 80, "b": 20}


def test_prepare_splits_disjoint_and_complete() -> None:
    params = load_params(REPO / "params.yaml")
    raw = tiny_sentences(400).assign(label=pd.Series([None] * 400, dtype="string"))
    prepared = prepare_splits(raw, params)
    ids = [set(part["id"]) for part in prepared.splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(prepared.stats["available"].values()) == prepared.stats["rows_after_dedup"] == 400
    assert prepared.stats["test_sha256"] == content_hash(prepared.splits["test"])
