"""The user's task as a value: which labels (or which numeric target) every stage trains, scores and serves.

``params.yaml``'s ``task:`` (a spec; ``labels: auto`` leaves the label set open) is resolved once, by
``prepare``, against the data into a ``Task`` of its kind (``variantlab.core.tasks``) whose label set is fixed,
and written beside the splits (``data/prepared/task.json``): the test set, every model, every report and the
gate read that one value. The label rule (a numeric column binned into labels, VADER's ratings for the default
task) is applied here and nowhere else.
"""

from __future__ import annotations

import json

import pandas as pd

from variantlab.config import ClassificationTask, GenerationTask, LabelRule, Params, RegressionTask
from variantlab.core.corpus import UserColumns
from variantlab.core.tasks import Classification, Generation, Regression, Task, higher_is_better, task_kind

__all__ = [
    "Classification",
    "Generation",
    "Regression",
    "Task",
    "apply_label_rule",
    "dumps",
    "higher_is_better",
    "resolve_task",
    "user_columns",
    "with_labels",
]


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
    if isinstance(spec, GenerationTask):  # the answer text goes where a label would
        return UserColumns(spec.target_column, None, None)
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
    """Freeze the task: its kind's ``from_spec`` against the labels of ``labels_seen`` (the ingested data)."""
    return task_kind(params.task.kind).from_spec(params.task, labels_seen, file)


def dumps(task: Task) -> str:
    return json.dumps(task.to_json(), indent=2, sort_keys=True)
