"""What every task kind is: a frozen value (the resolved task) whose methods do what differs between kinds.

Code outside the kinds asks the task (``task.answers(...)``, ``task.score(...)``, ``task.paired_test(...)``);
it never branches on which kind it holds. A new kind is one module beside this one, a subclass of ``Task``,
registered in ``variantlab.core.tasks.TASK_KINDS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd


class FeedbackRejected(ValueError):
    """A feedback body that does not fit the task: ``status`` is the HTTP status it deserves (400 or 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TargetDrift:
    """How far the target (labels, or numbers) of new data moved from the training split's."""

    name: str
    value: float
    limit_key: str  # the key of params.yaml's ``feedback:`` that holds the threshold
    detail: dict[str, Any]


@dataclass(frozen=True)
class Task(ABC):
    """The user's task, resolved against the data: which labels (or which numeric target) the models learn."""

    labels: tuple[str, ...] = ()  # classification: the fixed, ordered label set
    positive_label: str | None = None  # binary tasks
    value_range: tuple[float, float] | None = None
    value_column: str = "value"  # the user's name of the numeric column (regression target or label rule's)
    strata: int = 5
    invariance: bool = True
    polarity: tuple[str, str] | None = None  # (positive, negative): negation must move one to the other
    rule: dict[str, Any] | None = field(default=None, compare=False)

    kind: ClassVar[str]
    target: ClassVar[str]  # the column of a split that holds what the models learn
    metrics: ClassVar[tuple[str, ...]]  # what promotion.metric may name; the first is the default
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    default_floor: ClassVar[float | None] = None  # the first champion's metric must reach it
    slice_metric: ClassVar[str]  # the per-domain score the gate guards
    answer_type: ClassVar[str]  # the MLflow signature's output type
    problem_type: ClassVar[str]  # what a transformers sequence-classification head trains for (its loss)
    headline: ClassVar[tuple[str, ...]]  # the overall test metrics the leaderboard shows, in order
    generative: ClassVar[bool] = False  # the model writes its answer (text) instead of scoring outputs

    # -- identity ---------------------------------------------------------------------------------------------
    @property
    def default_metric(self) -> str:
        return self.metrics[0]

    def higher_is_better(self, metric: str) -> bool:
        return metric not in self.lower_is_better

    @property
    @abstractmethod
    def num_outputs(self) -> int:
        """Width of a model's head: one logit per label, or one number."""

    @property
    def is_binary(self) -> bool:
        return False

    @abstractmethod
    def describe(self) -> str: ...

    # -- targets and answers ----------------------------------------------------------------------------------
    @abstractmethod
    def y(self, frame: pd.DataFrame) -> np.ndarray:
        """What a model learns from a split: label codes, or the numeric target."""

    @abstractmethod
    def answers(self, values: Any, index: Any = None) -> pd.Series:
        """Answers in the task's own terms (labels as strings, numbers as floats): what pyfunc models return."""

    @abstractmethod
    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """A head's raw outputs (rows x num_outputs) as what ``y`` holds: label codes, or numbers."""

    def code_labels(self) -> list[int] | None:
        """The codes ``decode`` answers in, for metrics over codes (None: not a label task)."""
        return None

    def standardiser(self, train: pd.DataFrame) -> tuple[float, float]:
        """(mean, std) a head trains on: targets are standardised where the kind needs it."""
        return 0.0, 1.0

    def scaled_y(self, frame: pd.DataFrame, mean: float, std: float) -> np.ndarray:
        """What a head trains on: ``y``, standardised by ``standardiser``'s (mean, std) where the kind needs it."""
        return self.y(frame)

    def metric_unit(self, metric: str, std: float) -> float:
        """What a validation value computed on standardised targets is multiplied by to be in the target's units."""
        return 1.0

    @abstractmethod
    def output_meta(self, mean: float = 0.0, std: float = 1.0) -> dict[str, Any]:
        """What a served model needs to turn its head's output into the task's answer."""

    @abstractmethod
    def strata_of(self, frame: pd.DataFrame) -> pd.Series:
        """The stratum of each row for subsampling."""

    @abstractmethod
    def linear_model(self, *, C: float, max_iter: int, seed: int, class_weight: str | None = None) -> Any:
        """The scikit-learn estimator of the TF-IDF baseline and of a probe's head."""

    def linear_head(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) of a fitted ``linear_model``: one row per output."""
        weight = np.atleast_2d(np.asarray(model.coef_, dtype=np.float32))
        bias = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float32))
        return weight, bias

    # -- scoring: the one path evaluate, promote and verify take -----------------------------------------------
    @abstractmethod
    def score(self, truth: pd.DataFrame, predicted: pd.Series, **extra: Any) -> dict[str, Any]:
        """Test metrics of ``predicted`` against ``truth`` (a split: target and ``domain``), overall and per slice."""

    @abstractmethod
    def flat_metrics(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The scalar metrics of ``score`` that MLflow logs and ``verify`` recomputes."""

    def slices(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The guarded slices of ``score``'s metrics: the slice metric of each domain (and F1 of each class)."""
        return {f"domain/{k}": float(v[self.slice_metric]) for k, v in metrics["per_domain"].items()}

    @abstractmethod
    def paired_test(
        self,
        truth: pd.DataFrame,
        theirs: pd.Series,
        mine: pd.Series,
        *,
        metric: str,
        n_bootstrap: int,
        confidence: float,
        seed: int,
    ) -> Any:
        """The gate's paired comparison of two models' answers on the same rows (a ``PairedComparison``)."""

    def default_min_effect(self, metric: str, test: pd.DataFrame) -> float:
        """The gain worth detecting when params.yaml names none: one point of a 0-1 metric."""
        return 0.01

    def slice_tests(
        self,
        truth: pd.DataFrame,
        theirs: pd.Series,
        mine: pd.Series,
        *,
        n_bootstrap: int,
        confidence: float,
        seed: int,
    ) -> dict[str, Any]:
        """Each guarded slice's paired comparison (the change of its slice metric, with an interval): the
        domains, on their own rows. Keys as ``slices`` names them."""
        out: dict[str, Any] = {}
        theirs, mine = theirs.reset_index(drop=True), mine.reset_index(drop=True)
        frame = truth.reset_index(drop=True)
        for domain, rows in frame.groupby(frame["domain"].astype(str)).indices.items():
            out[f"domain/{domain}"] = self.paired_test(
                frame.iloc[rows],
                theirs.iloc[rows],
                mine.iloc[rows],
                metric=self.slice_metric,
                n_bootstrap=n_bootstrap,
                confidence=confidence,
                seed=seed,
            )
        return out

    def live_scores(self, truth: pd.DataFrame, answers: pd.Series, metric: str) -> np.ndarray:
        """Each live answer's score against the feedback (``truth``: its ``label`` and ``value``), higher better:
        right or wrong for labels; what the online gate's sign test compares."""
        return (answers.astype(str).to_numpy() == truth["label"].astype(str).to_numpy()).astype(np.float64)

    def validation_value(self, metric: str, targets: Any, outputs: Any) -> float:
        """``metric`` of answers ``outputs`` against ``targets`` (as ``y`` holds them): a search's objective."""
        from variantlab.core.metrics import metric_value

        return metric_value(metric, targets, outputs, self.code_labels())

    def behaviour_tolerance(self, test: pd.DataFrame) -> float | None:
        """How much an answer may move and still count as unchanged (None: it must be equal)."""
        return None

    def check_splits(self, splits: dict[str, pd.DataFrame]) -> list[str]:
        """What a split lacks that the task needs (each a short phrase); empty when all is well."""
        return []

    # -- data contract, feedback and drift ---------------------------------------------------------------------
    @abstractmethod
    def target_view(self, raw: pd.DataFrame) -> dict[str, pd.Series]:
        """The columns the validation suite checks besides the raw ones: ``target``, and the kind's own."""

    @abstractmethod
    def target_expectations(self, cfg: Any) -> list[Any]:
        """The validation suite's checks of ``target`` (``core.expectations.ExpectationSpec``s): its type, its
        label set and class floors, or its length. ``cfg``: params.yaml's ``validation:``."""

    @abstractmethod
    def feedback_answer(self, payload: dict[str, Any]) -> tuple[str | None, float | None]:
        """(label, value) of a feedback body; raises ``FeedbackRejected`` when it does not fit the task."""

    @abstractmethod
    def live_answers(self, outputs: pd.Series) -> pd.Series:
        """What a logged prediction answered, in the target's terms, for live drift."""

    @abstractmethod
    def target_drift(self, reference: pd.DataFrame, targets: pd.Series) -> TargetDrift: ...

    # -- resolution and storage --------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_spec(cls, spec: Any, labels_seen: pd.Series | None, file: str) -> Task:
        """Freeze params.yaml's ``task:`` spec of this kind against the ingested data."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        from variantlab.core.tasks import task_from_json

        return task_from_json(data)
