"""What a decision can detect: the minimum detectable effect and rows needed agree with simulation; a small test
set gives "inconclusive", a large one "promoted"; Holm changes a borderline decision; slices carry intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from variantlab.core.power import bootstrap_mde, mcnemar_mde, mcnemar_rows_needed, statement
from variantlab.core.promotion import INCONCLUSIVE, NOT_BETTER, PROMOTED, Policy, Scored, decide
from variantlab.core.statistics import holm, paired_comparison, paired_scores
from variantlab.core.tasks.classification import Classification


def simulated_power(n: int, discordance: float, effect: float, alpha: float, reps: int, seed: int) -> float:
    """Share of repetitions where the exact McNemar test rejects (in the challenger's favour)."""
    rng = np.random.default_rng(seed)
    wins = (discordance + effect) / 2
    counts = rng.multinomial(n, [wins, discordance - wins, 1 - discordance], size=reps)
    rejected = 0
    for b, c, _ in counts:
        rejected += bool(b + c and b > c and binomtest(int(min(b, c)), int(b + c), 0.5).pvalue < alpha)
    return rejected / reps


@pytest.mark.parametrize(("n", "discordance"), [(1000, 0.1), (400, 0.25)])
def test_mcnemar_mde_and_rows_needed_match_a_simulation_of_the_exact_test(n: int, discordance: float) -> None:
    mde = mcnemar_mde(n, discordance, 0.05, 0.8)
    assert mde is not None and 0 < mde < discordance
    assert mcnemar_rows_needed(mde, discordance, 0.05, 0.8) == pytest.approx(n, abs=2)
    reps = 1500
    share = simulated_power(n, discordance, mde, 0.05, reps, seed=n)
    error = np.sqrt(0.8 * 0.2 / reps)
    # Connor's normal approximation against the exact (slightly conservative) binomial test
    assert abs(share - 0.8) < 0.03 + 3 * error, share
    # half the effect is detected far less often: the figure is about this n, not any n
    assert simulated_power(n, discordance, mde / 2, 0.05, reps, seed=n + 1) < 0.45


def test_bootstrap_mde_detects_its_effect_at_the_stated_power() -> None:
    """A mean difference of exactly the reported MDE is found significant in about 80% of repetitions."""
    rng = np.random.default_rng(7)
    n, sd = 300, 1.0
    base = paired_scores(np.zeros(n), rng.normal(0, sd, n), n_bootstrap=2000, seed=1)
    mde = bootstrap_mde(base.se, 0.05, 0.8)
    assert mde == pytest.approx(2.8016 * sd / np.sqrt(n), rel=0.1)
    reps, hits = 300, 0
    for _ in range(reps):
        diff = rng.normal(mde, sd, n)
        low = np.quantile(diff[rng.integers(0, n, (400, n))].mean(axis=1), 0.025)
        hits += low > 0
    assert abs(hits / reps - 0.8) < 0.08, hits / reps


def accuracy_pair(
    n: int, champion_only: int, challenger_only: int, both_wrong: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels coded 0-2 and two models' answers with exactly these counts of discordant rows, shuffled."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    kind = np.zeros(n, dtype=int)  # 0 both right, 1 only the champion, 2 only the challenger, 3 both wrong
    kind[:champion_only] = 1
    kind[champion_only : champion_only + challenger_only] = 2
    kind[champion_only + challenger_only : champion_only + challenger_only + both_wrong] = 3
    kind = rng.permutation(kind)
    wrong = (truth + 1) % 3
    champion = np.where((kind == 0) | (kind == 1), truth, wrong)
    challenger = np.where((kind == 0) | (kind == 2), truth, wrong)
    return truth, champion, challenger


def scored(variant: str, score: float, run: str) -> Scored:
    return Scored(variant, score, run, "sha")


POLICY = Policy(metric="accuracy", floor=None, max_slice_drop=None, min_effect=0.03, min_effect_source="test")


def test_a_small_real_gain_is_inconclusive_with_rows_needed_and_the_same_gain_on_more_rows_is_promoted() -> None:
    for scale, expected in ((1, INCONCLUSIVE), (12, PROMOTED)):  # 8 more right of 150 (+0.053), then x12
        n = 150 * scale
        truth, a, b = accuracy_pair(n, 15 * scale, 23 * scale, 30 * scale, seed=3)
        comparison = paired_comparison(truth, a, b, k=3, metric="accuracy", n_bootstrap=1000, seed=0)
        decision = decide(scored("new", 0.75, "b"), scored("old", 0.7, "a"), comparison, POLICY)
        assert decision.verdict == expected, decision.reason
        assert decision.power is not None and decision.power.n == n
        if expected == INCONCLUSIVE:
            assert not decision.promote and decision.power.more_rows > 0
            assert f"about {decision.power.more_rows} more labelled rows" in decision.reason
            assert decision.power.mde > POLICY.min_effect
    # a challenger clearly worse is "not better", however small the test set
    truth, a, worse = accuracy_pair(150, 40, 2, 20, seed=4)
    comparison = paired_comparison(truth, a, worse, k=3, metric="accuracy", n_bootstrap=1000)
    assert decide(scored("new", 0.5, "b"), scored("old", 0.75, "a"), comparison, POLICY).verdict == NOT_BETTER


def test_the_power_statement_uses_the_larger_rows_needed_and_is_in_the_record() -> None:
    truth, a, b = accuracy_pair(400, 30, 38, 60, seed=5)
    comparison = paired_comparison(truth, a, b, k=3, metric="accuracy", n_bootstrap=1000)
    power = statement(comparison, min_effect=0.02, source="x", power=0.8)
    assert power.rows_needed == max(power.mcnemar_rows_needed or 0, power.rows_needed or 0)
    record = decide(scored("new", 0.72, "b"), scored("old", 0.7, "a"), comparison, POLICY).to_json()
    assert record["verdict"] in (INCONCLUSIVE, NOT_BETTER, PROMOTED)
    assert {"mde", "rows_needed", "mcnemar_mde", "detectable", "more_rows_needed"} <= set(record["power"])


def test_holm_changes_a_borderline_decision_when_several_challengers_are_tested() -> None:
    from dataclasses import replace

    truth, a, b = accuracy_pair(2000, 95, 130, 400, seed=11)
    alone = paired_comparison(truth, a, b, k=3, metric="accuracy", n_bootstrap=1000)
    assert 0.005 < alone.p_value < 0.05, alone.p_value  # borderline: passes alone
    policy = replace(POLICY, min_effect=0.01)
    assert decide(scored("new", 0.725, "b"), scored("old", 0.7, "a"), alone, policy).promote
    others = [0.6, 0.9]  # two more challengers that show nothing
    adjusted = holm([alone.p_value, *others])
    assert adjusted[0] == pytest.approx(min(1.0, 3 * alone.p_value))
    family = replace(alone, p_adjusted=adjusted[0], correction="Holm")
    decision = decide(scored("new", 0.725, "b"), scored("old", 0.7, "a"), family, policy)
    assert not decision.promote and "Holm" in decision.reason
    assert next(c for c in decision.checks if c.name == "paired_p_value").passed is False


def test_holm_is_the_step_down_procedure() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_slices_carry_a_paired_interval_and_the_rule_decides_which_drop_counts() -> None:
    from dataclasses import replace

    task = Classification(labels=("a", "b", "c"))
    rng = np.random.default_rng(2)
    n = 600
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    domain = np.where(np.arange(n) < 560, "big", "small")
    truth = pd.DataFrame({"label": labels, "domain": domain})
    champion = pd.Series(np.where(rng.random(n) < 0.8, labels, "a"))
    challenger = champion.copy()
    small = np.flatnonzero(domain == "small")
    challenger.iloc[small[:3]] = np.where(labels[small[:3]] == "a", "b", "a")  # 3 of 40 rows broken: noise-sized
    tests = task.slice_tests(truth, champion, challenger, n_bootstrap=500, confidence=0.95, seed=0)
    assert {"domain/big", "domain/small", "class/a", "class/b", "class/c"} <= set(tests)
    small_test = tests["domain/small"]
    assert small_test.n == 40 and small_test.delta < 0 and small_test.ci_high >= 0  # a drop, not significant
    before = task.score(truth, champion)
    after = task.score(truth, challenger)
    policy = Policy(metric="macro_f1", floor=None, max_slice_drop=0.02)
    old, new = Scored("old", 0.8, "a", "s", task.slices(before)), Scored("new", 0.8, "b", "s", task.slices(after))
    overall = paired_comparison(np.zeros(3, int), np.zeros(3, int), np.zeros(3, int), k=1)
    point = decide(new, old, overall, policy, None, tests)
    check = next(c for c in point.checks if c.name == "slice:domain/small")
    assert check.passed is False and "significant: no" in check.detail and "drop larger than 0.02: yes" in check.detail
    significant = replace(policy, slice_rule="significant")
    relaxed = decide(new, old, overall, significant, None, tests)
    assert next(c for c in relaxed.checks if c.name == "slice:domain/small").passed is True
