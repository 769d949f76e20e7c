"""Stage ``promote``: register the leaderboard's best variant as ``@challenger``; it becomes ``@champion`` only
when a paired comparison on the frozen test set shows it is better and every guardrail holds.

The decision is taken outside the registry lock (scoring the champion takes seconds); the lock is then taken,
the champion re-read, and if it moved in the meantime the decision is taken again against the new one
(compare-and-set), so two pipelines promoting at once end with one champion and one consistent history.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.core.task import Task
from variantlab.errors import ConfigError
from variantlab.stages.context import StageContext

MAX_ATTEMPTS = 5


@dataclass
class Candidate:
    """The challenger (or the baseline) as the local pipeline outputs describe it."""

    scored: Any  # core.promotion.Scored
    predictions: Any  # pd.Series of labels (or numbers), in test-set order
    evaluated: dict[str, Any]
    trained: dict[str, Any]


def load_candidate(ctx: StageContext, variant: str, test: Any, task: Task) -> Candidate:
    import pandas as pd

    from variantlab.core.promotion import Scored
    from variantlab.io.files import read_json

    evaluated = read_json(ctx.path(paths.eval_metrics(variant)))
    trained = read_json(ctx.path(paths.train_metrics(variant)))
    frame = pd.read_parquet(ctx.path(paths.predictions_path(variant))).set_index("id")
    predictions = task.answers(frame.loc[test["id"], "predicted"].to_numpy(), test.index)
    scored = Scored(
        variant,
        float(evaluated[ctx.params.metric]),
        trained["mlflow_run_id"],
        evaluated["test_sha256"],
        task.slices(evaluated),
        evaluated.get("latency_ms_p50"),
        trained.get("model_size_mb"),
    )
    return Candidate(scored, predictions, evaluated, trained)


def _score_champion(ctx: StageContext, version: Any, test: Any, test_sha256: str, task: Task) -> tuple[Any, Any]:
    """Re-score the current champion on today's frozen test set: (Scored, predictions)."""
    from variantlab.core import timing
    from variantlab.core.promotion import Scored
    from variantlab.io.models import load_pyfunc

    info(f"promote: scoring the champion (version {version.version}) on the frozen test set")
    model = load_pyfunc(f"models:/{ctx.params.registered_model}/{version.version}")
    with timing.compute():
        answers = model.predict(test[["text"]])
    try:
        pred = task.answers(answers, test.index)
        metrics = task.score(test, pred)
    except ValueError as error:
        raise ConfigError(
            f"the champion (version {version.version}) does not fit this task ({error}): "
            "a new task needs its own registered model (project.name)"
        ) from None
    metric = ctx.params.metric
    if metric not in metrics:
        raise ConfigError(f"the champion cannot be scored by {metric} (a binary metric needs probabilities)")
    scored = Scored(
        version.tags.get("variant", "?"), float(metrics[metric]), version.run_id, test_sha256, task.slices(metrics)
    )
    return scored, pred


def _compare(ctx: StageContext, test: Any, theirs: Any, mine: Any, task: Task) -> Any:
    cfg = ctx.params.promotion
    return task.paired_test(
        test,
        theirs,
        mine,
        metric=ctx.params.metric,
        n_bootstrap=cfg.n_bootstrap,
        confidence=cfg.confidence,
        seed=ctx.params.project.seed,
    )


def min_effect(params: Any, task: Task, frame: Any) -> tuple[float, str]:
    """The gain worth detecting, and where it comes from (the offline gate's and the online gate's alike):
    promotion.min_effect, else min_improvement when above 0, else the task's default on ``frame``."""
    cfg = params.promotion
    if cfg.min_effect is not None:
        return cfg.min_effect, "promotion.min_effect"
    if cfg.min_improvement > 0:
        return cfg.min_improvement, "promotion.min_improvement"
    value = task.default_min_effect(params.metric, frame)
    return value, f"the {task.kind} task's default for {params.metric}"


