"""Property-based tests (hypothesis) of the preprocessing: for any input frame, the splits are disjoint, every
row is accounted for, and the frozen test set does not change when training data is added."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from variantlab.config import parse_params
from variantlab.core.dataset import PreparedData, prepare_splits
from variantlab.core.preprocessing import content_hash, normalise_text
from variantlab.core.task import with_labels
from variantlab.errors import DataError
from variantlab.paths import FEEDBACK_ID_PREFIX

REPO = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
RAW["split"].update({"train_subsample": None, "val_subsample": None, "holdout_domains": []})
PARAMS = parse_params(RAW)
WORDS = ["good", "Bad", "fine", "GREAT", "awful", "ok", "the", "film", "!", "  ", "café", "<b>", "&amp;"]
DOMAINS = ["tweets", "movie_reviews", "amazon_reviews", "nyt_editorials"]

rows = st.lists(
    st.tuples(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
        st.floats(min_value=-4, max_value=4, allow_nan=False),
        st.sampled_from(DOMAINS),
    ),
    min_size=1,
    max_size=120,
)


def frame_of(items: list[tuple[str, float, str]], prefix: str = "r") -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": [f"{prefix}{i}" for i in range(len(items))],
            "text": [t for t, _, _ in items],
            "value": [r for _, r, _ in items],
            "label": pd.Series([None] * len(items), dtype="string"),
            "domain": [d for _, _, d in items],
        }
    )
    return with_labels(frame, PARAMS)  # as ingest leaves it: labelled by the rating rule


def prepared_or_refused(raw: pd.DataFrame) -> PreparedData | None:
    """The splits, or None where prepare refused because a class would miss a split (checked to be true)."""
    try:
        return prepare_splits(raw, PARAMS)
    except DataError as exc:
        assert "too few to appear in every split" in str(exc), exc
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows)
def test_splits_are_disjoint_and_every_row_is_accounted_for(items: list[tuple[str, float, str]]) -> None:
    raw = frame_of(items)
    prepared = prepared_or_refused(raw)
    if prepared is None:
        return
    splits, stats = prepared.splits, prepared.stats
    ids = {name: set(part["id"]) for name, part in splits.items()}
    norms = {name: set(part["norm"]) for name, part in splits.items()}
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not ids[a] & ids[b], (a, b)
            assert not norms[a] & norms[b], (a, b)
    kept = sum(len(part) for part in splits.values())
    unlabelled = stats["rows_after_dedup"] - sum(stats["available"].values())
    dropped = stats["exact_duplicates"] + stats["normalised_duplicates"] + stats["texts_without_words"]
    assert stats["rows_after_dedup"] + dropped == len(raw)
    assert kept + unlabelled == stats["rows_after_dedup"]  # nothing silently lost
    distinct = {normalise_text(t) for t in raw["text"]} - {""}
    assert stats["rows_after_dedup"] == len(distinct)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, rows)
def test_adding_training_data_never_changes_the_test_set(
    base: list[tuple[str, float, str]], extra: list[tuple[str, float, str]]
) -> None:
    raw = frame_of(base)
    prepared = prepared_or_refused(raw)
    if prepared is None:
        return
    before = prepared.splits["test"]
    more = pd.concat([raw, frame_of(extra, prefix=f"{FEEDBACK_ID_PREFIX}x:")], ignore_index=True)
    after = prepare_splits(more, PARAMS).splits  # feedback only adds training rows: no class can go missing
    assert content_hash(after["test"]) == content_hash(before)
    assert not after["test"]["id"].str.startswith(FEEDBACK_ID_PREFIX).any()
