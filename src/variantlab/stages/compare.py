"""Stage ``compare``: the leaderboard of every variant (markdown and CSV), logged to the pipeline run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from variantlab import paths
from variantlab.console import guarded, info

# Cost axes of the Pareto plot: leaderboard column -> axis label.
PARETO_COSTS = {
    "latency_ms_p50": "latency p50, batch 1 (ms)",
    "model_size_mb": "model size on disk (MB)",
}


def run(argv: Sequence[str] | None) -> int:
    import mlflow

    from variantlab.core.leaderboard import build_leaderboard, to_markdown
    from variantlab.io.files import read_json, write_csv, write_text
    from variantlab.io.plots import pareto_png
    from variantlab.io.tracking import PARENT_ENV, stage_run
    from variantlab.stages.context import parse_stage_args

    ctx = parse_stage_args("Build the leaderboard of all variants.", argv)
    names = sorted(ctx.params.variants)
    evals = {n: read_json(ctx.path(paths.eval_metrics(n))) for n in names}
    trains = {n: read_json(ctx.path(paths.train_metrics(n))) for n in names}
    board = build_leaderboard(evals, trains, ctx.params.promotion.metric)
    markdown = f"# Leaderboard (by {ctx.params.promotion.metric}, frozen test set)\n\n{to_markdown(board)}"
    with stage_run("compare", root=ctx.root, project=ctx.params.project.name):
        write_csv(ctx.path(paths.LEADERBOARD_CSV), board)
        write_text(ctx.path(paths.LEADERBOARD_MD), markdown)
        pareto_png(board, ctx.params.promotion.metric, PARETO_COSTS, ctx.path(paths.PARETO_PNG))
        mlflow.log_table(board, "leaderboard.json")
        shown = [paths.LEADERBOARD_MD, paths.LEADERBOARD_CSV, paths.PARETO_PNG]
        for path in shown:
            mlflow.log_artifact(str(ctx.path(path)))
        parent = os.environ.get(PARENT_ENV)
        if parent:  # the parent run is where people look first
            for path in shown:
                mlflow.MlflowClient().log_artifact(parent, str(ctx.path(path)))
    info(markdown)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("compare", lambda: run(argv), argv or sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