def policy_of(ctx: StageContext, task: Task, test: Any) -> Any:
    from variantlab.core.promotion import Policy

    cfg = ctx.params.promotion
    effect, source = min_effect(ctx.params, task, test)
    return Policy(
        ctx.params.metric,
        ctx.params.floor,
        cfg.min_improvement,
        cfg.max_latency_ms,
        cfg.max_model_size_mb,
        cfg.max_slice_drop,
        task.higher_is_better(ctx.params.metric),
        effect,
        source,
        cfg.power,
        cfg.slice_rule,
    )


@dataclass
class Gate:
    """One gate pass: the decision about the chosen challenger, and every challenger tested with it."""

    decision: Any
    chosen: Candidate
    family: list[dict[str, Any]]
    correction: str


def _holm(comparisons: list[Any]) -> tuple[list[Any], str]:
    from dataclasses import replace

    from variantlab.core.statistics import holm

    if len(comparisons) < 2:
        return comparisons, "none needed"
    adjusted = holm([c.p_value for c in comparisons])
    return [replace(c, p_adjusted=p, correction="Holm") for c, p in zip(comparisons, adjusted, strict=True)], "Holm"


def _decide(
    ctx: StageContext, current: Any, ranked: list[Candidate], baseline: Candidate | None, test: Any, task: Task
) -> Gate:
    """Test the challengers (best on validation first) against the champion, or with none yet against the
    baseline; Holm-correct the family when there are several; the first (on validation) that passes is chosen."""
    from variantlab.core.promotion import Scored, decide

    policy = policy_of(ctx, task, test)
    best = ranked[0]
    if current is not None and any(c.scored.run_id == current.run_id for c in ranked[:1]):
        own = Scored(best.scored.variant, best.scored.score, current.run_id, best.scored.test_sha256)
        return Gate(decide(best.scored, own, None, policy), best, [], "none needed")
    if current is None and baseline is None:
        return Gate(decide(best.scored, None, None, policy), best, [], "none needed")
    if current is None:
        assert baseline is not None
        reference, against = baseline.predictions, None
    else:
        champion, reference = _score_champion(ctx, current, test, best.scored.test_sha256, task)
        against = champion
    tested = [c for c in ranked if current is None or c.scored.run_id != current.run_id]
    comparisons, correction = _holm([_compare(ctx, test, reference, c.predictions, task) for c in tested])
    cfg = ctx.params.promotion
    decisions = []
    for candidate, comparison in zip(tested, comparisons, strict=True):
        slices = None
        if against is not None and policy.max_slice_drop is not None:
            slices = task.slice_tests(
                test,
                reference,
                candidate.predictions,
                n_bootstrap=cfg.n_bootstrap,
                confidence=cfg.confidence,
                seed=ctx.params.project.seed,
            )
        reference_scored = None if against is not None else baseline.scored if baseline else None
        decisions.append(decide(candidate.scored, against, comparison, policy, reference_scored, slices))
    family = [
        {
            "variant": d.challenger.variant,
            "verdict": d.verdict,
            "delta": c.delta,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "p_value": c.p_value,
            "p_adjusted": c.p_adjusted,
            "mde": d.power.mde if d.power else None,
        }
        for d, c in zip(decisions, comparisons, strict=True)
    ]
    index = next((i for i, d in enumerate(decisions) if d.promote), 0)
    return Gate(decisions[index], tested[index], family, correction)


