"""Stage ``prepare``: clean, de-duplicate, label, split (frozen test set, leakage-checked), subsample."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.stages.context import StageContext


def run(ctx: StageContext) -> int:
    import mlflow
    import pandas as pd

    from variantlab.core.dataset import prepare_splits
    from variantlab.core.task import dumps
    from variantlab.io.files import md5_file, write_csv, write_json, write_parquet, write_text
    from variantlab.io.tracking import flatten, log_dvc_inputs, log_frame_input, stage_run

    raw = pd.read_parquet(ctx.path(paths.RAW))
    prepared = prepare_splits(raw, ctx.params)
    with stage_run("prepare", root=ctx.root, project=ctx.params.project.name) as run:
        log_dvc_inputs({"raw": ctx.path(paths.RAW)})
        mlflow.log_params(flatten({"task": prepared.task.to_json(), "split": ctx.params.split.model_dump()}))
        write_text(ctx.path(paths.TASK), dumps(prepared.task))
        for name, part in prepared.splits.items():
            out = ctx.path(paths.split_path(name))
            write_parquet(out, part)
            log_frame_input(
                part,
                name=f"{name}-split",
                source=paths.split_path(name),
                digest=md5_file(out),
                context="testing" if name == "test" else name,
            )
        stats = prepared.stats
        mlflow.log_metrics(
            {f"rows.{k}": v for k, v in stats["rows"].items()}
            | {k: stats[k] for k in ("exact_duplicates", "normalised_duplicates", "texts_without_words")}
        )
        mlflow.set_tag("test_sha256", stats["test_sha256"])
        mlflow.log_dict(stats, "prepare/stats.json")
        balance = pd.concat(
            [
                part.groupby("stratum").size().rename("rows").reset_index().assign(split=name)
                for name, part in prepared.splits.items()
            ]
        )
        # The class of each row, or the quantile bin of its target for a regression task.
        write_csv(
            ctx.path(paths.CLASS_BALANCE), balance.rename(columns={"stratum": "label"})[["split", "label", "rows"]]
        )
        write_json(ctx.path(paths.stage_metrics("prepare")), {**stats, "mlflow_run_id": run.info.run_id})
    info(
        f"prepare: {prepared.task.describe()}; "
        f"train {stats['rows']['train']}, val {stats['rows']['val']}, test {stats['rows']['test']} "
        f"(dropped {stats['exact_duplicates']} exact + {stats['normalised_duplicates']} normalised duplicates, "
        f"{stats['texts_without_words']} without words); "
        f"test sha256 {stats['test_sha256'][:12]}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from variantlab.stages.context import parse_stage_args

    args = list(argv if argv is not None else sys.argv[1:])
    return guarded(
        "prepare", lambda: run(parse_stage_args("Clean, de-duplicate, label and split the sentences.", args)), args
    )


if __name__ == "__main__":
    raise SystemExit(main())
