"""Stage ``promote``: register the leaderboard's best variant as ``@challenger``; it becomes ``@champion`` only
when a paired comparison on the frozen test set shows it is better and every guardrail holds."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.stages.context import StageContext


def slices(metrics: dict[str, Any]) -> dict[str, float]:
    """The guarded slices: macro-F1 of each domain and F1 of each class."""
    out = {f"domain/{k}": float(v["macro_f1"]) for k, v in metrics["per_domain"].items()}
    out.update({f"class/{k}": float(v["f1"]) for k, v in metrics["per_class"].items()})
    return out


def _score_champion(ctx: StageContext, version: Any, test: Any, test_sha256: str) -> tuple[Any, Any]:
    """Re-score the current champion on today's frozen test set: (Scored, predictions)."""
    import pandas as pd

    from variantlab.core.metrics import classification_metrics
    from variantlab.core.promotion import Scored
    from variantlab.io.models import load_pyfunc

    info(f"promote: scoring the champion (version {version.version}) on the frozen test set")
    model = load_pyfunc(f"models:/{ctx.params.promotion.registered_model}/{version.version}")
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


def run(argv: Sequence[str] | None) -> int:
    import mlflow
    import pandas as pd

    from variantlab.config import LABELS
    from variantlab.core.promotion import Policy, Scored, decide
    from variantlab.core.statistics import paired_comparison
    from variantlab.io import registry
    from variantlab.io.files import read_json, write_json
    from variantlab.io.tracking import PARENT_ENV, stage_run
    from variantlab.stages.context import parse_stage_args

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dry-run", action="store_true", help="decide and report, move no alias, register nothing")
    known, rest = parser.parse_known_args(argv)
    ctx = parse_stage_args("Register the best variant and promote it if it is provably better.", rest)
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
    best = str(pd.read_csv(ctx.path(paths.LEADERBOARD_CSV)).iloc[0]["variant"])
    evaluated, trained = read_json(ctx.path(paths.eval_metrics(best))), read_json(ctx.path(paths.train_metrics(best)))
    test = pd.read_parquet(ctx.path(paths.split_path("test")))
    mine = pd.read_parquet(ctx.path(paths.predictions_path(best))).set_index("id").loc[test["id"], "predicted"]
    challenger = Scored(
        best,
        float(evaluated[cfg.metric]),
        trained["mlflow_run_id"],
        evaluated["test_sha256"],
        slices(evaluated),
        evaluated.get("latency_ms_p50"),
        trained.get("model_size_mb"),
    )
    with stage_run("promote", root=ctx.root, project=ctx.params.project.name):
        mlflow.set_tag("variant", best)
        current = registry.champion(cfg.registered_model)
        champion, comparison = None, None
        if current is not None and current.run_id != challenger.run_id:
            champion, theirs = _score_champion(ctx, current, test, challenger.test_sha256)
            codes = {label: i for i, label in enumerate(LABELS)}
            comparison = paired_comparison(
                test["label"].map(codes).to_numpy(),
                theirs.map(codes).to_numpy(),
                pd.Series(mine.to_numpy()).map(codes).to_numpy(),
                k=len(LABELS),
                metric=cfg.metric,
                n_bootstrap=cfg.n_bootstrap,
                confidence=cfg.confidence,
                seed=ctx.params.project.seed,
            )
        elif current is not None:
            champion = Scored(best, challenger.score, current.run_id, challenger.test_sha256)
        decision = decide(challenger, champion, comparison, policy)
        version = None
        if not known.dry_run and "already champion" not in decision.failed:
            tags = {
                "variant": best,
                "strategy": trained["kind"],
                "test_sha256": evaluated["test_sha256"],
                "macro_f1": f"{evaluated['macro_f1']:.6f}",
                "accuracy": f"{evaluated['accuracy']:.6f}",
                "train_run_id": trained["mlflow_run_id"],
                "pipeline_run_id": os.environ.get(PARENT_ENV, ""),
            }
            description = (
                f"{best} ({trained['kind']}), trained in run {trained['mlflow_run_id']}, "
                f"test set sha256 {evaluated['test_sha256'][:12]}"
            )
            version = registry.register(
                cfg.registered_model,
                trained["model_uri"],
                run_id=trained["mlflow_run_id"],
                tags=tags,
                description=description,
            )
            registry.set_alias(cfg.registered_model, registry.CHALLENGER, version.version, reason=decision.reason)
            if decision.promote:
                registry.set_alias(cfg.registered_model, registry.CHAMPION, version.version, reason=decision.reason)
        after = registry.champion(cfg.registered_model)
        report = {
            **decision.to_json(),
            "dry_run": known.dry_run,
            "registered_model": cfg.registered_model,
            "registered_version": version.version if version else None,
            "champion_before": current.version if current else None,
            "champion_after": after.version if after else None,
        }
        mlflow.log_dict(report, "promotion.json")
        if comparison is not None:
            mlflow.log_metrics(
                {
                    "delta": comparison.delta,
                    "ci_low": comparison.ci_low,
                    "ci_high": comparison.ci_high,
                    "mcnemar_p": comparison.mcnemar_p,
                }
            )
        mlflow.set_tags(
            {"promoted": str(decision.promote and not known.dry_run).lower(), "reason": decision.reason[:5000]}
        )
        write_json(ctx.path(paths.PROMOTION_REPORT), report)
    verb = ("would promote" if known.dry_run else "promoted") if decision.promote else "not promoted"
    info(f"promote: {verb} {best}: {decision.reason}; {cfg.registered_model}@champion = v{report['champion_after']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("promote", lambda: run(argv), argv or sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
