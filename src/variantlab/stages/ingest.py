"""Stage ``ingest``: the raw sentences (VADER corpus or a user file) to ``data/raw/sentences.parquet``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.stages.context import StageContext


def run(ctx: StageContext) -> int:
    import mlflow
    import pandas as pd

    from variantlab.io.files import md5_file, write_csv, write_json, write_parquet
    from variantlab.io.sources import load_raw
    from variantlab.io.tracking import log_frame_input, stage_run

    frame, source = load_raw(ctx.params, ctx.root)
    with stage_run("ingest", root=ctx.root, project=ctx.params.project.name) as run:
        out = ctx.path(paths.RAW)
        write_parquet(out, frame)
        digest = md5_file(out)
        counts = {str(k): int(v) for k, v in frame["domain"].value_counts().sort_index().items()}
        mlflow.log_params({"data.source": ctx.params.data.source, "data.origin": source[:250]})
        mlflow.log_metrics({"rows": len(frame), **{f"rows.{k}": v for k, v in counts.items()}})
        log_frame_input(frame, name="raw-sentences", source=paths.RAW, digest=digest, context="ingest")
        write_csv(ctx.path(paths.DOMAIN_COUNTS), pd.DataFrame({"domain": list(counts), "rows": list(counts.values())}))
        write_json(
            ctx.path(paths.stage_metrics("ingest")),
            {
                "rows": len(frame),
                "rows_per_domain": counts,
                "source": source,
                "md5": digest,
                "mlflow_run_id": run.info.run_id,
            },
        )
    info(f"ingest: {len(frame)} sentences from {source.split('#')[0]} -> {paths.RAW}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from variantlab.stages.context import parse_stage_args

    args = list(argv if argv is not None else sys.argv[1:])
    return guarded("ingest", lambda: run(parse_stage_args("Fetch and parse the raw sentences.", args)), args)


if __name__ == "__main__":
    raise SystemExit(main())
