"""Stage ``evaluate@<variant>``: score the saved model on the frozen test set, as a user would load it."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info

LATENCY_SAMPLES = 30


def batch_one_latency_ms(model: Any, texts: list[str]) -> dict[str, float]:
    """Median and 95th percentile of single-sentence predictions, after one warm-up call."""
    import numpy as np
    import pandas as pd

    model.predict(pd.DataFrame({"text": texts[:1]}))
    times = []
    for text in texts:
        started = time.perf_counter()
        model.predict(pd.DataFrame({"text": [text]}))
        times.append((time.perf_counter() - started) * 1000)
    return {
        "latency_ms_p50": round(float(np.percentile(times, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(times, 95)), 2),
    }


def run(argv: Sequence[str] | None) -> int:
    import mlflow
    import pandas as pd

    from variantlab.config import LABELS
    from variantlab.core.metrics import classification_metrics, confusion_array, confusion_frame
    from variantlab.io.files import md5_file, read_json, write_csv, write_json, write_parquet
    from variantlab.io.models import load_pyfunc
    from variantlab.io.plots import confusion_png
    from variantlab.io.tracking import log_dvc_inputs, log_frame_input, stage_run
    from variantlab.stages.context import parse_stage_args

    ctx = parse_stage_args("Evaluate one variant on the frozen test set.", argv, variant=True)
    assert ctx.variant is not None
    test_file = ctx.path(paths.split_path("test"))
    test = pd.read_parquet(test_file)
    trained = read_json(ctx.path(paths.train_metrics(ctx.variant)))
    prepared = read_json(ctx.path(paths.stage_metrics("prepare")))
    model = load_pyfunc(str(ctx.path(paths.model_dir(ctx.variant))))
    with stage_run("evaluate", root=ctx.root, project=ctx.params.project.name, variant=ctx.variant) as run:
        mlflow.set_tags(
            {
                "strategy": trained["kind"],
                "train_run_id": trained["mlflow_run_id"],
                "test_sha256": prepared["test_sha256"],
            }
        )
        log_dvc_inputs({"test": test_file})
        log_frame_input(
            test, name="test-split", source=paths.split_path("test"), digest=md5_file(test_file), context="testing"
        )
        started = time.perf_counter()
        pred = pd.Series(model.predict(test[["text"]]), index=test.index).astype(str)
        elapsed = time.perf_counter() - started
        latency = batch_one_latency_ms(model, test["text"].head(LATENCY_SAMPLES).tolist())
        metrics = classification_metrics(test["label"], pred, test["domain"])
        confusion = confusion_frame(test["label"], pred)
        write_parquet(
            ctx.path(paths.predictions_path(ctx.variant)), test[["id", "domain", "label"]].assign(predicted=pred)
        )
        confusion_png(
            confusion_array(confusion),
            LABELS,
            f"{ctx.variant}: macro-F1 {metrics['macro_f1']:.3f}",
            ctx.path(paths.confusion_png(ctx.variant)),
        )
        # DVC's confusion template wants one row per example.
        write_csv(
            ctx.path(paths.confusion_csv(ctx.variant)),
            pd.DataFrame({"actual": test["label"].astype(str), "predicted": pred.to_numpy()}),
        )
        record = {
            **metrics,
            "variant": ctx.variant,
            "predict_seconds": round(elapsed, 3),
            "predict_per_s": round(len(test) / elapsed, 1),
            **latency,
            "test_sha256": prepared["test_sha256"],
            "train_run_id": trained["mlflow_run_id"],
            "model_uri": trained["model_uri"],
            "mlflow_run_id": run.info.run_id,
        }
        mlflow.log_metrics(
            {
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "predict_per_s": record["predict_per_s"],
                **latency,
                **{f"f1.{k}": v["f1"] for k, v in metrics["per_class"].items()},
                **{f"macro_f1.{k}": v["macro_f1"] for k, v in metrics["per_domain"].items()},
            }
        )
        mlflow.log_artifact(str(ctx.path(paths.confusion_png(ctx.variant))), "plots")
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        write_json(ctx.path(paths.eval_metrics(ctx.variant)), record)
    info(
        f"evaluate@{ctx.variant}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"on {len(test)} test sentences"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("evaluate", lambda: run(argv), argv or sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
