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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.stages.context import StageContext

MAX_ATTEMPTS = 5
# Fault injection for the race tests: seconds to wait between deciding and taking the lock.
PAUSE_ENV = "VARIANTLAB_PROMOTE_PAUSE_S"


def slices(metrics: dict[str, Any]) -> dict[str, float]:
    """The guarded slices: macro-F1 of each domain and F1 of each class."""
    out = {f"domain/{k}": float(v["macro_f1"]) for k, v in metrics["per_domain"].items()}
    out.update({f"class/{k}": float(v["f1"]) for k, v in metrics["per_class"].items()})
    return out


@dataclass
class Candidate:
    """The challenger (or the baseline) as the local pipeline outputs describe it."""

    scored: Any  # core.promotion.Scored
    predictions: Any  # pd.Series of labels, in test-set order
    evaluated: dict[str, Any]
    trained: dict[str, Any]


def load_candidate(ctx: StageContext, variant: str, test: Any) -> Candidate:
    import pandas as pd

    from variantlab.core.promotion import Scored
    from variantlab.io.files import read_json

    evaluated = read_json(ctx.path(paths.eval_metrics(variant)))
    trained = read_json(ctx.path(paths.train_metrics(variant)))
    frame = pd.read_parquet(ctx.path(paths.predictions_path(variant))).set_index("id")
    predictions = pd.Series(frame.loc[test["id"], "predicted"].to_numpy(), index=test.index).astype(str)
    scored = Scored(
        variant,
        float(evaluated[ctx.params.promotion.metric]),
        trained["mlflow_run_id"],
        evaluated["test_sha256"],
        slices(evaluated),
        evaluated.get("latency_ms_p50"),
        trained.get("model_size_mb"),
    )
    return Candidate(scored, predictions, evaluated, trained)


def _score_champion(ctx: StageContext, version: Any, test: Any, test_sha256: str) -> tuple[Any, Any]:
    """Re-score the current champion on today's frozen test set: (Scored, predictions)."""
    import pandas as pd

    from variantlab.core import timing
    from variantlab.core.metrics import classification_metrics
    from variantlab.core.promotion import Scored
    from variantlab.io.models import load_pyfunc

    info(f"promote: scoring the champion (version {version.version}) on the frozen test set")
    model = load_pyfunc(f"models:/{ctx.params.promotion.registered_model}/{version.version}")
    with timing.compute():
        pred = pd.Series(model.predict(test[["text"]]), index=test.index).astype(str)
    metrics = classification_metrics(test["label"], pred, test["domain"])
    scored = Scored(
        version.tags.get("variant", "?"),
        float(metrics[ctx.params.promotion.metric]),
        version.run_id,
        test_sha256,
        slices(metrics),
    )
    return scored, pred


def _compare(ctx: StageContext, test: Any, theirs: Any, mine: Any) -> Any:
    from variantlab.config import LABELS
    from variantlab.core.statistics import paired_comparison

    codes = {label: i for i, label in enumerate(LABELS)}
    cfg = ctx.params.promotion
    return paired_comparison(
        test["label"].map(codes).to_numpy(),
        theirs.map(codes).to_numpy(),
        mine.map(codes).to_numpy(),
        k=len(LABELS),
        metric=cfg.metric,
        n_bootstrap=cfg.n_bootstrap,
        confidence=cfg.confidence,
        seed=ctx.params.project.seed,
    )


def _decide(ctx: StageContext, current: Any, best: Candidate, baseline: Candidate | None, test: Any) -> Any:
    from variantlab.core.promotion import Policy, Scored, decide

    cfg = ctx.params.promotion
    policy = Policy(
        cfg.metric,
        cfg.floor,
        cfg.min_improvement,
        cfg.confidence,
        cfg.max_latency_ms,
        cfg.max_model_size_mb,
        cfg.max_slice_drop,
    )
    challenger = best.scored
    if current is None:
        if baseline is None:
            return decide(challenger, None, None, policy)
        comparison = _compare(ctx, test, baseline.predictions, best.predictions)
        return decide(challenger, None, comparison, policy, reference=baseline.scored)
    if current.run_id == challenger.run_id:
        return decide(
            challenger,
            Scored(challenger.variant, challenger.score, current.run_id, challenger.test_sha256),
            None,
            policy,
        )
    champion, theirs = _score_champion(ctx, current, test, challenger.test_sha256)
    return decide(challenger, champion, _compare(ctx, test, theirs, best.predictions), policy)


