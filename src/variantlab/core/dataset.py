"""From validated raw sentences to the train / val / test splits (pure: frames in, frames out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from variantlab.config import Params
from variantlab.core.preprocessing import (
    assign_splits,
    check_leakage,
    content_hash,
    deduplicate,
    split_report,
    stratified_subsample,
)
from variantlab.core.task import Task, resolve_task
from variantlab.core.tasks import task_kind
from variantlab.errors import DataError
from variantlab.paths import FEEDBACK_ID_PREFIX, RAW

SPLIT_COLUMNS = ["id", "text", "label", "value", "domain", "norm", "stratum"]


@dataclass
class PreparedData:
    splits: dict[str, pd.DataFrame]
    task: Task
    stats: dict[str, Any] = field(default_factory=dict)


def _check_every_class_in_every_split(full: dict[str, pd.DataFrame], task: Task) -> None:
    """A class missing from a split cannot be learned (train), chosen on (val) or scored (test)."""
    missing = task.check_splits(full)
    if missing:
        raise DataError(
            f"class(es) {', '.join(missing)} too few to appear in every split: give each class more rows "
            "(a few dozen at least) or drop it",
            file=str(RAW),
            column="label",
        )


def prepare_splits(raw: pd.DataFrame, params: Params) -> PreparedData:
    dedup = deduplicate(raw)
    frame = dedup.frame
    frame = frame[frame[task_kind(params.task.kind).target].notna()]
    task = resolve_task(params, frame["label"], file=str(RAW))
    frame = frame.assign(stratum=task.strata_of(frame))
    split = assign_splits(frame, params.split.test_fraction, params.split.val_fraction, params.split.salt)
    # Accepted feedback is training data: it never enters val or test (base rows win deduplication, so a
    # feedback copy of a test sentence is dropped), and the frozen test set does not move when it arrives.
    feedback = frame["id"].astype(str).str.startswith(FEEDBACK_ID_PREFIX).to_numpy()
    split = split.where(~feedback, "train")
    full = {name: frame[split == name] for name in ("train", "val", "test")}
    check_leakage(full)
    _check_every_class_in_every_split(full, task)
    # Held-out domains stay out of training only: validation keeps them like the test set does, so a variant
    # chosen on validation is chosen on the task's whole distribution (adding a domain's data can show there).
    held = {"train": full["train"]["domain"].isin(params.split.holdout_domains)}
    is_feedback = full["train"]["id"].astype(str).str.startswith(FEEDBACK_ID_PREFIX)
    base_train = full["train"][~held["train"] & ~is_feedback]
    splits = {
        "train": pd.concat(
            [
                stratified_subsample(base_train, params.split.train_subsample, params.project.seed),
                full["train"][is_feedback],  # all of it, whatever the subsample
            ]
        ),
        "val": stratified_subsample(full["val"], params.split.val_subsample, params.project.seed),
        "test": full["test"].sort_values("id"),  # the test set is never subsampled and keeps every domain
        "extra": full["train"][held["train"] & ~is_feedback].sort_values("id"),  # for a more-data variant
    }
    splits = {name: part[SPLIT_COLUMNS].reset_index(drop=True) for name, part in splits.items()}
    stats: dict[str, Any] = {
        "raw_rows": len(raw),
        "exact_duplicates": dedup.exact_duplicates,
        "normalised_duplicates": dedup.normalised_duplicates,
        "texts_without_words": dedup.without_words,
        "rows_after_dedup": len(frame),
        "available": {name: len(part) for name, part in full.items()},
        "rows": {name: len(part) for name, part in splits.items()},
        "feedback_rows": int(is_feedback.sum()),
        "task": task.to_json(),
        "class_balance": {
            name: {
                str(k): round(float(v), 4) for k, v in part["stratum"].value_counts(normalize=True).sort_index().items()
            }
            for name, part in splits.items()
        },
        "test_sha256": content_hash(splits["test"]),
        "stratum_fractions": split_report(frame, split),
    }
    return PreparedData(splits, task, stats)
