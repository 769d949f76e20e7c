"""The two baselines a generation task's variants must beat, so that a gain over a trivial answer is proven:

- ``copy``: the answer is the input text, unchanged (a normalisation task's "do nothing");
- ``nearest``: the target of the most similar training text by TF-IDF cosine similarity (retrieval, no model):
  a scikit-learn pipeline (TF-IDF, 1-nearest neighbour) stored as a skops file behind ``io/sklearn_model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from variantlab.schema import VariantBase
from variantlab.variants.base import Fitted, VariantKind, example_rows, val_stats

if TYPE_CHECKING:
    from variantlab.core.task import Task


class CopyVariant(VariantBase):
    kind: Literal["copy"]


class NearestVariant(VariantBase):
    kind: Literal["nearest"]
    analyzer: Literal["word", "char_wb"] = "char_wb"  # character n-grams match "5 Mar" with "5 March"
    ngram_max: int = Field(4, ge=1, le=6)
    max_features: int = Field(50000, ge=1)


@dataclass
class CopyKind(VariantKind):
    config: ClassVar[type[VariantBase]] = CopyVariant
    generates: ClassVar[bool | None] = True

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        from variantlab.io.models import copy_model_kwargs

        value = task.validation_value(self.ctx.params.metric, task.y(val), val["text"].astype(str).to_numpy())
        stats = {"trainable_params": 0, "total_params": 0, **val_stats(self.ctx.params.metric, value)}
        return Fitted(lambda: copy_model_kwargs(example_rows(train), task), stats)


@dataclass
class NearestKind(VariantKind):
    config: ClassVar[type[VariantBase]] = NearestVariant
    generates: ClassVar[bool | None] = True

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        import warnings

        from sklearn.compose import ColumnTransformer
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import Pipeline

        from variantlab.core import timing
        from variantlab.io.models import sklearn_model_kwargs

        cfg = self.cfg
        vectorizer = TfidfVectorizer(
            analyzer=cfg.analyzer,
            ngram_range=(1 if cfg.analyzer == "word" else 2, cfg.ngram_max),
            max_features=cfg.max_features,
            sublinear_tf=True,
        )
        pipeline = Pipeline(
            [
                ("features", ColumnTransformer([("tfidf", vectorizer, "text")])),
                ("classifier", KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute")),
            ]
        )
        with timing.compute(), warnings.catch_warnings():
            # every target its own "class": what 1-nearest-neighbour retrieval is, not a mistake
            warnings.filterwarnings("ignore", message="The number of unique classes")
            pipeline.fit(train[["text"]], task.y(train))
            value = task.validation_value(self.ctx.params.metric, task.y(val), pipeline.predict(val[["text"]]))
        stats = {
            "trainable_params": 0,
            "total_params": 0,
            "vocabulary": len(pipeline.named_steps["features"].transformers_[0][1].vocabulary_),
            "memory_rows": len(train),
            **val_stats(self.ctx.params.metric, value),
        }
        return Fitted(lambda: sklearn_model_kwargs(pipeline, workdir, example_rows(train), task), stats)
