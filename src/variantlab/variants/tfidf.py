"""``tfidf-logreg``: the scikit-learn baseline (TF-IDF features, a linear model of the task's kind), stored as
a skops file behind the pyfunc wrapper in ``io/sklearn_model.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from variantlab.schema import VariantBase
from variantlab.variants.base import Fitted, VariantKind, example_rows, val_stats

if TYPE_CHECKING:
    from variantlab.core.task import Task


class TfidfVariant(VariantBase):
    kind: Literal["tfidf-logreg"]
    max_features: int = Field(50000, ge=1)
    ngram_max: int = Field(2, ge=1, le=3)
    min_df: int = Field(2, ge=1)
    C: float = Field(4.0, gt=0)
    max_iter: int = Field(1000, ge=1)
    class_weight: Literal["balanced"] | None = None  # classification only: weigh rare classes up


@dataclass
class TfidfKind(VariantKind):
    """Trains in seconds: nothing to resume, and one "epoch", so nothing to prune."""

    config: ClassVar[type[VariantBase]] = TfidfVariant

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        import numpy as np

        from variantlab.core import timing
        from variantlab.core.baseline import tfidf_pipeline
        from variantlab.core.metrics import metric_value
        from variantlab.io.models import sklearn_model_kwargs

        def target(frame: Any) -> Any:
            return task.answers(frame[task.target], frame.index)

        metric = self.ctx.params.metric
        with timing.compute():
            pipeline = tfidf_pipeline(self.cfg, task, self.ctx.params.project.seed).fit(train[["text"]], target(train))
            value = metric_value(metric, target(val), pipeline.predict(val[["text"]]), task.labels or None)
        coef = np.atleast_2d(pipeline.named_steps["classifier"].coef_)
        size = int(coef.size + coef.shape[0])
        stats = {
            "trainable_params": size,
            "total_params": size,
            "vocabulary": int(coef.shape[1]),
            **val_stats(metric, value),
        }
        return Fitted(lambda: sklearn_model_kwargs(pipeline, workdir, example_rows(train), task), stats)
