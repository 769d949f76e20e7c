"""Paired statistics for champion vs challenger on the same test examples.

A paired bootstrap of the macro-F1 difference (vectorised: one confusion matrix per resample) and McNemar's
exact test on which examples each model gets right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class PairedComparison:
    delta: float  # challenger - champion, on the full test set
    ci_low: float
    ci_high: float
    confidence: float
    n_bootstrap: int
    p_bootstrap: float  # share of resamples where the challenger is not better
    mcnemar_b: int  # challenger right, champion wrong
    mcnemar_c: int  # champion right, challenger wrong
    mcnemar_p: float


def _macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 of each (k, k) confusion matrix in a (..., k, k) stack; absent classes score 0 like sklearn."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    fp = confusion.sum(axis=-2) - tp
    fn = confusion.sum(axis=-1) - tp
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return np.asarray(f1.mean(axis=-1))


def _accuracy(confusion: np.ndarray) -> np.ndarray:
    trace = np.diagonal(confusion, axis1=-2, axis2=-1).sum(axis=-1)
    return np.asarray(trace / confusion.sum(axis=(-2, -1)))


METRICS = {"macro_f1": _macro_f1, "accuracy": _accuracy}


def _confusions(truth: np.ndarray, pred: np.ndarray, resamples: np.ndarray, k: int) -> np.ndarray:
    codes = truth[resamples] * k + pred[resamples]  # (B, n)
    offsets = (np.arange(len(resamples)) * k * k)[:, None]
    counts = np.bincount((codes + offsets).ravel(), minlength=len(resamples) * k * k)
    return counts.reshape(len(resamples), k, k)


def metric_codes(truth: np.ndarray, pred: np.ndarray, k: int, metric: str = "macro_f1") -> float:
    return float(METRICS[metric](_confusions(truth, pred, np.arange(len(truth))[None, :], k))[0])


def paired_comparison(
    truth: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    k: int,
    metric: str = "macro_f1",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models' integer-coded predictions of the same examples (same resamples for both)."""
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(truth), size=(n_bootstrap, len(truth)))
    score = METRICS[metric]
    deltas = score(_confusions(truth, challenger, resamples, k)) - score(_confusions(truth, champion, resamples, k))
    tail = (1 - confidence) / 2
    right_a, right_b = champion == truth, challenger == truth
    b, c = int(np.sum(right_b & ~right_a)), int(np.sum(right_a & ~right_b))
    p = float(binomtest(min(b, c), b + c, 0.5).pvalue) if b + c else 1.0
    return PairedComparison(
        delta=metric_codes(truth, challenger, k, metric) - metric_codes(truth, champion, k, metric),
        ci_low=float(np.quantile(deltas, tail)),
        ci_high=float(np.quantile(deltas, 1 - tail)),
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        p_bootstrap=float(np.mean(deltas <= 0)),
        mcnemar_b=b,
        mcnemar_c=c,
        mcnemar_p=p,
    )