def _register(ctx: StageContext, best: Candidate, digest: str, reason: str, decision: Any) -> tuple[str, list[Any]]:
    """Register ``best``, mark it ``@challenger`` and, if the decision says so, ``@champion``. Under the lock."""
    from variantlab.io import registry
    from variantlab.io.tracking import PARENT_ENV, git_commit

    cfg, trained, evaluated = ctx.params.promotion, best.trained, best.evaluated
    variant = best.scored.variant
    tags = {
        "variant": variant,
        "strategy": trained["kind"],
        "test_sha256": evaluated["test_sha256"],
        cfg.metric: f"{evaluated[cfg.metric]:.6f}",
        "accuracy": f"{evaluated['accuracy']:.6f}",
        "train_run_id": trained["mlflow_run_id"],
        "evaluate_run_id": evaluated["mlflow_run_id"],
        "artifact_sha256": digest,
        "pipeline_run_id": os.environ.get(PARENT_ENV, ""),
    }
    description = (
        f"{variant} ({trained['kind']}): trained in run {trained['mlflow_run_id']} on {trained['n_train']} "
        f"sentences of the training split, evaluated in run {evaluated['mlflow_run_id']} on the frozen test set "
        f"(sha256 {evaluated['test_sha256'][:12]}, {evaluated['n_test']} sentences): {cfg.metric} "
        f"{evaluated[cfg.metric]:.4f}. Pipeline run {os.environ.get(PARENT_ENV) or 'none (plain dvc repro)'}, "
        f"git commit {git_commit(ctx.root)[:12]}; the runs' inputs name the data (MLflow datasets, DVC md5s)."
    )
    version = registry.register(
        cfg.registered_model, trained["model_uri"], run_id=trained["mlflow_run_id"], tags=tags, description=description
    )
    pipeline = os.environ.get(PARENT_ENV, "")
    targets = [(registry.CHALLENGER, "challenger")] + ([(registry.CHAMPION, "promote")] if decision.promote else [])
    moves = [
        registry.move_alias(
            cfg.registered_model, alias, version.version, action=action, reason=reason, pipeline_run_id=pipeline
        )
        for alias, action in targets
    ]
    return version.version, moves


def _version_of(current: Any) -> str | None:
    return None if current is None else str(current.version)


def run(argv: Sequence[str] | None) -> int:
    import mlflow
    import pandas as pd

    from variantlab.errors import TrackingError
    from variantlab.io import registry
    from variantlab.io.files import write_json
    from variantlab.io.models import model_digest
    from variantlab.io.tracking import configure, stage_run
    from variantlab.stages.context import parse_stage_args

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dry-run", action="store_true", help="decide and report, move no alias, register nothing")
    known, rest = parser.parse_known_args(argv)
    dry = bool(known.dry_run)
    ctx = parse_stage_args("Register the best variant and promote it if it is provably better.", rest)
    cfg = ctx.params.promotion
    board = pd.read_csv(ctx.path(paths.LEADERBOARD_CSV))
    best_name = str(board.iloc[0]["variant"])
    test = pd.read_parquet(ctx.path(paths.split_path("test")))
    best = load_candidate(ctx, best_name, test)
    baseline = None
    if cfg.baseline is not None and cfg.baseline != best_name and cfg.baseline in set(board["variant"]):
        baseline = load_candidate(ctx, cfg.baseline, test)
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    configure(ctx.root, ctx.params.project.name)
    tracked = contextlib.nullcontext() if dry else stage_run("promote", root=ctx.root, project=ctx.params.project.name)
    digest = ""
    with tracked:
        if not dry:
            mlflow.set_tag("variant", best_name)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            current = registry.champion(cfg.registered_model)
            decision = _decide(ctx, current, best, baseline, test)
            version: str | None = None
            moves: list[Any] = []
            if dry or "already champion" in decision.failed:
                break
            digest = digest or model_digest(best.trained["model_uri"])  # once, not on every re-decision
            time.sleep(pause)
            with registry.registry_lock(cfg.registered_model):
                now = registry.champion(cfg.registered_model)
                if _version_of(now) != _version_of(current):
                    info(
                        f"promote: @champion moved from v{_version_of(current)} to v{_version_of(now)} while "
                        f"deciding (attempt {attempt}); deciding again against the new champion"
                    )
                    continue
                version, moves = _register(ctx, best, digest, decision.reason, decision)
            break
        else:
            raise TrackingError(
                f"@champion of '{cfg.registered_model}' kept moving; gave up after {MAX_ATTEMPTS} tries"
            )
        after = registry.champion(cfg.registered_model)
        comparison = decision.comparison
        report = {
            **decision.to_json(),
            "against": "champion" if decision.champion else ("baseline" if decision.reference else "floor"),
            "dry_run": dry,
            "attempts": attempt,
            "registered_model": cfg.registered_model,
            "registered_version": version,
            "champion_before": _version_of(current),
            "champion_after": _version_of(after),
            "alias_moves": [m.__dict__ for m in moves],
        }
        if dry:
            write_json(ctx.path(paths.PROMOTION_DRY_RUN), report)
        else:
            mlflow.log_dict(report, "promotion.json")
            mlflow.log_text(registry.history_jsonl(cfg.registered_model), "alias_history.jsonl")
            if comparison is not None:
                mlflow.log_metrics(
                    {
                        "delta": comparison.delta,
                        "ci_low": comparison.ci_low,
                        "ci_high": comparison.ci_high,
                        "mcnemar_p": comparison.mcnemar_p,
                    }
                )
            mlflow.set_tags({"promoted": str(decision.promote).lower(), "reason": decision.reason[:5000]})
            write_json(ctx.path(paths.PROMOTION_REPORT), report)
    verb = ("would promote" if dry else "promoted") if decision.promote else "not promoted"
    where = f"; report: {paths.PROMOTION_DRY_RUN}" if dry else ""
    info(
        f"promote: {verb} {best_name}: {decision.reason}; "
        f"{cfg.registered_model}@champion = v{report['champion_after']}{where}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("promote", lambda: run(argv), argv or sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
