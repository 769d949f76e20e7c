"""Classification metrics on the frozen test set, overall, per class and per domain."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from variantlab.config import LABELS


def classification_metrics(truth: pd.Series, pred: pd.Series, domain: pd.Series) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and macro-F1 of each domain."""
    y_true, y_pred = truth.astype(str).to_numpy(), pred.astype(str).to_numpy()
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), zero_division=0
    )
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(LABELS, precision, recall, f1, support, strict=True)
    }
    per_domain = {}
    for name in sorted(domain.astype(str).unique()):
        mask = (domain.astype(str) == name).to_numpy()
        per_domain[name] = {
            "macro_f1": float(
                f1_score(y_true[mask], y_pred[mask], labels=list(LABELS), average="macro", zero_division=0)
            ),
            "accuracy": float(accuracy_score(y_true[mask], y_pred[mask])),
            "n": int(mask.sum()),
        }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(LABELS), average="macro", zero_division=0)),
        "n_test": len(y_true),
        "per_class": per_class,
        "per_domain": per_domain,
    }


def confusion_frame(truth: pd.Series, pred: pd.Series) -> pd.DataFrame:
    """Long-form confusion counts (actual, predicted, count) for plots and reports."""
    matrix = confusion_matrix(truth.astype(str), pred.astype(str), labels=list(LABELS))
    rows = [(a, p, int(matrix[i, j])) for i, a in enumerate(LABELS) for j, p in enumerate(LABELS)]
    return pd.DataFrame(rows, columns=["actual", "predicted", "count"])


def confusion_array(frame: pd.DataFrame) -> np.ndarray:
    return frame.pivot(index="actual", columns="predicted", values="count").loc[list(LABELS), list(LABELS)].to_numpy()


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
