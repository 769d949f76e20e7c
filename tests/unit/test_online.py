"""The online gate's always-valid sequential test: its error rate holds however often it looks, it promotes a
challenger that is better, and when it cannot tell yet it says how many labelled disagreements it needs."""

from __future__ import annotations

import numpy as np
import pytest

from variantlab.core.online import decide_online, decisive_needed, log_evidence, rejects


def looks_until_rejection(p_win: float, reps: int, pairs: int, every: int, alpha: float, seed: int) -> np.ndarray:
    """Per repetition: did the gate, run after every ``every`` decisive pairs, ever promote?"""
    rng = np.random.default_rng(seed)
    wins = np.cumsum(rng.random((reps, pairs)) < p_win, axis=1)
    at = np.arange(every, pairs + 1, every)
    w = wins[:, at - 1]
    evidence = log_evidence(w, at - w)
    return np.asarray(((evidence >= np.log(1 / alpha)) & (w > at - w)).any(axis=1))


def test_equally_good_models_are_promoted_in_no_more_than_alpha_of_repetitions_despite_many_looks() -> None:
    alpha, reps = 0.05, 4000
    promoted = looks_until_rejection(0.5, reps, pairs=2000, every=10, alpha=alpha, seed=1)  # 200 looks each
    error = np.sqrt(alpha * (1 - alpha) / reps)
    assert promoted.mean() <= alpha + 3 * error, promoted.mean()
    # a fixed-sample test at each look would not hold: the exact binomial p < alpha at any of the 200 looks
    from scipy.stats import binom

    rng = np.random.default_rng(2)
    wins = np.cumsum(rng.random((1000, 2000)) < 0.5, axis=1)[:, 9::10]
    n = np.arange(10, 2001, 10)
    naive = (binom.sf(wins - 1, n, 0.5) < alpha / 2).any(axis=1).mean()
    assert naive > 2 * alpha, naive  # peeking inflates a fixed-sample test's error; the sequential one does not


def test_a_better_challenger_is_found_and_the_needed_pairs_match_a_simulation() -> None:
    alpha = 0.05
    needed = decisive_needed(0.7, alpha)
    assert needed is not None and 20 < needed < 200
    promoted = looks_until_rejection(0.7, 2000, pairs=needed * 3, every=5, alpha=alpha, seed=3)
    assert promoted.mean() > 0.9
    assert decisive_needed(0.5, alpha) is None
    assert decisive_needed(0.55, alpha) > decisive_needed(0.6, alpha) > needed  # type: ignore[operator]


def paired(wins: int, losses: int, ties: int, agreeing: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    champion = np.array([0.0] * wins + [1.0] * losses + [0.0] * ties + [1.0] * agreeing)
    challenger = np.array([1.0] * wins + [0.0] * losses + [0.0] * ties + [1.0] * agreeing)
    agrees = np.array([False] * (wins + losses + ties) + [True] * agreeing)
    return champion, challenger, agrees


def gate(wins: int, losses: int, ties: int = 0, agreeing: int = 0, shadowed: int = 1000, disagreed: int = 200):
    champion, challenger, agrees = paired(wins, losses, ties, agreeing)
    return decide_online(
        champion,
        challenger,
        agrees,
        shadowed=shadowed,
        disagreed=disagreed,
        alpha=0.05,
        min_effect=0.02,
        champion_version="1",
        challenger_version="2",
    )


def test_the_verdicts_and_the_gain_weighted_by_the_disagreement_rate() -> None:
    better = gate(40, 8, ties=2, agreeing=30)
    assert better.verdict == "promoted" and better.evidence >= 20
    # only disagreements count; the gain is the disagreement rate times the mean gain on them
    assert better.gain == pytest.approx(0.2 * (40 - 8) / 50)
    assert "0.2000 x +0.6400" in better.gain_formula
    worse = gate(8, 40)
    assert worse.verdict == "not better"
    unsure = gate(6, 3)
    assert unsure.verdict == "inconclusive" and unsure.more_disagreements_needed is not None
    assert unsure.target_share == pytest.approx(0.5 + 0.02 / (2 * 0.2))
    assert f"inconclusive, {unsure.more_disagreements_needed} more labelled disagreements needed" in unsure.sentence()
    assert not rejects(6, 3, 0.05) and rejects(40, 8, 0.05)
