"""The promotion decision: a pure function of the challenger, the champion, their paired comparison and the policy.

A challenger becomes champion only when it is provably better (the lower confidence bound of the paired
bootstrap beats the threshold, and McNemar's test agrees) and every guardrail holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from variantlab.core.power import PowerStatement, statement
from variantlab.core.statistics import PairedComparison

PROMOTED, NOT_BETTER, INCONCLUSIVE = "promoted", "not better", "inconclusive"


@dataclass(frozen=True)
class Scored:
    """One model's standing on the frozen test set."""

    variant: str
    score: float
    run_id: str | None
    test_sha256: str
    slices: dict[str, float] = field(default_factory=dict)  # "domain/<d>" and "class/<c>" scores
    latency_ms_p50: float | None = None
    model_size_mb: float | None = None


@dataclass(frozen=True)
class Policy:
    metric: str = "macro_f1"
    floor: float | None = 0.5  # a maximum when lower is better (MAE, RMSE)
    min_improvement: float = 0.0
    max_latency_ms: float | None = None
    max_model_size_mb: float | None = None
    max_slice_drop: float | None = None
    higher_is_better: bool = True  # of the metric and of every slice score
    min_effect: float = 0.01  # the gain worth detecting: what the power statement and "inconclusive" are about
    min_effect_source: str = "default"
    power: float = 0.8
    slice_rule: str = "point"  # "significant": a slice fails only when its drop is also significant

    def reaches_floor(self, score: float) -> bool:
        if self.floor is None:
            return True
        return score >= self.floor if self.higher_is_better else score <= self.floor


@dataclass(frozen=True)
class Check:
    """One line of the decision record: what was measured, the limit it is held to, and the verdict.

    ``passed`` is None when the check does not apply (no champion to compare slices with, no limit set)."""

    name: str
    value: float | None
    limit: float | None
    rule: str  # how value and limit compare for a pass: ">=", "<=", ">", "<"
    passed: bool | None
    detail: str = ""


def _check(name: str, value: float | None, limit: float | None, rule: str, detail: str = "") -> Check:
    if value is None or limit is None:
        return Check(name, value, limit, rule, None, detail or "not applicable")
    ok = {">=": value >= limit, "<=": value <= limit, ">": value > limit, "<": value < limit}[rule]
    return Check(name, value, limit, rule, bool(ok), detail)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: Scored
    champion: Scored | None
    comparison: PairedComparison | None = None
    failed: list[str] = field(default_factory=list)
    reference: Scored | None = None
    checks: list[Check] = field(default_factory=list)
    verdict: str = ""  # promoted, not better, or inconclusive
    power: PowerStatement | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.power is not None:
            out["power"]["detectable"] = self.power.detectable
            out["power"]["more_rows_needed"] = self.power.more_rows
        return out


def _slice_check(
    name: str, before: float, after: float, policy: Policy, test: PairedComparison | None
) -> tuple[Check, str]:
    """One slice guardrail: is the drop larger than max_slice_drop (point), and is it significant (its paired
    interval lies wholly on the worse side of zero)? ``slice_rule`` says which counts."""
    assert policy.max_slice_drop is not None
    sign = 1.0 if policy.higher_is_better else -1.0
    drop = sign * (before - after)
    worse = "drops" if policy.higher_is_better else "rises"
    large = drop > policy.max_slice_drop
    significant = None if test is None else bool(test.ci_high < 0)
    detail = f"champion {before:.4f} -> {after:.4f}"
    if test is not None:
        detail += (
            f"; change {test.delta:+.4f}, {test.confidence:.0%} CI [{test.ci_low:+.4f}, {test.ci_high:+.4f}] "
            f"on {test.n} rows; drop larger than {policy.max_slice_drop:g}: {'yes' if large else 'no'}; "
            f"significant: {'yes' if significant else 'no'}"
        )
    failed = large and (policy.slice_rule == "point" or significant is not False)
    check = Check(f"slice:{name}", drop, policy.max_slice_drop, "<=", not failed, detail)
    why = f"{name} {worse} {before:.4f} -> {after:.4f} (more than {policy.max_slice_drop:g}"
    why += ", significantly)" if policy.slice_rule == "significant" and significant else ")"
    return check, why


