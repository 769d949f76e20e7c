"""Classifiers that are plain scikit-learn: the TF-IDF baseline and the probe's linear head."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from variantlab.config import TfidfVariant


def tfidf_logreg(cfg: TfidfVariant, seed: int) -> Pipeline:
    """A pipeline that takes a data frame with a ``text`` column, so it serves MLflow's pyfunc contract as is."""
    vectorizer = TfidfVectorizer(
        max_features=cfg.max_features,
        ngram_range=(1, cfg.ngram_max),
        min_df=cfg.min_df,
        sublinear_tf=True,
        strip_accents="unicode",
    )
    return Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", vectorizer, "text")])),
            ("classifier", LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, random_state=seed)),
        ]
    )


def fit_linear_head(
    embeddings: np.ndarray, labels: np.ndarray, *, C: float, max_iter: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Multinomial logistic regression on frozen embeddings; returns (weight, bias, classes)."""
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    model.fit(embeddings, labels)
    # ascontiguousarray: lbfgs leaves coef_ Fortran-ordered, and safetensors stores raw bytes in C order.
    weight = np.ascontiguousarray(model.coef_, dtype=np.float32)
    bias = np.ascontiguousarray(model.intercept_, dtype=np.float32)
    return weight, bias, [str(c) for c in model.classes_]
