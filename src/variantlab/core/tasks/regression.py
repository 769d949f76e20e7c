"""Regression on a numeric target: answers are numbers, the gate is MAE's (or RMSE's, R²'s, Spearman's)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from variantlab.core.tasks.base import FeedbackRejected, TargetDrift, Task


@dataclass(frozen=True)
class Regression(Task):
    kind: ClassVar[str] = "regression"
    target: ClassVar[str] = "value"
    metrics: ClassVar[tuple[str, ...]] = ("mae", "rmse", "r2", "spearman")
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"mae", "rmse"})
    default_floor: ClassVar[float | None] = None  # an error's scale is the user's: no absolute floor by default
    slice_metric: ClassVar[str] = "mae"
    answer_type: ClassVar[str] = "double"
    problem_type: ClassVar[str] = "regression"
    headline: ClassVar[tuple[str, ...]] = ("mae", "rmse", "r2", "spearman")

    @classmethod
    def from_spec(cls, spec: Any, labels_seen: pd.Series | None, file: str) -> Task:
        return cls(
            value_range=spec.value_range,
            value_column=spec.target_column,
            strata=spec.strata,
            invariance=spec.behaviour.invariance,
        )

    @property
    def num_outputs(self) -> int:
        return 1

    def describe(self) -> str:
        low, high = self.value_range or (float("-inf"), float("inf"))
        return f"regression (target in [{low:g}, {high:g}])"

    def y(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["value"].to_numpy(dtype=np.float64)

    def answers(self, values: Any, index: Any = None) -> pd.Series:
        return pd.Series(np.asarray(values, dtype=np.float64), index=index)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs)[:, 0]

    def standardiser(self, train: pd.DataFrame) -> tuple[float, float]:
        """A price in dollars and a rating in [-4, 4] alike train on the standardised target."""
        return float(train["value"].mean()), float(train["value"].std() or 1.0)

    def scaled_y(self, frame: pd.DataFrame, mean: float, std: float) -> np.ndarray:
        return (self.y(frame) - mean) / std

    def metric_unit(self, metric: str, std: float) -> float:
        return std if metric in ("mae", "rmse") else 1.0

    def output_meta(self, mean: float = 0.0, std: float = 1.0) -> dict[str, Any]:
        return {"task": self.kind, "classes": [], "target_mean": mean, "target_std": std}

    def strata_of(self, frame: pd.DataFrame) -> pd.Series:
        """Quantile bins of the target."""
        if frame.empty:
            return frame["label"].astype("string")
        bins = min(self.strata, max(1, frame["value"].nunique()))
        ranked = frame["value"].rank(method="first")
        return pd.Series(pd.qcut(ranked, bins, labels=False), index=frame.index).astype("string")

    def linear_model(self, *, C: float, max_iter: int, seed: int, class_weight: str | None = None) -> Any:
        """Ridge regression whose ``alpha`` is ``1 / C``: one knob means "less regularisation" for both kinds."""
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0 / C, max_iter=max_iter, random_state=seed)

    # -- scoring ----------------------------------------------------------------------------------------------
    def score(self, truth: pd.DataFrame, predicted: pd.Series, **extra: Any) -> dict[str, Any]:
        from variantlab.core.metrics import regression_metrics

        return regression_metrics(truth["value"], predicted.to_numpy(dtype=np.float64), truth["domain"])

    def flat_metrics(self, metrics: dict[str, Any]) -> dict[str, float]:
        flat = {key: float(metrics[key]) for key in self.headline}
        for name, row in metrics["per_domain"].items():
            flat |= {f"{k}.{name}": float(row[k]) for k in ("mae", "rmse")}
        return flat

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
        from variantlab.core.statistics import paired_regression

        return paired_regression(
            truth["value"].to_numpy(),
            theirs.to_numpy(),
            mine.to_numpy(),
            metric=metric,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )

    def behaviour_tolerance(self, test: pd.DataFrame) -> float | None:
        """A number "does not change" within 5% of the test targets' spread."""
        return 0.05 * float(test["value"].std() or 1.0)

    # -- data contract, feedback and drift ---------------------------------------------------------------------
    def target_view(self, raw: pd.DataFrame) -> dict[str, pd.Series]:
        return {"target": raw["value"].astype("float64")}

    def target_expectations(self, cfg: Any) -> list[Any]:
        from variantlab.core.expectations import ExpectationSpec

        return [
            ExpectationSpec(
                "target_type",
                "ExpectColumnValuesToBeInTypeList",
                {"column": "target", "type_list": ["float", "float64", "float32"]},
                description="target is a number",
            )
        ]

    def feedback_answer(self, payload: dict[str, Any]) -> tuple[str | None, float | None]:
        if "label" in payload:
            raise FeedbackRejected(400, "this model predicts a number: send 'value', not 'label'")
        value = payload.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise FeedbackRejected(400, "'value' must be a finite number (the true target)")
        if self.value_range is not None:
            low, high = self.value_range
            if not low <= value <= high:
                raise FeedbackRejected(422, f"value {value} is outside the task's range [{low:g}, {high:g}]")
        return None, float(value)

    def default_min_effect(self, metric: str, test: pd.DataFrame) -> float:
        """MAE and RMSE are in the user's units: 2% of the test target's standard deviation."""
        if metric in self.lower_is_better:
            spread = float(pd.to_numeric(test["value"], errors="coerce").std())
            return 0.02 * spread if spread > 0 else 0.01
        return 0.01

    def live_scores(self, truth: pd.DataFrame, answers: pd.Series, metric: str) -> np.ndarray:
        """Minus each answer's absolute error: the closer model wins the pair."""
        values = pd.to_numeric(answers, errors="coerce").to_numpy(dtype=np.float64)
        return -np.abs(values - truth["value"].to_numpy(dtype=np.float64))

    def live_answers(self, outputs: pd.Series) -> pd.Series:
        return pd.to_numeric(outputs, errors="coerce").dropna()

    def target_drift(self, reference: pd.DataFrame, targets: pd.Series) -> TargetDrift:
        from variantlab.core.drift import target_shift

        value, detail = target_shift(reference["value"], targets)
        return TargetDrift("target_shift", value, "max_target_shift", detail)
