"""The online gate: does ``@challenger`` beat ``@champion`` on the live traffic both answered (the shadow)?

Each labelled shadowed prediction is a pair: who got it right (or closer) by the task's own per-example score.
Pairs where both score the same say nothing (McNemar's concordant pairs), so labelling only the disagreements
loses nothing for the test. Among the *decisive* pairs, the challenger wins a share p; it is better when p > 1/2.

The gate looks again every time it runs, so a fixed-sample p-value would be wrong (peeking inflates the error).
It uses an always-valid test: a mixture sequential probability ratio test (Robbins 1970) of p <= 1/2 against
p > 1/2, with a uniform prior on (1/2, 1):

    Lambda_N = 2 * integral_{1/2}^{1} p^W (1-p)^L dp / (1/2)^N      (W wins, L losses, N = W + L)

Under p = 1/2, Lambda is a nonnegative martingale of mean 1 (a supermartingale for p < 1/2), so by Ville's
inequality P(Lambda ever reaches 1/alpha) <= alpha, at any number of looks and any stopping rule.

The accuracy gain on live traffic is estimated from the labelled disagreements only, weighted by the live
disagreement rate d (agreeing answers score the same): gain = d * mean(challenger - champion over labelled
disagreements).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import betainc, betaln

METHOD = (
    "mixture sequential probability ratio test (Robbins 1970), uniform prior on the challenger's win share in "
    "(1/2, 1): always valid, so the error rate holds however often the gate looks (Ville's inequality)"
)


def log_evidence(wins: int | np.ndarray, losses: int | np.ndarray) -> Any:
    """log Lambda: the evidence for "the challenger wins more than half of the decisive pairs"."""
    w, lo = np.asarray(wins, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    n = w + lo
    upper = betainc(lo + 1, w + 1, 0.5)  # P(p > 1/2) under Beta(w+1, l+1), accurate in the tail
    with np.errstate(divide="ignore"):
        return math.log(2) + betaln(w + 1, lo + 1) + np.log(upper) + n * math.log(2)


def rejects(wins: int, losses: int, alpha: float) -> bool:
    return bool(log_evidence(wins, losses) >= math.log(1 / alpha))


def decisive_needed(share: float, alpha: float, limit: int = 10_000_000) -> int | None:
    """Decisive pairs at which a challenger winning ``share`` of them is expected to cross 1/alpha."""
    if share <= 0.5:
        return None
    threshold = math.log(1 / alpha)

    def crosses(n: int) -> bool:
        wins = round(share * n)
        return bool(log_evidence(wins, n - wins) >= threshold)

    high = 1
    while not crosses(high):
        high *= 2
        if high > limit:
            return None
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if crosses(middle) else (middle, high)
    return high


@dataclass(frozen=True)
class OnlineResult:
    champion_version: str
    challenger_version: str
    shadowed: int  # predictions both models answered
    disagreed: int  # ... where their answers differ
    labelled: int  # shadowed predictions with feedback
    labelled_disagreements: int
    wins: int  # decisive labelled pairs the challenger wins (right, or closer)
    losses: int
    evidence: float  # Lambda
    threshold: float  # 1 / alpha
    alpha: float
    verdict: str  # promoted, not better, inconclusive
    gain: float | None  # the estimated live gain in the per-example score, weighted by the disagreement rate
    gain_formula: str
    min_effect: float
    target_share: float | None  # the win share a gain of min_effect implies
    more_disagreements_needed: int | None
    method: str = METHOD

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        pairs = (
            f"{self.wins} wins and {self.losses} losses on {self.labelled_disagreements} labelled disagreements "
            f"({self.disagreed} of {self.shadowed} shadowed predictions disagree)"
        )
        evidence = f"evidence {self.evidence:.3g} against the {self.threshold:g} needed (always-valid mSPRT)"
        if self.verdict == "promoted":
            return f"challenger v{self.challenger_version} is better on live traffic: {pairs}; {evidence}"
        if self.verdict == "not better":
            return f"challenger v{self.challenger_version} is not better on live traffic: {pairs}; {evidence}"
        more = (
            f"{self.more_disagreements_needed} more labelled disagreements needed"
            if self.more_disagreements_needed is not None
            else "more labelled disagreements needed (no disagreement seen yet to size it)"
        )
        return f"inconclusive, {more}: {pairs}; {evidence}"


def decide_online(
    champion_scores: np.ndarray,
    challenger_scores: np.ndarray,
    agrees: np.ndarray,
    *,
    shadowed: int,
    disagreed: int,
    alpha: float,
    min_effect: float,
    champion_version: str,
    challenger_version: str,
) -> OnlineResult:
    """The gate on a paired table of labelled shadowed predictions (per-example scores, higher better)."""
    difference = np.asarray(challenger_scores, dtype=np.float64) - np.asarray(champion_scores, dtype=np.float64)
    difference = np.nan_to_num(difference, nan=0.0)
    wins, losses = int(np.sum(difference > 0)), int(np.sum(difference < 0))
    disagreeing = ~np.asarray(agrees, dtype=bool)
    labelled_disagreements = int(disagreeing.sum())
    evidence = float(np.exp(log_evidence(wins, losses)))
    threshold = 1 / alpha
    rate = disagreed / shadowed if shadowed else None
    gain = None
    if rate is not None and labelled_disagreements:
        gain = rate * float(difference[disagreeing].mean())
    formula = "disagreement rate x mean(challenger - champion) over labelled disagreements = " + (
        f"{rate:.4f} x {difference[disagreeing].mean():+.4f}" if gain is not None and rate is not None else "n/a"
    )
    if evidence >= threshold and wins > losses:
        verdict = "promoted"
    elif float(np.exp(log_evidence(losses, wins))) >= threshold:
        verdict = "not better"  # the same always-valid test, the other way round: the challenger is worse
    else:
        verdict = "inconclusive"
    target = more = None
    if verdict == "inconclusive" and rate:
        decisive_share = (wins + losses) / labelled_disagreements if labelled_disagreements else 1.0
        decisive_share = decisive_share or 1.0
        target = min(0.99, 0.5 + min_effect / (2 * rate * decisive_share))
        needed = decisive_needed(target, alpha)
        if needed is not None:
            more = max(1, math.ceil((needed - wins - losses) / decisive_share))
    return OnlineResult(
        champion_version,
        challenger_version,
        shadowed,
        disagreed,
        len(difference),
        labelled_disagreements,
        wins,
        losses,
        evidence,
        threshold,
        alpha,
        verdict,
        gain,
        formula,
        min_effect,
        target,
        more,
    )
