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


def _decide(ctx: StageContext, current: Any, best: Candidate, baseline: Candidate | None, test: Any, task: Task) -> Any:
    from variantlab.core.promotion import Policy, Scored, decide

    cfg = ctx.params.promotion
    policy = Policy(
        ctx.params.metric,
        ctx.params.floor,
        cfg.min_improvement,
        cfg.max_latency_ms,
        cfg.max_model_size_mb,
        cfg.max_slice_drop,
        task.higher_is_better(ctx.params.metric),
    )
    challenger = best.scored
    if current is None:
        if baseline is None:
            return decide(challenger, None, None, policy)
        comparison = _compare(ctx, test, baseline.predictions, best.predictions, task)
        return decide(challenger, None, comparison, policy, reference=baseline.scored)
    if current.run_id == challenger.run_id:
        return decide(
            challenger,
            Scored(challenger.variant, challenger.score, current.run_id, challenger.test_sha256),
            None,
            policy,
        )
    champion, theirs = _score_champion(ctx, current, test, challenger.test_sha256, task)
    return decide(challenger, champion, _compare(ctx, test, theirs, best.predictions, task), policy)


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
    }
    description = (
        f"{variant} ({trained['kind']}): trained in run {trained['mlflow_run_id']} on {trained['n_train']} "
        f"texts of the training split, evaluated in run {evaluated['mlflow_run_id']} on the frozen test set "
        f"(sha256 {evaluated['test_sha256'][:12]}, {evaluated['n_test']} texts): {metric} "
        f"{evaluated[metric]:.4f}. Pipeline run {os.environ.get(PARENT_ENV) or 'none (plain dvc repro)'}, "
        f"git commit {git_commit(ctx.root)[:12]}; the runs' inputs name the data (MLflow datasets, DVC md5s). "
        + (f"Promoted to @champion: {reason}" if decision.promote else f"Not promoted (@challenger only): {reason}")
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
    best = load_candidate(ctx, best_name, test, task)
    baseline = None
    if cfg.baseline is not None and cfg.baseline != best_name and cfg.baseline in set(board["variant"]):
        baseline = load_candidate(ctx, cfg.baseline, test, task)
    configure(ctx.root, ctx.params.project.name)
    tracked = contextlib.nullcontext() if dry else stage_run("promote", root=ctx.root, project=ctx.params.project.name)
    digest = ""
    with tracked:
        if not dry:
            mlflow.set_tag("variant", best_name)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            current = registry.champion(name)
            decision = _decide(ctx, current, best, baseline, test, task)
            version: str | None = None
            moves: list[Any] = []
            if dry or "already champion" in decision.failed:
                break
            digest = digest or model_digest(best.trained["model_uri"])  # once, not on every re-decision
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
        after = registry.champion(name)
        comparison = decision.comparison
        report = {
            **decision.to_json(),
            "selection": selection(board, ctx.params.metric),
            "multiple_testing": {
                "hypotheses_tested": 0 if comparison is None else 1,
                "correction": "none needed",
                "why": (
                    "one challenger, the variant ranked first on the validation split, is tested on the frozen "
                    "test set (against the champion, or with none yet against the baseline); no other variant is "
                    "tested, so there is no family of tests whose error rate needs a correction such as Holm's"
                ),
            },
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
                    }
                )
            decided = {"promoted": str(decision.promote).lower(), "reason": decision.reason[:5000]}
            mlflow.set_tags(decided)
            write_json(ctx.path(paths.PROMOTION_REPORT), report)
            parent = os.environ.get(PARENT_ENV)
            if parent:  # the decision where people look first: the pipeline run, beside the leaderboard
                attach_decision(ctx.root, parent)
    verb = ("would promote" if dry else "promoted") if decision.promote else "not promoted"
    where = f"; report: {paths.PROMOTION_DRY_RUN}" if dry else ""
    info(f"promote: {verb} {best_name}: {decision.reason}; {name}@champion = v{report['champion_after']}{where}")
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
