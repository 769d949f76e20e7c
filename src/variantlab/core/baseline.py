"""Models that are plain scikit-learn: the TF-IDF baseline and the probe's linear head.

The estimator is the task kind's (``Task.linear_model``): logistic regression for labels, ridge for numbers.
"""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from variantlab.core.task import Task
from variantlab.variants.tfidf import TfidfVariant


def tfidf_pipeline(cfg: TfidfVariant, task: Task, seed: int) -> Pipeline:
    """A pipeline that takes a data frame with a ``text`` column, so it serves MLflow's pyfunc contract as is."""
    vectorizer = TfidfVectorizer(
        max_features=cfg.max_features,
        ngram_range=(1, cfg.ngram_max),
        min_df=cfg.min_df,
        sublinear_tf=True,
        strip_accents="unicode",
    )
    head = task.linear_model(C=cfg.C, max_iter=cfg.max_iter, seed=seed, class_weight=cfg.class_weight)
    return Pipeline([("features", ColumnTransformer([("tfidf", vectorizer, "text")])), ("classifier", head)])


def fit_linear_head(
    embeddings: np.ndarray,
    targets: np.ndarray,
    task: Task,
    *,
    C: float,
    max_iter: int,
    seed: int,
    class_weight: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A linear head on frozen embeddings: (weight, bias), one row per label in the task's order (or one row)."""
    model = task.linear_model(C=C, max_iter=max_iter, seed=seed, class_weight=class_weight)
    model.fit(embeddings, targets)
    weight, bias = task.linear_head(model)
    # ascontiguousarray: lbfgs leaves coef_ Fortran-ordered, and safetensors stores raw bytes in C order.
    return np.ascontiguousarray(weight), np.ascontiguousarray(bias)
