"""Classification over the user's labels (binary or multi-class): answers are labels, the gate is macro-F1's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from variantlab.core.tasks.base import FeedbackRejected, TargetDrift, Task


@dataclass(frozen=True)
class Classification(Task):
    kind: ClassVar[str] = "classification"
    target: ClassVar[str] = "label"
    metrics: ClassVar[tuple[str, ...]] = ("macro_f1", "accuracy")  # ROC-AUC and PR-AUC: reported, not gated on
    default_floor: ClassVar[float | None] = 0.5
    slice_metric: ClassVar[str] = "macro_f1"
    answer_type: ClassVar[str] = "string"
    problem_type: ClassVar[str] = "single_label_classification"
    headline: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1", "roc_auc", "pr_auc", "ece")

    @classmethod
    def from_spec(cls, spec: Any, labels_seen: pd.Series | None, file: str) -> Task:
        """``labels: auto`` becomes the sorted labels of ``labels_seen`` (the ingested data)."""
        from variantlab.config import MAX_LABELS
        from variantlab.errors import ConfigError, DataError

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
        behaviour = spec.behaviour
        polarity = (behaviour.polarity.positive, behaviour.polarity.negative) if behaviour.polarity else None
        if polarity and not set(polarity) <= set(labels):
            raise ConfigError(f"task.behaviour.polarity names labels outside {list(labels)}", file="params.yaml")
        return cls(
            labels=labels,
            positive_label=positive,
            value_range=spec.value_range,
            value_column=spec.label_rule.column if spec.label_rule else "value",
            invariance=behaviour.invariance,
            polarity=polarity,
            rule=spec.label_rule.model_dump() if spec.label_rule else None,
        )

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    @property
    def is_binary(self) -> bool:
        return len(self.labels) == 2

    def describe(self) -> str:
        kind = "binary" if self.is_binary else f"{len(self.labels)}-class"
        return f"{kind} classification ({', '.join(self.labels)})"

    def codes(self, labels: pd.Series) -> np.ndarray:
        """Integer codes in ``labels`` order (the head's output order)."""
        index = {name: i for i, name in enumerate(self.labels)}
        return pd.Series(labels).astype(str).map(index).to_numpy(dtype=np.int64)

    def y(self, frame: pd.DataFrame) -> np.ndarray:
        return self.codes(frame["label"])

    def answers(self, values: Any, index: Any = None) -> pd.Series:
        return pd.Series(np.asarray(values, dtype=object), index=index).astype(str)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs).argmax(axis=1)

    def code_labels(self) -> list[int] | None:
        return list(range(self.num_outputs))

    def output_meta(self, mean: float = 0.0, std: float = 1.0) -> dict[str, Any]:
        return {"task": self.kind, "classes": list(self.labels)}

    def strata_of(self, frame: pd.DataFrame) -> pd.Series:
        return frame["label"].astype("string")

    def linear_model(self, *, C: float, max_iter: int, seed: int, class_weight: str | None = None) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=max_iter, random_state=seed, class_weight=class_weight)

    def linear_head(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        weight, bias = super().linear_head(model)
        if self.is_binary:  # sklearn keeps one row for two classes: the logit of class 1
            weight, bias = np.vstack([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
        if list(model.classes_) != list(range(self.num_outputs)):
            missing = sorted(set(self.labels) - {self.labels[int(c)] for c in model.classes_})
            from variantlab.errors import DataError

            raise DataError(
                f"the training rows hold no example of {missing}: the head cannot learn them", column="label"
            )
        return weight, bias

    # -- scoring ----------------------------------------------------------------------------------------------
    def score(self, truth: pd.DataFrame, predicted: pd.Series, **extra: Any) -> dict[str, Any]:
        """``extra``: ``positive_score``, the positive class's probabilities (binary: ROC-AUC and PR-AUC)."""
        from variantlab.core.metrics import classification_metrics

        unknown = sorted(set(predicted.astype(str)) - set(self.labels))
        if unknown:
            raise ValueError(f"answers {unknown[:5]} are outside this task's labels {list(self.labels)}")
        return classification_metrics(
            truth["label"],
            predicted,
            truth["domain"],
            self.labels,
            positive_score=extra.get("positive_score"),
            positive_label=self.positive_label if self.is_binary else None,
        )

    def flat_metrics(self, metrics: dict[str, Any]) -> dict[str, float]:
        flat = {key: float(metrics[key]) for key in self.headline if key in metrics}
        for name, row in metrics["per_class"].items():
            flat |= {f"{k}.{name}": float(row[k]) for k in ("f1", "precision", "recall")}
        flat |= {f"macro_f1.{k}": float(v["macro_f1"]) for k, v in metrics["per_domain"].items()}
        return flat

    def slices(self, metrics: dict[str, Any]) -> dict[str, float]:
        out = super().slices(metrics)
        out.update({f"class/{k}": float(v["f1"]) for k, v in metrics.get("per_class", {}).items()})
        return out

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
        from variantlab.core.statistics import paired_comparison

        return paired_comparison(
            self.codes(truth["label"]),
            self.codes(theirs),
            self.codes(mine),
            k=self.num_outputs,
            metric=metric,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )

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
        """The domains' macro-F1 on their rows, and each class's F1 (one against the rest, on every row)."""
        from variantlab.core.statistics import paired_comparison

        out = super().slice_tests(truth, theirs, mine, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
        labels = truth["label"].astype(str).to_numpy()
        a, b = theirs.astype(str).to_numpy(), mine.astype(str).to_numpy()
        for label in self.labels:
            out[f"class/{label}"] = paired_comparison(
                (labels == label).astype(np.int64),
                (a == label).astype(np.int64),
                (b == label).astype(np.int64),
                k=2,
                metric="positive_f1",
                n_bootstrap=n_bootstrap,
                confidence=confidence,
                seed=seed,
            )
        return out

    def check_splits(self, splits: dict[str, pd.DataFrame]) -> list[str]:
        """A class missing from a split cannot be learned (train), chosen on (val) or scored (test)."""
        counts = {name: part["label"].value_counts() for name, part in splits.items()}
        return [
            f"'{label}' ({', '.join(f'{n} {int(c.get(label, 0))}' for n, c in counts.items())})"
            for label in self.labels
            if any(int(c.get(label, 0)) == 0 for c in counts.values())
        ]

    # -- data contract, feedback and drift ---------------------------------------------------------------------
    def target_view(self, raw: pd.DataFrame) -> dict[str, pd.Series]:
        view = {"target": raw["label"].astype(object).where(raw["label"].notna(), None)}
        for name in self.labels:
            view[f"is_class:{name}"] = (raw["label"].astype("string") == name).fillna(False).astype("float64")
        return view

    def class_floor(self, configured: float | None) -> float | None:
        """``configured`` (validation.min_class_fraction), or a quarter of an even share of the rows: 8% of
        three labels, 1.25% of twenty, so the default holds whatever the number of labels."""
        return configured if configured is not None else 1 / (4 * len(self.labels))

    def target_expectations(self, cfg: Any) -> list[Any]:
        from variantlab.core.expectations import ExpectationSpec, indicator
        from variantlab.errors import ConfigError

        floor = self.class_floor(cfg.min_class_fraction)
        assert floor is not None
        if floor * len(self.labels) > 1:
            raise ConfigError(
                f"validation.min_class_fraction {floor:g} x {len(self.labels)} labels is more than the whole data: "
                "lower it, or set it to null (a quarter of an even share)",
                file="params.yaml",
            )
        return [
            ExpectationSpec(
                "label_set",
                "ExpectColumnValuesToBeInSet",
                {"column": "target", "value_set": list(self.labels)},
                description=f"label in {{{', '.join(self.labels)}}}",
            ),
            *(
                ExpectationSpec(
                    f"class_floor_{name}",
                    "ExpectColumnMeanToBeBetween",
                    {"column": indicator(name), "min_value": floor},
                    description=f"at least {floor:.0%} {name}",
                )
                for name in self.labels
            ),
        ]

    def feedback_answer(self, payload: dict[str, Any]) -> tuple[str | None, float | None]:
        if "value" in payload:
            raise FeedbackRejected(400, "this model predicts a label: send 'label', not 'value'")
        label = payload.get("label")
        known = ", ".join(self.labels)
        if not isinstance(label, str) or not label.strip():
            raise FeedbackRejected(400, "'label' must be the true label" + (f" (one of: {known})" if known else ""))
        if not self.labels:  # a model that records no label set: any label
            return label.strip(), None
        spelled = {name.casefold(): name for name in self.labels}
        if label.strip().casefold() not in spelled:
            raise FeedbackRejected(422, f"label '{label}' is not one of the task's labels: {known}")
        return spelled[label.strip().casefold()], None

    def live_answers(self, outputs: pd.Series) -> pd.Series:
        if len(outputs) and isinstance(outputs.iloc[0], dict):  # probabilities: the most likely label
            return outputs.map(lambda p: max(p, key=p.get))
        return outputs

    def target_drift(self, reference: pd.DataFrame, targets: pd.Series) -> TargetDrift:
        from variantlab.core.drift import total_variation

        value, detail = total_variation(reference["label"], targets)
        return TargetDrift("label_shift", value, "max_label_shift", detail)
