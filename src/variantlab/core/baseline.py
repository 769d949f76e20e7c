"""Models that are plain scikit-learn: the TF-IDF baseline and the probe's linear head.

Classification: logistic regression. Regression: ridge regression, whose ``alpha`` is ``1 / C`` so that one knob
means "less regularisation" for both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from variantlab.config import TfidfVariant
from variantlab.core.task import Task


def linear_model(task: Task, *, C: float, max_iter: int, seed: int, class_weight: str | None = None) -> Any:
    if task.is_classification:
        return LogisticRegression(C=C, max_iter=max_iter, random_state=seed, class_weight=class_weight)
    return Ridge(alpha=1.0 / C, max_iter=max_iter, random_state=seed)


def tfidf_pipeline(cfg: TfidfVariant, task: Task, seed: int) -> Pipeline:
    """A pipeline that takes a data frame with a ``text`` column, so it serves MLflow's pyfunc contract as is."""
    vectorizer = TfidfVectorizer(
        max_features=cfg.max_features,
        ngram_range=(1, cfg.ngram_max),
        min_df=cfg.min_df,
        sublinear_tf=True,
        strip_accents="unicode",
    )
    head = linear_model(task, C=cfg.C, max_iter=cfg.max_iter, seed=seed, class_weight=cfg.class_weight)
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
    model = linear_model(task, C=C, max_iter=max_iter, seed=seed, class_weight=class_weight)
    model.fit(embeddings, targets)
    # ascontiguousarray: lbfgs leaves coef_ Fortran-ordered, and safetensors stores raw bytes in C order.
    weight = np.atleast_2d(np.asarray(model.coef_, dtype=np.float32))
    bias = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float32))
    if task.is_classification and task.is_binary:  # sklearn keeps one row for two classes: logit of class 1
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
    if task.is_classification and list(model.classes_) != list(range(task.num_outputs)):
        missing = sorted(set(task.labels) - {task.labels[int(c)] for c in model.classes_})
        raise ValueError(f"the training rows hold no example of {missing}: the head cannot learn them")
    return np.ascontiguousarray(weight), np.ascontiguousarray(bias)