def guardrail_checks(
    challenger: Scored,
    champion: Scored | None,
    policy: Policy,
    slice_tests: dict[str, PairedComparison] | None = None,
) -> list[tuple[Check, str]]:
    """Latency, size and every slice, each with the failure message it gives when it fails."""
    out = [
        (
            _check("latency_ms_p50", challenger.latency_ms_p50, policy.max_latency_ms, "<="),
            f"latency p50 {challenger.latency_ms_p50 or 0:.1f} ms > {policy.max_latency_ms or 0:g} ms",
        ),
        (
            _check("model_size_mb", challenger.model_size_mb, policy.max_model_size_mb, "<="),
            f"model size {challenger.model_size_mb or 0:.1f} MB > {policy.max_model_size_mb or 0:g} MB",
        ),
    ]
    if champion is None or policy.max_slice_drop is None:
        why = "no champion to compare with" if champion is None else "promotion.max_slice_drop is null"
        for name in sorted(challenger.slices):
            out.append((Check(f"slice:{name}", challenger.slices[name], None, "<=", None, why), ""))
        return out
    for name, before in sorted(champion.slices.items()):
        after = challenger.slices.get(name, 0.0 if policy.higher_is_better else float("inf"))
        out.append(_slice_check(name, before, after, policy, (slice_tests or {}).get(name)))
    return out


def guardrail_failures(
    challenger: Scored,
    champion: Scored | None,
    policy: Policy,
    slice_tests: dict[str, PairedComparison] | None = None,
) -> list[str]:
    checks = guardrail_checks(challenger, champion, policy, slice_tests)
    return [message for check, message in checks if check.passed is False]


def comparison_checks(comparison: PairedComparison, policy: Policy, against: str) -> list[Check]:
    """The paired comparison's three conditions: the lower confidence bound, the paired test, more wins."""
    alpha = 1 - comparison.confidence
    name = TEST_NAMES.get(comparison.test, comparison.test)
    return [
        _check(
            "confidence_bound",
            comparison.ci_low,
            policy.min_improvement,
            ">",
            f"lower {comparison.confidence:.0%} bound of the {policy.metric} gain over {against}",
        ),
        _check(
            "paired_p_value",
            comparison.p_gate,
            alpha,
            "<",
            f"{name} test against {against}"
            + ("" if comparison.p_adjusted is None else f" ({comparison.correction}; raw p {comparison.p_value:.3g})"),
        ),
        _check(
            "wins_over_losses",
            float(comparison.wins - comparison.losses),
            0.0,
            ">",
            f"{comparison.wins} texts only the challenger gets right (or closer), {comparison.losses} only {against}",
        ),
    ]


TEST_NAMES = {"mcnemar": "McNemar", "wilcoxon": "Wilcoxon"}


def _interval(comparison: PairedComparison, metric: str) -> str:
    adjusted = "" if comparison.p_adjusted is None else f" ({comparison.correction} p={comparison.p_adjusted:.2g})"
    return (
        f"{metric} gain {comparison.delta:+.4f}, {comparison.confidence:.0%} CI "
        f"[{comparison.ci_low:+.4f}, {comparison.ci_high:+.4f}], "
        f"{TEST_NAMES.get(comparison.test, comparison.test)} p={comparison.p_value:.2g}{adjusted}"
    )


def _not_better(comparison: PairedComparison, policy: Policy, against: str) -> str | None:
    """Why the paired comparison does not show the challenger better than ``against`` (None if it does)."""
    interval = _interval(comparison, policy.metric)
    alpha = 1 - comparison.confidence
    if comparison.ci_low <= policy.min_improvement:
        return f"not provably better than {against}: {interval}; the lower bound must exceed {policy.min_improvement:g}"
    if comparison.p_gate >= alpha or comparison.wins <= comparison.losses:
        name = TEST_NAMES.get(comparison.test, comparison.test)
        return f"not provably better than {against}: {interval}; {name} p must be below {alpha:.2g} with more wins"
    return None