def _register(ctx: StageContext, best: Candidate, digest: str, reason: str, decision: Any) -> tuple[str, list[Any]]:
    """Register ``best``, mark it ``@challenger`` and, if the decision says so, ``@champion``. Under the lock."""
    from variantlab.io import registry
    from variantlab.io.tracking import PARENT_ENV, git_commit

    trained, evaluated = best.trained, best.evaluated
    name, metric = ctx.params.registered_model, ctx.params.metric
    variant = best.scored.variant
    headline = ctx.task().metrics
    tags = {
        "variant": variant,
        "strategy": trained["kind"],
        "task": str(evaluated.get("task", "classification")),
        "test_sha256": evaluated["test_sha256"],
        **{key: f"{evaluated[key]:.6f}" for key in dict.fromkeys((metric, *headline)) if key in evaluated},
        "train_run_id": trained["mlflow_run_id"],
        "evaluate_run_id": evaluated["mlflow_run_id"],
        "artifact_sha256": digest,
        "pipeline_run_id": os.environ.get(PARENT_ENV, ""),
        "verdict": decision.verdict,
        **power_tags(decision),
    }
    description = (
        f"{variant} ({trained['kind']}): trained in run {trained['mlflow_run_id']} on {trained['n_train']} "
        f"texts of the training split, evaluated in run {evaluated['mlflow_run_id']} on the frozen test set "
        f"(sha256 {evaluated['test_sha256'][:12]}, {evaluated['n_test']} texts): {metric} "
        f"{evaluated[metric]:.4f}. Pipeline run {os.environ.get(PARENT_ENV) or 'none (plain dvc repro)'}, "
        f"git commit {git_commit(ctx.root)[:12]}; the runs' inputs name the data (MLflow datasets, DVC md5s). "
        + (
            f"Promoted to @champion: {reason}"
            if decision.promote
            else f"Not promoted (@challenger only; {decision.verdict}): {reason}"
        )
    )
    version = registry.register(
        name, trained["model_uri"], run_id=trained["mlflow_run_id"], tags=tags, description=description
    )
    pipeline = os.environ.get(PARENT_ENV, "")
    targets = [(registry.CHALLENGER, "challenger")] + ([(registry.CHAMPION, "promote")] if decision.promote else [])
    moves = [
        registry.move_alias(name, alias, version.version, action=action, reason=reason, pipeline_run_id=pipeline)
        for alias, action in targets
    ]
    return version.version, moves


def selection(board: Any, metric: str) -> dict[str, Any]:
    """How the challenger was chosen: every variant's validation score (and its test score, for the record)."""
    by = f"val_{metric}"
    return {
        "by": by,
        "split": "validation",
        "challenger": str(board.iloc[0]["variant"]),
        "ranking": [
            {"variant": str(row["variant"]), by: float(row[by]), f"test_{metric}": float(row[metric])}
            for _, row in board.iterrows()
        ],
    }


def multiple_testing(gate: Gate, comparison: Any) -> dict[str, Any]:
    tested = len(gate.family) if gate.family else (0 if comparison is None else 1)
    if tested > 1:
        why = (
            f"the top {tested} variants on the validation split were each tested on the frozen test set; Holm's "
            "step-down correction holds the family-wise error at alpha, and the best on validation that passes "
            "the corrected test is the one promoted"
        )
    else:
        why = (
            "one challenger, the variant ranked first on the validation split, is tested on the frozen "
            "test set (against the champion, or with none yet against the baseline); no other variant is "
            "tested, so there is no family of tests whose error rate needs a correction such as Holm's"
        )
    return {"hypotheses_tested": tested, "correction": gate.correction, "why": why, "family": gate.family}


def power_tags(decision: Any) -> dict[str, str]:
    """The power statement as MLflow tags (and registry version tags)."""
    if decision.power is None:
        return {}
    power = decision.power
    tags = {
        "mde": f"{power.mde:.6f}",
        "min_effect": f"{power.min_effect:g}",
        "power": f"{power.power:g}",
        "rows_needed": str(power.rows_needed) if power.rows_needed is not None else "",
        "n_test": str(power.n),
    }
    if power.mcnemar_mde is not None:
        tags["mcnemar_mde"] = f"{power.mcnemar_mde:.6f}"
    return tags


def _version_of(current: Any) -> str | None:
    return None if current is None else str(current.version)


