"""Stage ``validate``: the Great Expectations gate. Errors stop the pipeline; warnings are reported."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.errors import ValidationFailed
from variantlab.stages.context import StageContext


def run(ctx: StageContext) -> int:
    import mlflow
    import pandas as pd

    from variantlab.core.expectations import build_suite, validation_view
    from variantlab.core.task import resolve_task
    from variantlab.io.files import write_json
    from variantlab.io.tracking import log_dvc_inputs, stage_run
    from variantlab.io.validation import first_failure, render_failures, run_suite

    raw = pd.read_parquet(ctx.path(paths.RAW))
    task = resolve_task(ctx.params, raw["label"], file=str(paths.RAW))
    specs = build_suite(ctx.params.validation, task)
    with stage_run("validate", root=ctx.root, project=ctx.params.project.name) as run:
        log_dvc_inputs({"raw": ctx.path(paths.RAW)})
        report = run_suite(validation_view(raw, task), specs)
        summary = report.summary()
        mlflow.log_metrics({k: float(v) for k, v in summary.items()})
        mlflow.log_dict(report.to_json(), "validation/report.json")
        mlflow.log_text(json.dumps(report.gx_result, indent=1, default=str), "validation/gx_result.json")
        if report.errors or report.warnings:
            info(render_failures(report, str(paths.RAW)))
        if report.errors:
            others = f" (and {len(report.errors) - 1} more above)" if len(report.errors) > 1 else ""
            raise ValidationFailed(
                f"{len(report.errors)} expectation(s) of severity error failed: "
                f"{first_failure(report.errors[0])}{others}",
                file=str(paths.RAW),
            )
        write_json(ctx.path(paths.VALIDATION_REPORT), report.to_json())
        write_json(ctx.path(paths.stage_metrics("validate")), {**summary, "mlflow_run_id": run.info.run_id})
    info(
        f"validate: {summary['passed']}/{summary['evaluated']} expectations passed, "
        f"{summary['warnings']} warning(s) -> {paths.VALIDATION_REPORT}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from variantlab.stages.context import parse_stage_args

    args = list(argv if argv is not None else sys.argv[1:])
    return guarded(
        "validate", lambda: run(parse_stage_args("Validate the raw sentences with the GX suite.", args)), args
    )


if __name__ == "__main__":
    raise SystemExit(main())
