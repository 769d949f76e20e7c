"""Paired statistics for champion vs challenger on the same test examples.

Classification: a paired bootstrap of the metric's difference (vectorised: one confusion matrix per resample)
and McNemar's exact test on which examples each model gets right. Regression: a paired bootstrap of the metric
(MAE, RMSE, R^2 or Spearman's rho) and the Wilcoxon signed-rank test on the two models' absolute errors.
Generation: a paired bootstrap of the mean per-example score (exact match, chrF or ROUGE-L) and the Wilcoxon
signed-rank test on the per-example scores.
``delta`` is always the challenger's improvement: positive means better, whichever way the metric points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, wilcoxon


@dataclass(frozen=True)
class PairedComparison:
    delta: float  # the challenger's improvement over the champion on the full test set (positive: better)
    ci_low: float
    ci_high: float
    confidence: float
    n_bootstrap: int
    p_bootstrap: float  # share of resamples where the challenger is not better
    wins: int  # examples the challenger gets right (classification) or closer (regression) and the champion not
    losses: int  # ... and the other way round
    p_value: float  # the paired test's two-sided p
    test: str = "mcnemar"  # or "wilcoxon" (regression: signed-rank test of the absolute errors)
    n: int = 0  # paired examples
    se: float = 0.0  # the bootstrap's standard error of the difference (what the minimum detectable effect uses)
    p_adjusted: float | None = None  # after a multiple-testing correction (Holm), when several were tested
    correction: str = "none"

    @property
    def p_gate(self) -> float:
        """The p-value the gate holds to alpha: the corrected one when a family of challengers was tested."""
        return self.p_value if self.p_adjusted is None else self.p_adjusted

    @property
    def discordance(self) -> float:
        """Share of examples where exactly one model is right (or closer): McNemar's discordance rate."""
        return (self.wins + self.losses) / self.n if self.n else 0.0


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


def _positive_f1(confusion: np.ndarray) -> np.ndarray:
    """F1 of class 1 of (..., 2, 2) one-vs-rest confusion matrices: one class's F1, as a class slice reports it."""
    tp = confusion[..., 1, 1].astype(np.float64)
    denominator = 2 * tp + confusion[..., 0, 1] + confusion[..., 1, 0]
    return np.asarray(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0))


METRICS = {"macro_f1": _macro_f1, "accuracy": _accuracy, "positive_f1": _positive_f1}


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
    right_a, right_b = champion == truth, challenger == truth
    b, c = int(np.sum(right_b & ~right_a)), int(np.sum(right_a & ~right_b))
    p = float(binomtest(min(b, c), b + c, 0.5).pvalue) if b + c else 1.0
    delta = metric_codes(truth, challenger, k, metric) - metric_codes(truth, champion, k, metric)
    return _summary(delta, deltas, confidence, b, c, p, "mcnemar", len(truth))


def _summary(
    delta: float, deltas: np.ndarray, confidence: float, wins: int, losses: int, p: float, test: str, n: int
) -> PairedComparison:
    tail = (1 - confidence) / 2
    return PairedComparison(
        delta=float(delta),
        ci_low=float(np.quantile(deltas, tail)),
        ci_high=float(np.quantile(deltas, 1 - tail)),
        confidence=confidence,
        n_bootstrap=len(deltas),
        p_bootstrap=float(np.mean(deltas <= 0)),
        wins=wins,
        losses=losses,
        p_value=p,
        test=test,
        n=n,
        se=float(np.std(deltas, ddof=1)) if len(deltas) > 1 else 0.0,
    )


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (ties broken by position: enough for a bootstrap of Spearman's rho)."""
    return np.argsort(np.argsort(values, axis=-1), axis=-1).astype(np.float64)


def regression_score(truth: np.ndarray, pred: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of each row of (..., n) arrays, signed so that higher is better (minus MAE, minus RMSE)."""
    error = pred - truth
    if metric == "mae":
        return np.asarray(-np.abs(error).mean(axis=-1))
    if metric == "rmse":
        return np.asarray(-np.sqrt((error**2).mean(axis=-1)))
    if metric == "r2":
        total = ((truth - truth.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
        return np.asarray(1 - (error**2).sum(axis=-1) / np.where(total > 0, total, 1.0))
    if metric == "spearman":
        a, b = _ranks(truth), _ranks(pred)
        a, b = a - a.mean(axis=-1, keepdims=True), b - b.mean(axis=-1, keepdims=True)
        norm = np.sqrt((a**2).sum(axis=-1) * (b**2).sum(axis=-1))
        return np.asarray((a * b).sum(axis=-1) / np.where(norm > 0, norm, 1.0))
    raise ValueError(f"unknown regression metric {metric!r}")


def paired_regression(
    truth: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    metric: str = "mae",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two regressors' predictions of the same examples (same resamples for both)."""
    truth, champion, challenger = (np.asarray(a, dtype=np.float64) for a in (truth, champion, challenger))
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(truth), size=(n_bootstrap, len(truth)))
    deltas = regression_score(truth[resamples], challenger[resamples], metric) - regression_score(
        truth[resamples], champion[resamples], metric
    )
    delta = float(regression_score(truth, challenger, metric) - regression_score(truth, champion, metric))
    ours, theirs = np.abs(challenger - truth), np.abs(champion - truth)
    wins, losses = int(np.sum(ours < theirs)), int(np.sum(ours > theirs))
    p = float(wilcoxon(ours, theirs).pvalue) if wins + losses else 1.0
    return _summary(delta, deltas, confidence, wins, losses, p, "wilcoxon", len(truth))


def paired_scores(
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models' per-example scores (higher is better) of the same examples: a paired bootstrap of
    the mean, and the Wilcoxon signed-rank test (examples where both score the same drop out)."""
    champion, challenger = np.asarray(champion, dtype=np.float64), np.asarray(challenger, dtype=np.float64)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(champion), size=(n_bootstrap, len(champion)))
    difference = challenger - champion
    deltas = difference[resamples].mean(axis=1)
    wins, losses = int(np.sum(difference > 0)), int(np.sum(difference < 0))
    p = float(wilcoxon(challenger, champion).pvalue) if wins + losses else 1.0
    return _summary(float(difference.mean()), deltas, confidence, wins, losses, p, "wilcoxon", len(champion))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