def run(ctx: StageContext, *, dry: bool = False) -> int:
    import mlflow
    import pandas as pd

    from variantlab.errors import TrackingError
    from variantlab.io import registry
    from variantlab.io.files import write_json
    from variantlab.io.models import model_digest
    from variantlab.io.tracking import PARENT_ENV, attach_decision, configure, stage_run

    cfg = ctx.params.promotion
    name = ctx.params.registered_model
    task = ctx.task()
    board = pd.read_csv(ctx.path(paths.LEADERBOARD_CSV))
    best_name = str(board.iloc[0]["variant"])
    test = pd.read_parquet(ctx.path(paths.split_path("test")))
    names = [str(v) for v in board["variant"] if str(v) == best_name or str(v) != cfg.baseline][: cfg.challengers]
    ranked = [load_candidate(ctx, variant, test, task) for variant in names]
    baseline = None
    if cfg.baseline is not None and cfg.baseline != best_name and cfg.baseline in set(board["variant"]):
        baseline = load_candidate(ctx, cfg.baseline, test, task)
    configure(ctx.root, ctx.params.project.name)
    tracked = contextlib.nullcontext() if dry else stage_run("promote", root=ctx.root, project=ctx.params.project.name)
    digests: dict[str, str] = {}
    with tracked:
        if not dry:
            mlflow.set_tag("variant", best_name)
        best = ranked[0]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            current = registry.champion(name)
            gate = _decide(ctx, current, ranked, baseline, test, task)
            decision, best = gate.decision, gate.chosen
            version: str | None = None
            moves: list[Any] = []
            if dry or "already champion" in decision.failed:
                break
            uri = best.trained["model_uri"]
            digests[uri] = digests.get(uri) or model_digest(uri)  # once, not on every re-decision
            digest = digests[uri]
            with registry.registry_lock(name):
                now = registry.champion(name)
                if _version_of(now) != _version_of(current):
                    info(
                        f"promote: @champion moved from v{_version_of(current)} to v{_version_of(now)} while "
                        f"deciding (attempt {attempt}); deciding again against the new champion"
                    )
                    continue
                version, moves = _register(ctx, best, digest, decision.reason, decision)
            break
        else:
            raise TrackingError(f"@champion of '{name}' kept moving; gave up after {MAX_ATTEMPTS} tries")
        if not dry and best.scored.variant != best_name:
            mlflow.set_tag("variant", best.scored.variant)
        after = registry.champion(name)
        comparison = decision.comparison
        report = {
            **decision.to_json(),
            "selection": selection(board, ctx.params.metric),
            "verdict": decision.verdict,
            "multiple_testing": multiple_testing(gate, comparison),
            "against": "champion" if decision.champion else ("baseline" if decision.reference else "floor"),
            "dry_run": dry,
            "attempts": attempt,
            "registered_model": name,
            "registered_version": version,
            "champion_before": _version_of(current),
            "champion_after": _version_of(after),
            "alias_moves": [m.__dict__ for m in moves],
        }
        if dry:
            write_json(ctx.path(paths.PROMOTION_DRY_RUN), report)
        else:
            mlflow.log_dict(report, "promotion.json")
            mlflow.log_text(registry.history_jsonl(name), "alias_history.jsonl")
            if comparison is not None:
                mlflow.log_metrics(
                    {
                        "delta": comparison.delta,
                        "ci_low": comparison.ci_low,
                        "ci_high": comparison.ci_high,
                        "paired_p": comparison.p_value,
                        **({"mde": decision.power.mde} if decision.power else {}),
                    }
                )
            decided = {
                "promoted": str(decision.promote).lower(),
                "verdict": decision.verdict,
                "reason": decision.reason[:5000],
                **power_tags(decision),
            }
            mlflow.set_tags(decided)
            write_json(ctx.path(paths.PROMOTION_REPORT), report)
            parent = os.environ.get(PARENT_ENV)
            if parent:  # the decision where people look first: the pipeline run, beside the leaderboard
                attach_decision(ctx.root, parent)
    verb = ("would promote" if dry else "promoted") if decision.promote else f"not promoted ({decision.verdict})"
    where = f"; report: {paths.PROMOTION_DRY_RUN}" if dry else ""
    variant = decision.challenger.variant
    info(f"promote: {verb} {variant}: {decision.reason}; {name}@champion = v{report['champion_after']}{where}")
    return 0


def _run_from_argv(argv: Sequence[str]) -> int:
    from variantlab.stages.context import parse_stage_args

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dry-run", action="store_true", help="decide and report, move no alias, register nothing")
    known, rest = parser.parse_known_args(argv)
    ctx = parse_stage_args("Register the best variant and promote it if it is provably better.", rest)
    return run(ctx, dry=bool(known.dry_run))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    return guarded("promote", lambda: _run_from_argv(args), args)


if __name__ == "__main__":
    raise SystemExit(main())
