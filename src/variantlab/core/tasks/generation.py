"""Generation (text to text): the model writes the answer; the gate is a per-example score's (chrF by default).

The raw schema's ``label`` column holds the answer each text should become (read from the task's
``target_column``). Answers are scored on what a model generated: exact match after the task's normalisation,
chrF and ROUGE-L (``core.textmetrics``), overall and per domain, with the ratio of output to target length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from variantlab.core.tasks.base import FeedbackRejected, TargetDrift, Task


@dataclass(frozen=True)
class Generation(Task):
    max_target_chars: int = 500
    normalise: tuple[str, ...] = ("unicode", "strip", "whitespace")
    invariance: bool = False  # a swapped name or number changes what an extraction should write

    kind: ClassVar[str] = "generation"
    target: ClassVar[str] = "label"
    metrics: ClassVar[tuple[str, ...]] = ("chrf", "exact_match", "rouge_l")
    default_floor: ClassVar[float | None] = None  # beating the copy and nearest baselines is the proof
    slice_metric: ClassVar[str] = "rouge_l"  # 0-1, as max_slice_drop is for F1: chrF is 0-100
    answer_type: ClassVar[str] = "string"
    problem_type: ClassVar[str] = "generation"
    headline: ClassVar[tuple[str, ...]] = ("chrf", "exact_match", "rouge_l", "length_ratio", "corpus_chrf")
    generative: ClassVar[bool] = True

    @classmethod
    def from_spec(cls, spec: Any, labels_seen: pd.Series | None, file: str) -> Task:
        return cls(
            strata=spec.strata,
            max_target_chars=spec.max_target_chars,
            normalise=tuple(spec.normalise),
        )

    @property
    def num_outputs(self) -> int:
        return 0  # no head: the model's vocabulary is the output

    def describe(self) -> str:
        return f"generation (text to text, targets of at most {self.max_target_chars} characters)"

    def y(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["label"].astype(str).to_numpy(dtype=object)

    def answers(self, values: Any, index: Any = None) -> pd.Series:
        return pd.Series(np.asarray(values, dtype=object), index=index).astype(str)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs, dtype=object)

    def output_meta(self, mean: float = 0.0, std: float = 1.0) -> dict[str, Any]:
        return {"task": self.kind, "classes": []}

    def strata_of(self, frame: pd.DataFrame) -> pd.Series:
        """The domain when the data has several; otherwise quantile bins of the target's length."""
        if frame.empty or frame["domain"].nunique() > 1:
            return frame["domain"].astype("string")
        lengths = frame["label"].astype(str).str.len()
        bins = min(self.strata, max(1, lengths.nunique()))
        ranked = lengths.rank(method="first")
        return pd.Series(pd.qcut(ranked, bins, labels=False), index=frame.index).astype("string")

    def linear_model(self, *, C: float, max_iter: int, seed: int, class_weight: str | None = None) -> Any:
        from variantlab.errors import ConfigError

        raise ConfigError("a generation task has no linear head: use copy, nearest, prompt, full or lora")

    # -- scoring ----------------------------------------------------------------------------------------------
    def score(self, truth: pd.DataFrame, predicted: pd.Series, **extra: Any) -> dict[str, Any]:
        """``extra``: ``scores``, the per-example scores of these answers (``example_scores``), if computed."""
        from variantlab.core.textmetrics import generation_metrics

        return generation_metrics(truth["label"], predicted, truth["domain"], self.normalise, extra.get("scores"))

    def example_scores(self, truth: pd.DataFrame, predicted: pd.Series) -> pd.DataFrame:
        """One row per example: exact match, chrF, ROUGE-L and both lengths."""
        from variantlab.core.textmetrics import example_scores

        return example_scores(truth["label"].astype(str).tolist(), predicted.astype(str).tolist(), self.normalise)

    def flat_metrics(self, metrics: dict[str, Any]) -> dict[str, float]:
        flat = {key: float(metrics[key]) for key in self.headline}
        for name, row in metrics["per_domain"].items():
            flat |= {f"{k}.{name}": float(row[k]) for k in ("chrf", "exact_match", "rouge_l")}
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
        from variantlab.core.statistics import paired_scores
        from variantlab.core.textmetrics import per_example

        targets = truth["label"].astype(str).tolist()
        return paired_scores(
            per_example(metric, targets, theirs.astype(str).tolist(), self.normalise),
            per_example(metric, targets, mine.astype(str).tolist(), self.normalise),
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )

    def validation_value(self, metric: str, targets: Any, outputs: Any) -> float:
        """The mean of ``metric`` over the examples: what a search and the choice of challenger compare."""
        from variantlab.core.textmetrics import per_example

        return float(per_example(metric, list(map(str, targets)), list(map(str, outputs)), self.normalise).mean())

    # -- data contract, feedback and drift ---------------------------------------------------------------------
    def target_view(self, raw: pd.DataFrame) -> dict[str, pd.Series]:
        return {"target": raw["label"].astype(object).where(raw["label"].notna(), None)}

    def target_expectations(self, cfg: Any) -> list[Any]:
        from variantlab.core.expectations import ExpectationSpec

        return [
            ExpectationSpec(
                "target_type",
                "ExpectColumnValuesToBeInTypeList",
                {"column": "target", "type_list": ["str"]},
                description="target is text",
            ),
            ExpectationSpec(
                "target_length",
                "ExpectColumnValueLengthsToBeBetween",
                {"column": "target", "min_value": 1, "max_value": self.max_target_chars},
                description=f"target has 1 to {self.max_target_chars} chars",
            ),
        ]

    def feedback_answer(self, payload: dict[str, Any]) -> tuple[str | None, float | None]:
        if "label" in payload or "value" in payload:
            raise FeedbackRejected(400, "this model writes text: send the corrected answer as 'answer'")
        answer = payload.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise FeedbackRejected(400, "'answer' must be the corrected answer (a non-empty string)")
        if len(answer.strip()) > self.max_target_chars:
            raise FeedbackRejected(
                422, f"'answer' has {len(answer.strip())} characters; the task allows {self.max_target_chars}"
            )
        return answer.strip(), None

    def default_min_effect(self, metric: str, test: pd.DataFrame) -> float:
        """One chrF point (chrF is 0-100); 0.01 of exact match or ROUGE-L."""
        return 1.0 if metric == "chrf" else 0.01

    def live_scores(self, truth: pd.DataFrame, answers: pd.Series, metric: str) -> np.ndarray:
        from variantlab.core.textmetrics import per_example

        targets = truth["label"].astype(str).tolist()
        return np.asarray(per_example(metric, targets, answers.astype(str).tolist(), self.normalise), dtype=np.float64)

    def live_answers(self, outputs: pd.Series) -> pd.Series:
        return outputs.dropna().astype(str)

    def target_drift(self, reference: pd.DataFrame, targets: pd.Series) -> TargetDrift:
        """The Kolmogorov-Smirnov statistic of the targets' lengths in characters."""
        from variantlab.core.drift import length_shift

        value, detail = length_shift(reference["label"], targets)
        return TargetDrift("target_length_shift", value, "max_target_shift", detail)
