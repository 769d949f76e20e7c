"""Test-set metrics of either task kind, overall and per domain (and per class for classification)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)


def classification_metrics(
    truth: pd.Series,
    pred: pd.Series,
    domain: pd.Series,
    labels: Sequence[str],
    *,
    positive_score: np.ndarray | None = None,
    positive_label: str | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and macro-F1 of each domain; for a binary task
    with the positive class's probabilities, also ROC-AUC and PR-AUC."""
    labels = list(labels)
    y_true, y_pred = truth.astype(str).to_numpy(), pred.astype(str).to_numpy()
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    per_domain = {}
    for name in sorted(domain.astype(str).unique()):
        mask = (domain.astype(str) == name).to_numpy()
        per_domain[name] = {
            "macro_f1": float(f1_score(y_true[mask], y_pred[mask], labels=labels, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(y_true[mask], y_pred[mask])),
            "n": int(mask.sum()),
        }
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "n_test": len(y_true),
        "per_class": per_class,
        "per_domain": per_domain,
    }
    if positive_score is not None and positive_label is not None:
        is_positive = y_true == positive_label
        if 0 < is_positive.sum() < len(is_positive):
            out["roc_auc"] = float(roc_auc_score(is_positive, positive_score))
            out["pr_auc"] = float(average_precision_score(is_positive, positive_score))
    return out


def _regression_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    error = pred - truth
    spearman = float(spearmanr(truth, pred).statistic) if len(truth) > 1 and np.std(pred) > 0 else 0.0
    return {
        "mae": float(mean_absolute_error(truth, pred)),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(r2_score(truth, pred)) if len(truth) > 1 else 0.0,
        "spearman": 0.0 if np.isnan(spearman) else spearman,
    }


def regression_metrics(truth: pd.Series, pred: np.ndarray, domain: pd.Series) -> dict[str, Any]:
    """MAE, RMSE, R^2 and Spearman's rho, overall and per domain."""
    y_true, y_pred = truth.to_numpy(dtype=np.float64), np.asarray(pred, dtype=np.float64)
    per_domain = {}
    for name in sorted(domain.astype(str).unique()):
        mask = (domain.astype(str) == name).to_numpy()
        per_domain[name] = {**_regression_scores(y_true[mask], y_pred[mask]), "n": int(mask.sum())}
    return {**_regression_scores(y_true, y_pred), "n_test": len(y_true), "per_domain": per_domain}


def metric_value(metric: str, truth: Any, pred: Any, labels: Sequence[Any] | None = None) -> float:
    """One headline metric of either task kind: what a search and the choice of challenger compare on validation.

    Classification: ``macro_f1`` or ``accuracy`` over labels (or their codes); regression: ``mae``, ``rmse``,
    ``r2`` or ``spearman``.
    """
    y_true, y_pred = np.asarray(truth), np.asarray(pred)
    if metric == "accuracy":
        return float(accuracy_score(y_true, y_pred))
    if metric == "macro_f1":
        chosen = list(labels) if labels is not None else None
        return float(f1_score(y_true, y_pred, labels=chosen, average="macro", zero_division=0))
    scores = _regression_scores(y_true.astype(np.float64), y_pred.astype(np.float64))
    if metric not in scores:
        raise ValueError(f"unknown metric '{metric}'")
    return scores[metric]


def confusion_frame(truth: pd.Series, pred: pd.Series, labels: Sequence[str]) -> pd.DataFrame:
    """Long-form confusion counts (actual, predicted, count) for plots and reports."""
    labels = list(labels)
    matrix = confusion_matrix(truth.astype(str), pred.astype(str), labels=labels)
    rows = [(a, p, int(matrix[i, j])) for i, a in enumerate(labels) for j, p in enumerate(labels)]
    return pd.DataFrame(rows, columns=["actual", "predicted", "count"])


def confusion_array(frame: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    labels = list(labels)
    return frame.pivot(index="actual", columns="predicted", values="count").loc[labels, labels].to_numpy()


def calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> tuple[float, pd.DataFrame]:
    """Expected calibration error of the top-class confidence, and the reliability table behind it.

    Equal-width bins over [0, 1]; ECE is the bin-size-weighted mean of |accuracy - confidence|. Empty bins
    stay in the table (n = 0) so every variant's table has the same rows.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    rows, ece = [], 0.0
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        mean_conf = float(confidence[mask].mean()) if n else float("nan")
        accuracy = float(correct[mask].mean()) if n else float("nan")
        if n:
            ece += n / len(confidence) * abs(accuracy - mean_conf)
        rows.append(
            {
                "bin": b,
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "n": n,
                "confidence": mean_conf,
                "accuracy": accuracy,
            }
        )
    return float(ece), pd.DataFrame(rows)
