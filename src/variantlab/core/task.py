"""The user's task as a value: which labels (or which numeric target) every stage trains, scores and serves.

``params.yaml``'s ``task:`` (a spec; ``labels: auto`` leaves the label set open) is resolved once, by
``prepare``, against the data into a ``Task`` whose label set is fixed, and written beside the splits
(``data/prepared/task.json``): the test set, every model, every report and the gate read that one value.
The label rule (a numeric column binned into labels, VADER's ratings for the default task) is applied here and
nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from variantlab.config import (
    LOWER_IS_BETTER,
    MAX_LABELS,
    ClassificationTask,
    LabelRule,
    Params,
    RegressionTask,
)
from variantlab.core.corpus import UserColumns
from variantlab.errors import ConfigError, DataError


@dataclass(frozen=True)
class Task:
    kind: Literal["classification", "regression"]
    labels: tuple[str, ...] = ()  # classification: the fixed, ordered label set
    positive_label: str | None = None  # binary tasks
    value_range: tuple[float, float] | None = None
    value_column: str = "value"  # the user's name of the numeric column (regression target or label rule's)
    strata: int = 5
    invariance: bool = True
    polarity: tuple[str, str] | None = None  # (positive, negative): negation must move one to the other
    rule: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    @property
    def is_binary(self) -> bool:
        return self.is_classification and len(self.labels) == 2

    @property
    def num_outputs(self) -> int:
        """Width of a model's head: one logit per label, or one number."""
        return len(self.labels) if self.is_classification else 1

    @property
    def target(self) -> str:
        """The column of a split that holds what the models learn: ``label``, or ``value`` for regression."""
        return "label" if self.is_classification else "value"

    def describe(self) -> str:
        if self.is_classification:
            kind = "binary" if self.is_binary else f"{len(self.labels)}-class"
            return f"{kind} classification ({', '.join(self.labels)})"
        low, high = self.value_range or (float("-inf"), float("inf"))
        return f"regression (target in [{low:g}, {high:g}])"

    def codes(self, labels: pd.Series) -> np.ndarray:
        """Integer codes in ``labels`` order (the head's output order)."""
        index = {name: i for i, name in enumerate(self.labels)}
        return labels.astype(str).map(index).to_numpy(dtype=np.int64)

    def y(self, frame: pd.DataFrame) -> np.ndarray:
        """What a model learns from a split: label codes, or the numeric target."""
        if self.is_classification:
            return self.codes(frame["label"])
        return frame["value"].to_numpy(dtype=np.float64)

    def strata_of(self, frame: pd.DataFrame) -> pd.Series:
        """The stratum of each row for subsampling: its label, or its quantile bin of the target."""
        if self.is_classification or frame.empty:
            return frame["label"].astype("string")
        bins = min(self.strata, max(1, frame["value"].nunique()))
        ranked = frame["value"].rank(method="first")
        return pd.Series(pd.qcut(ranked, bins, labels=False), index=frame.index).astype("string")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        data = dict(data)
        for key in ("labels", "value_range", "polarity"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def apply_label_rule(values: pd.Series, rule: LabelRule) -> pd.Series:
    """The label of each value: the first bin whose [min, max] holds it (missing values stay missing)."""
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    for b in rule.bins:
        inside = values.notna() & out.isna()
        if b.min is not None:
            inside &= values >= b.min
        if b.max is not None:
            inside &= values <= b.max
        out = out.mask(inside, b.label)
    return out


def user_columns(params: Params) -> UserColumns:
    """The columns a user file must bring for this task."""
    spec = params.task
    if isinstance(spec, RegressionTask):
        return UserColumns(None, spec.target_column, None)
    rule = spec.label_rule.column if spec.label_rule else None
    return UserColumns(spec.label_column, rule, None if spec.labels == "auto" else tuple(spec.labels))


def with_labels(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The raw frame with each missing label derived by the task's label rule, if it declares one."""
    spec = params.task
    if not isinstance(spec, ClassificationTask) or spec.label_rule is None or frame.empty:
        return frame
    derived = apply_label_rule(frame["value"], spec.label_rule)
    return frame.assign(label=frame["label"].astype("string").fillna(derived))


def resolve_task(params: Params, labels_seen: pd.Series | None = None, *, file: str = "") -> Task:
    """Freeze the task: ``labels: auto`` becomes the sorted labels of ``labels_seen`` (the ingested data)."""
    spec = params.task
    behaviour = spec.behaviour
    if isinstance(spec, RegressionTask):
        return Task(
            "regression",
            value_range=spec.value_range,
            value_column=spec.target_column,
            strata=spec.strata,
            invariance=behaviour.invariance,
        )
    if spec.labels != "auto":
        labels = tuple(spec.labels)
    else:
        if labels_seen is None:
            raise ConfigError("task.labels is auto: the label set is known only after prepare", file="params.yaml")
        labels = tuple(sorted(set(labels_seen.dropna().astype(str))))
        if len(labels) < 2:
            raise DataError(
                f"task.labels is auto but the data holds {len(labels)} label(s) {list(labels)}: "
                "a classifier needs at least 2",
                file=file,
                column=spec.label_column,
            )
        if len(labels) > MAX_LABELS:
            raise DataError(
                f"task.labels is auto but the data holds {len(labels)} labels (at most {MAX_LABELS}); "
                f"first ones: {list(labels[:5])}",
                file=file,
                column=spec.label_column,
            )
    positive = spec.positive_label or (labels[1] if len(labels) == 2 else None)
    if positive is not None and positive not in labels:
        raise ConfigError(f"task.positive_label '{positive}' is not one of {list(labels)}", file="params.yaml")
    polarity = (behaviour.polarity.positive, behaviour.polarity.negative) if behaviour.polarity else None
    if polarity and not set(polarity) <= set(labels):
        raise ConfigError(f"task.behaviour.polarity names labels outside {list(labels)}", file="params.yaml")
    return Task(
        "classification",
        labels=labels,
        positive_label=positive,
        value_range=spec.value_range,
        value_column=spec.label_rule.column if spec.label_rule else "value",
        invariance=behaviour.invariance,
        polarity=polarity,
        rule=spec.label_rule.model_dump() if spec.label_rule else None,
    )


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def dumps(task: Task) -> str:
    return json.dumps(task.to_json(), indent=2, sort_keys=True)
