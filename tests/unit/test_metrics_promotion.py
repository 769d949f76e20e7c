import numpy as np
import pandas as pd
import pytest

from variantlab.core.leaderboard import build_leaderboard, to_markdown
from variantlab.core.metrics import classification_metrics, confusion_array, confusion_frame
from variantlab.core.promotion import Policy, Scored, decide
from variantlab.core.statistics import metric_codes, paired_comparison, paired_regression
from variantlab.errors import DataError

SENTIMENT = ("negative", "neutral", "positive")


def test_metrics_by_hand() -> None:
    truth = pd.Series(["positive", "positive", "negative", "neutral"])
    pred = pd.Series(["positive", "negative", "negative", "neutral"])
    m = classification_metrics(truth, pred, pd.Series(["a", "a", "b", "b"]), SENTIMENT)
    assert m["accuracy"] == 0.75
    assert m["per_class"]["negative"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["per_domain"]["b"]["accuracy"] == 1.0
    cm = confusion_array(confusion_frame(truth, pred, SENTIMENT), SENTIMENT)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def scored(score: float, run: str = "r1", sha: str = "t", **kw: object) -> Scored:
    return Scored("v", score, run, sha, **kw)  # type: ignore[arg-type]


def noisy_pair(n: int, champion_acc: float, challenger_acc: float, seed: int = 0):
    """Integer-coded truth and two models' predictions with the given accuracies."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)

    def model(acc: float) -> np.ndarray:
        return np.where(rng.random(n) < acc, truth, (truth + rng.integers(1, 3, n)) % 3)

    return truth, model(champion_acc), model(challenger_acc)


def test_fast_macro_f1_matches_sklearn() -> None:
    from sklearn.metrics import f1_score

    truth, a, _ = noisy_pair(500, 0.6, 0.6)
    a[:40] = 2  # skew one class
    assert metric_codes(truth, a, 3) == pytest.approx(f1_score(truth, a, average="macro"))
    assert metric_codes(truth, a, 3, "accuracy") == pytest.approx(np.mean(truth == a))


def test_identical_models_have_a_zero_interval() -> None:
    truth, a, _ = noisy_pair(300, 0.7, 0.7)
    result = paired_comparison(truth, a, a.copy(), k=3, n_bootstrap=200)
    assert (result.delta, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


POLICY = Policy(floor=0.5, min_improvement=0.0, max_latency_ms=50, max_model_size_mb=100, max_slice_drop=0.05)


def test_first_champion_needs_the_floor_and_guardrails() -> None:
    assert decide(scored(0.6, latency_ms_p50=5.0, model_size_mb=10.0), None, None, POLICY).promote
    refused = decide(scored(0.4), None, None, POLICY)
    assert not refused.promote and "< floor" in refused.reason
    slow = decide(scored(0.9, latency_ms_p50=80.0, model_size_mb=500.0), None, None, POLICY)
    assert not slow.promote and "latency p50 80.0 ms > 50 ms" in slow.reason and "model size 500.0 MB" in slow.reason


def test_better_by_noise_only_is_refused() -> None:
    truth, champ, chall = noisy_pair(800, 0.70, 0.71, seed=3)
    comparison = paired_comparison(truth, champ, chall, k=3, n_bootstrap=1000)
    assert comparison.ci_low < 0 < comparison.ci_high
    decision = decide(scored(0.71, "new"), scored(0.70, "old"), comparison, POLICY)
    assert not decision.promote and decision.reason.startswith("not provably better")
    assert "95% CI" in decision.reason


def test_clearly_better_is_promoted() -> None:
    truth, champ, chall = noisy_pair(2000, 0.60, 0.75, seed=4)
    comparison = paired_comparison(truth, champ, chall, k=3, n_bootstrap=1000)
    assert comparison.ci_low > 0.08 and comparison.p_value < 1e-6
    decision = decide(scored(0.75, "new"), scored(0.60, "old"), comparison, POLICY)
    assert decision.promote and "beats champion" in decision.reason


def test_a_domain_that_drops_blocks_promotion() -> None:
    truth, champ, chall = noisy_pair(2000, 0.60, 0.75, seed=5)
    comparison = paired_comparison(truth, champ, chall, k=3)
    champion = scored(0.60, "old", slices={"domain/tweets": 0.70, "domain/nyt": 0.50})
    challenger = scored(0.75, "new", slices={"domain/tweets": 0.60, "domain/nyt": 0.90})
    decision = decide(challenger, champion, comparison, POLICY)
    assert not decision.promote
    assert decision.failed == ["domain/tweets drops 0.7000 -> 0.6000 (more than 0.05)"]


def test_the_decision_record_has_every_check_with_its_value_limit_and_verdict() -> None:
    truth, champ, chall = noisy_pair(2000, 0.60, 0.75, seed=5)
    comparison = paired_comparison(truth, champ, chall, k=3)
    champion = scored(0.60, "old", slices={"domain/tweets": 0.70, "class/positive": 0.50})
    challenger = scored(
        0.75, "new", latency_ms_p50=80.0, model_size_mb=10.0, slices={"domain/tweets": 0.60, "class/positive": 0.9}
    )
    decision = decide(challenger, champion, comparison, POLICY)
    checks = {c.name: c for c in decision.checks}
    assert list(checks) == [
        "confidence_bound",
        "paired_p_value",
        "wins_over_losses",
        "latency_ms_p50",
        "model_size_mb",
        "slice:class/positive",
        "slice:domain/tweets",
    ]
    bound = checks["confidence_bound"]
    assert (bound.value, bound.limit, bound.rule, bound.passed) == (comparison.ci_low, 0.0, ">", True)
    assert checks["paired_p_value"].limit == pytest.approx(0.05) and checks["paired_p_value"].passed is True
    assert (checks["latency_ms_p50"].value, checks["latency_ms_p50"].limit, checks["latency_ms_p50"].passed) == (
        80.0,
        50,
        False,
    )
    assert checks["model_size_mb"].passed is True
    assert checks["slice:domain/tweets"].value == pytest.approx(0.1) and checks["slice:domain/tweets"].passed is False
    assert checks["slice:class/positive"].passed is True  # it rose
    failed = [c.name for c in decision.checks if c.passed is False]
    assert failed == ["latency_ms_p50", "slice:domain/tweets"] and len(decision.failed) == 2
    # The first champion: the floor and the baseline's comparison are checks too; slices do not apply yet.
    first = decide(challenger, None, comparison, POLICY, reference=scored(0.6, "base"))
    names = [c.name for c in first.checks]
    assert names[:4] == ["floor", "confidence_bound", "paired_p_value", "wins_over_losses"]
    assert [c.passed for c in first.checks if c.name.startswith("slice:")] == [None, None]
    assert decide(challenger, None, None, Policy(floor=None)).checks[0].passed is None  # no floor declared


def test_same_run_is_already_champion_and_test_sets_must_match() -> None:
    assert "already the champion" in decide(scored(0.9, "r"), scored(0.9, "r"), None, POLICY).reason
    with pytest.raises(ValueError, match="different test sets"):
        decide(scored(0.9, sha="a"), scored(0.5, "o", sha="b"), None, POLICY)


def test_leaderboard_ranks_by_validation_not_by_the_test_set() -> None:
    ev = {
        "a": {
            "accuracy": 0.5,
            "macro_f1": 0.4,
            "per_class": {"positive": {"f1": 0.4}},
            "per_domain": {"x": {"macro_f1": 0.4}},
        },
        "b": {
            "accuracy": 0.6,
            "macro_f1": 0.7,
            "per_class": {"positive": {"f1": 0.7}},
            "per_domain": {"x": {"macro_f1": 0.7}},
        },
    }
    # b is better on the test set, a on validation: a is ranked first (it is the one the gate will test).
    trains = {"a": {"kind": "probe", "val_macro_f1": 0.65}, "b": {"kind": "tfidf-logreg", "val_macro_f1": 0.6}}
    board = build_leaderboard(ev, trains, "macro_f1")
    assert board["variant"].tolist() == ["a", "b"]
    assert board["rank"].tolist() == [1, 2]
    md = to_markdown(board)
    assert md.splitlines()[0].startswith("| rank | variant | kind | val_macro_f1 | accuracy | macro_f1")
    assert md.splitlines()[2].startswith("| 1 | a | probe | 0.6500 | 0.5000 | 0.4000")
    assert np.isclose(board.loc[1, "macro_f1@x"], 0.7)
    trains["b"] = {"kind": "tfidf-logreg", "val_macro_f1": 0.9}
    assert build_leaderboard(ev, trains, "macro_f1")["variant"].tolist() == ["b", "a"]
    lower = build_leaderboard(ev, trains, "macro_f1", higher_is_better=False)
    assert lower["variant"].tolist() == ["a", "b"]
    with pytest.raises(DataError, match="no validation macro_f1 recorded for b"):
        build_leaderboard(ev, {"a": trains["a"], "b": {"kind": "tfidf-logreg"}}, "macro_f1")


def test_first_champion_must_provably_beat_the_baseline() -> None:
    truth, baseline, best = noisy_pair(2000, 0.60, 0.75)
    clear = paired_comparison(truth, baseline, best, k=3, n_bootstrap=500)
    ok = decide(scored(0.75), None, clear, POLICY, reference=scored(0.60, run="r0"))
    assert ok.promote and "beats baseline v" in ok.reason and "CI [+" in ok.reason
    truth, baseline, best = noisy_pair(2000, 0.70, 0.70, seed=3)
    tie = paired_comparison(truth, baseline, best, k=3, n_bootstrap=500)
    refused = decide(scored(0.70), None, tie, POLICY, reference=scored(0.70, run="r0"))
    assert not refused.promote and refused.reason.startswith("not provably better than baseline v")


def test_binary_metrics_add_roc_and_pr_auc() -> None:
    truth = pd.Series(["spam", "ham", "spam", "ham"])
    pred = pd.Series(["spam", "ham", "ham", "ham"])
    score = np.array([0.9, 0.2, 0.4, 0.3])
    m = classification_metrics(
        truth, pred, pd.Series(["d"] * 4), ("ham", "spam"), positive_score=score, positive_label="spam"
    )
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["per_class"]["spam"]["recall"] == 0.5


def test_regression_metrics_by_hand() -> None:
    from variantlab.core.metrics import regression_metrics

    m = regression_metrics(pd.Series([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]), pd.Series(list("aabb")))
    assert m["mae"] == 0.5 and m["rmse"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1 - 4 / 5) and m["spearman"] == pytest.approx(1.0)
    assert m["per_domain"]["a"]["mae"] == 0.0 and m["per_domain"]["b"]["mae"] == 1.0


def test_regression_gate_uses_the_absolute_errors() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=800)
    champion = truth + rng.normal(scale=1.0, size=800)
    challenger = truth + rng.normal(scale=0.5, size=800)
    better = paired_regression(truth, champion, challenger, metric="mae", n_bootstrap=300)
    assert better.test == "wilcoxon" and better.delta > 0.2 and better.ci_low > 0 and better.p_value < 1e-6
    assert better.wins > better.losses
    worse = paired_regression(truth, challenger, champion, metric="mae", n_bootstrap=300)
    assert worse.delta < 0 and worse.ci_high < 0
    policy = Policy(metric="mae", floor=None, higher_is_better=False)
    assert decide(scored(0.4), scored(0.8, run="r0"), better, policy).promote
    assert not decide(scored(0.8), scored(0.4, run="r0"), worse, policy).promote
    for metric in ("rmse", "r2", "spearman"):
        assert paired_regression(truth, champion, challenger, metric=metric, n_bootstrap=200).ci_low > 0, metric


def test_a_lower_is_better_floor_and_slice_rise() -> None:
    policy = Policy(metric="mae", floor=1.0, max_slice_drop=0.1, higher_is_better=False)
    assert decide(scored(0.9), None, None, policy).promote
    assert "> floor 1.0" in decide(scored(1.2), None, None, policy).reason
    champion = scored(0.8, run="r0", slices={"domain/a": 0.5})
    challenger = scored(0.7, slices={"domain/a": 0.7})
    rising = paired_regression(np.zeros(50), np.ones(50), np.full(50, 0.5), n_bootstrap=100)
    assert "domain/a rises 0.5000 -> 0.7000" in decide(challenger, champion, rising, policy).reason
