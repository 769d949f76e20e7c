"""The task kinds, registered by name: ``task.kind`` in params.yaml and in ``task.json`` picks one.

Adding a kind: a module here with a ``Task`` subclass, one line in ``TASK_KINDS``, and its ``task:`` spec in
``variantlab.config``.
"""

from __future__ import annotations

from typing import Any

from variantlab.core.tasks.base import FeedbackRejected, TargetDrift, Task
from variantlab.core.tasks.classification import Classification
from variantlab.core.tasks.generation import Generation
from variantlab.core.tasks.regression import Regression

TASK_KINDS: dict[str, type[Task]] = {cls.kind: cls for cls in (Classification, Regression, Generation)}


def task_kind(name: str) -> type[Task]:
    if name not in TASK_KINDS:
        raise ValueError(f"unknown task kind '{name}' (known: {', '.join(TASK_KINDS)})")
    return TASK_KINDS[name]


def task_from_json(data: dict[str, Any]) -> Task:
    """A task stored by ``Task.to_json`` (``task.json``, a model's MLmodel metadata)."""
    data = dict(data)
    cls = task_kind(str(data.pop("kind", "classification")))
    for key in ("labels", "value_range", "polarity", "normalise"):
        if data.get(key) is not None:
            data[key] = tuple(data[key])
    return cls(**data)


def higher_is_better(metric: str) -> bool:
    return not any(metric in cls.lower_is_better for cls in TASK_KINDS.values())


__all__ = [
    "TASK_KINDS",
    "Classification",
    "FeedbackRejected",
    "Generation",
    "Regression",
    "TargetDrift",
    "Task",
    "higher_is_better",
    "task_from_json",
    "task_kind",
]
