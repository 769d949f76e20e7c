"""Stage ``promote``: register the leaderboard's best variant; move ``@champion`` only when it is better."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.stages.context import StageContext


def _champion_score(ctx: StageContext, version: Any, test_sha256: str) -> Any:
    """The champion's score on the current frozen test set: recorded if it was scored on it, else re-scored."""
    import pandas as pd

    from variantlab.core.metrics import classification_metrics
    from variantlab.core.promotion import Scored
    from variantlab.io.models import load_pyfunc

    metric = ctx.params.promotion.metric
    tags = version.tags
    if tags.get("test_sha256") == test_sha256 and metric in tags:
        return Scored(tags.get("variant", "?"), float(tags[metric]), version.run_id, test_sha256)
    info(f"promote: champion v{version.version} was scored on another test set; re-scoring it")
    test = pd.read_parquet(ctx.path(paths.split_path("test")))
    model = load_pyfunc(f"models:/{ctx.params.promotion.registered_model}/{version.version}")
    pred = pd.Series(model.predict(test[["text"]]), index=test.index).astype(str)
    score = classification_metrics(test["label"], pred, test["domain"])[metric]
    return Scored(tags.get("variant", "?"), float(score), version.run_id, test_sha256)


def run(argv: Sequence[str] | None) -> int:
    import mlflow
    import pandas as pd

    from variantlab.core.promotion import Scored, decide
    from variantlab.io import registry
    from variantlab.io.files import read_json, write_json
    from variantlab.io.tracking import PARENT_ENV, stage_run
    from variantlab.stages.context import parse_stage_args

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dry-run", action="store_true")
    known, rest = parser.parse_known_args(argv)
    ctx = parse_stage_args("Register the best variant and promote it if it beats the champion.", rest)
    policy = ctx.params.promotion
    board = pd.read_csv(ctx.path(paths.LEADERBOARD_CSV))
    best = str(board.iloc[0]["variant"])
    evaluated, trained = read_json(ctx.path(paths.eval_metrics(best))), read_json(ctx.path(paths.train_metrics(best)))
    with stage_run("promote", root=ctx.root, project=ctx.params.project.name):
        mlflow.set_tag("variant", best)
        current = registry.champion(policy.registered_model)
        challenger = Scored(best, float(evaluated[policy.metric]), trained["mlflow_run_id"], evaluated["test_sha256"])
        champ = _champion_score(ctx, current, challenger.test_sha256) if current else None
        decision = decide(
            challenger, champ, metric=policy.metric, floor=policy.floor, min_improvement=policy.min_improvement
        )
        version = None
        already = champ is not None and champ.run_id == challenger.run_id
        if not known.dry_run and not already:
            tags = {
                "variant": best,
                "strategy": trained["kind"],
                "test_sha256": evaluated["test_sha256"],
                "macro_f1": f"{evaluated['macro_f1']:.6f}",
                "accuracy": f"{evaluated['accuracy']:.6f}",
                "train_run_id": trained["mlflow_run_id"],
                "pipeline_run_id": os.environ.get(PARENT_ENV, ""),
            }
            version = registry.register(
                policy.registered_model,
                trained["model_uri"],
                run_id=trained["mlflow_run_id"],
                tags=tags,
                description=f"{best} ({trained['kind']}), trained in run "
                f"{trained['mlflow_run_id']} on test set {evaluated['test_sha256'][:12]}",
            )
            if decision.promote:
                registry.set_champion(policy.registered_model, version.version, reason=decision.reason)
        after = registry.champion(policy.registered_model)
        report = {
            **decision.to_json(),
            "dry_run": known.dry_run,
            "registered_model": policy.registered_model,
            "registered_version": version.version if version else None,
            "champion_before": current.version if current else None,
            "champion_after": after.version if after else None,
        }
        mlflow.log_dict(report, "promotion.json")
        mlflow.set_tags(
            {"promoted": str(decision.promote and not known.dry_run).lower(), "reason": decision.reason[:500]}
        )
        write_json(ctx.path(paths.PROMOTION_REPORT), report)
    verb = (
        "would promote" if known.dry_run and decision.promote else ("promoted" if decision.promote else "kept champion")
    )
    info(
        f"promote: {verb}: {decision.reason}; champion is now "
        f"{policy.registered_model}@champion = v{report['champion_after']}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("promote", lambda: run(argv), argv or sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