def verdict_of(
    promote: bool, comparison: PairedComparison | None, power: PowerStatement | None, evidence_failed: bool
) -> str:
    """promoted; inconclusive (the interval still holds a gain of min_effect, but this test set could not detect
    it); or not better (the interval rules such a gain out, the floor or a guardrail fails, or it is the champion)."""
    if promote:
        return PROMOTED
    if (
        evidence_failed
        and comparison is not None
        and power is not None
        and comparison.ci_high >= power.min_effect
        and not power.detectable
    ):
        return INCONCLUSIVE
    return NOT_BETTER


def _finish(
    promote: bool,
    reason: str,
    challenger: Scored,
    champion: Scored | None,
    comparison: PairedComparison | None,
    failures: list[str],
    reference: Scored | None,
    checks: list[Check],
    policy: Policy,
    evidence_failed: bool,
) -> Decision:
    power = None
    if comparison is not None:
        power = statement(comparison, min_effect=policy.min_effect, source=policy.min_effect_source, power=policy.power)
    verdict = verdict_of(promote, comparison, power, evidence_failed)
    if verdict == INCONCLUSIVE and power is not None:
        reason = (
            f"{reason}; inconclusive: the interval still includes a gain of {policy.min_effect:g}, which this test "
            f"set cannot detect ({power.sentence(policy.metric)}: about {power.more_rows} more labelled rows)"
        )
    elif power is not None:
        reason = f"{reason}; {power.sentence(policy.metric)}"
    return Decision(
        promote, reason, policy.metric, challenger, champion, comparison, failures, reference, checks, verdict, power
    )


def decide(
    challenger: Scored,
    champion: Scored | None,
    comparison: PairedComparison | None,
    policy: Policy,
    reference: Scored | None = None,
    slice_tests: dict[str, PairedComparison] | None = None,
) -> Decision:
    """Both scores must come from the same frozen test set (the caller re-scores the champion).

    Without a champion, ``comparison`` (if given) is against ``reference``, the baseline variant: the first
    champion must clear the floor and provably beat the baseline. ``slice_tests``: each guarded slice's paired
    comparison against the champion (its change with an interval).
    """
    guards = guardrail_checks(challenger, champion, policy, slice_tests)
    failures = [message for check, message in guards if check.passed is False]
    checks = [check for check, _ in guards]
    metric = policy.metric
    evidence_failed = False
    if champion is None:
        checks.insert(
            0,
            _check(
                "floor",
                challenger.score,
                policy.floor,
                ">=" if policy.higher_is_better else "<=",
                f"the first champion's {metric}" if policy.floor is not None else "no floor declared",
            ),
        )
        op, bad = (">=", "<") if policy.higher_is_better else ("<=", ">")
        evidence = f"no champion yet and {metric} {challenger.score:.4f} {op} floor {policy.floor}"
        if policy.floor is None:
            evidence = f"no champion yet ({metric} {challenger.score:.4f}; no floor declared)"
        if not policy.reaches_floor(challenger.score):
            failures.insert(0, f"no champion yet but {metric} {challenger.score:.4f} {bad} floor {policy.floor}")
        if reference is not None and comparison is not None:
            against = f"baseline {reference.variant}"
            checks[1:1] = comparison_checks(comparison, policy, against)
            if (why := _not_better(comparison, policy, against)) is not None:
                failures.insert(0, why)
                evidence_failed = True
            evidence += f"; beats {against}: {_interval(comparison, metric)}"
    else:
        if champion.test_sha256 != challenger.test_sha256:
            raise ValueError("champion and challenger were scored on different test sets")
        if champion.run_id is not None and champion.run_id == challenger.run_id:
            return Decision(
                False,
                f"'{challenger.variant}' is already the champion",
                metric,
                challenger,
                champion,
                comparison,
                ["already champion"],
                verdict=NOT_BETTER,
            )
        if comparison is None:
            raise ValueError("a champion needs a paired comparison")
        against = f"champion {champion.variant}"
        checks[0:0] = comparison_checks(comparison, policy, against)
        if (why := _not_better(comparison, policy, against)) is not None:
            failures.insert(0, why)
            evidence_failed = True
        evidence = f"beats {against}: {_interval(comparison, metric)}"
    if failures:
        return _finish(
            False,
            "; ".join(failures),
            challenger,
            champion,
            comparison,
            failures,
            reference,
            checks,
            policy,
            evidence_failed,
        )
    return _finish(True, evidence, challenger, champion, comparison, [], reference, checks, policy, False)
