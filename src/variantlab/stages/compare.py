"""Stage ``compare``: the leaderboard of every variant (markdown and CSV), logged to the pipeline run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.stages.context import StageContext

# Cost axes of the Pareto plot: leaderboard column -> axis label.
PARETO_COSTS = {
    "latency_ms_p50": "latency p50, batch 1 (ms)",
    "ms_per_text": "test-set scoring, ms per text (batched)",
    "peak_rss_mb": "peak memory while training (RSS, MB)",
    "trainable_params": "trainable parameters",
    "model_size_mb": "model size on disk (MB)",
}


def run(ctx: StageContext) -> int:
    import mlflow

    from variantlab.core.leaderboard import build_leaderboard, to_markdown
    from variantlab.core.task import higher_is_better
    from variantlab.io.files import read_json, write_csv, write_text
    from variantlab.io.plots import pareto_png
    from variantlab.io.tracking import PARENT_ENV, attach_leaderboard, stage_run

    names = sorted(ctx.params.variants)
    evals = {n: read_json(ctx.path(paths.eval_metrics(n))) for n in names}
    trains = {n: read_json(ctx.path(paths.train_metrics(n))) for n in names}
    metric, task = ctx.params.metric, ctx.task()
    board = build_leaderboard(evals, trains, metric, kind=task.kind, higher_is_better=higher_is_better(metric))
    order = "higher" if higher_is_better(metric) else "lower"
    markdown = (
        f"# Leaderboard (ranked by validation {metric}, {order} is better)\n\n"
        f"Ranked on the validation split; the test-set columns are for reporting, and the frozen test set is "
        f"read again only by the gate, which tests the first row against the champion.\n\n{to_markdown(board)}"
    )
    with stage_run("compare", root=ctx.root, project=ctx.params.project.name):
        write_csv(ctx.path(paths.LEADERBOARD_CSV), board)
        write_text(ctx.path(paths.LEADERBOARD_MD), markdown)
        pareto_png(board, metric, PARETO_COSTS, ctx.path(paths.PARETO_PNG), higher_is_better=higher_is_better(metric))
        mlflow.log_table(board, "leaderboard.json")
        shown = [paths.LEADERBOARD_MD, paths.LEADERBOARD_CSV, paths.PARETO_PNG]
        for path in shown:
            mlflow.log_artifact(str(ctx.path(path)))
        parent = os.environ.get(PARENT_ENV)
        if parent:  # the parent run is where people look first: the leaderboard as a table, and the plots
            attach_leaderboard(ctx.root, parent)
    best = board.iloc[0]
    info(
        f"compare: {len(board)} variants ranked by validation {metric}; best {best['variant']} "
        f"({best[f'val_{metric}']:.4f} on validation, {best[metric]:.4f} on test) -> {paths.LEADERBOARD_MD}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from variantlab.stages.context import parse_stage_args

    args = list(argv if argv is not None else sys.argv[1:])
    return guarded("compare", lambda: run(parse_stage_args("Build the leaderboard of all variants.", args)), args)


if __name__ == "__main__":
    raise SystemExit(main())
