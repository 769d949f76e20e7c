"""Stage ``evaluate@<variant>``: score the saved model on the frozen test set, as a user would load it."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.core import timing

LATENCY_SAMPLES = 30  # single sentences timed for the batch-1 latency
LATENCY_BATCHES = 8  # batches of 32 timed for the batch-32 latency
CALIBRATION_BINS = 10
BEHAVIOUR_CASES = 60  # per check


def _percentiles(times: list[float], prefix: str) -> dict[str, float]:
    import numpy as np

    return {
        f"{prefix}_p50": round(float(np.percentile(times, 50)), 2),
        f"{prefix}_p95": round(float(np.percentile(times, 95)), 2),
    }


def latency_ms(model: Any, texts: list[str], *, batch: int, repeats: int) -> dict[str, float]:
    """Milliseconds per ``predict`` call on ``batch`` sentences (median and 95th percentile), after a warm-up."""
    import pandas as pd

    times = []
    with timing.compute():
        model.predict(pd.DataFrame({"text": texts[:batch]}))
        for i in range(repeats):
            chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
            started = time.perf_counter()
            model.predict(pd.DataFrame({"text": chunk}))
            times.append((time.perf_counter() - started) * 1000)
    return _percentiles(times, "latency_ms" if batch == 1 else f"latency_b{batch}_ms")


def dir_size_mb(path: Any) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2)


def run(argv: Sequence[str] | None) -> int:
    import mlflow
    import numpy as np
    import pandas as pd

    from variantlab.config import LABELS
    from variantlab.core.behaviour import build_cases, run_checks
    from variantlab.core.metrics import calibration, classification_metrics, confusion_array, confusion_frame
    from variantlab.io.files import md5_file, read_json, write_csv, write_json, write_parquet
    from variantlab.io.models import load_pyfunc
    from variantlab.io.plots import confusion_png, reliability_png
    from variantlab.io.tracking import log_dvc_inputs, log_frame_input, stage_run
    from variantlab.stages.context import parse_stage_args

    ctx = parse_stage_args("Evaluate one variant on the frozen test set.", argv, variant=True)
    assert ctx.variant is not None
    variant = ctx.variant
    test_file = ctx.path(paths.split_path("test"))
    test = pd.read_parquet(test_file)
    trained = read_json(ctx.path(paths.train_metrics(variant)))
    prepared = read_json(ctx.path(paths.stage_metrics("prepare")))
    model = load_pyfunc(str(ctx.path(paths.model_dir(variant))))
    with stage_run("evaluate", root=ctx.root, project=ctx.params.project.name, variant=variant) as run:
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
        with timing.compute():
            proba = model.predict(test[["text"]], params={"output": "proba"})
        elapsed = time.perf_counter() - started
        proba = proba[[c for c in LABELS if c in proba.columns]]
        pred = pd.Series(proba.columns.to_numpy()[proba.to_numpy().argmax(axis=1)], index=test.index).astype(str)
        confidence = proba.to_numpy().max(axis=1)
        texts = test["text"].tolist()
        latency = {
            **latency_ms(model, texts, batch=1, repeats=LATENCY_SAMPLES),
            **latency_ms(model, texts, batch=32, repeats=LATENCY_BATCHES),
        }
        metrics = classification_metrics(test["label"], pred, test["domain"])
        ece, reliability = calibration(confidence, (pred == test["label"].astype(str)).to_numpy(), CALIBRATION_BINS)
        cases = build_cases(ctx.params.project.seed, BEHAVIOUR_CASES, texts)
        with timing.compute():
            behaviour, checked = run_checks(lambda batch: model.predict(pd.DataFrame({"text": batch})), cases)
        confusion = confusion_frame(test["label"], pred)
        write_parquet(
            ctx.path(paths.predictions_path(variant)),
            test[["id", "domain", "label"]].assign(
                predicted=pred, confidence=confidence, **{f"p_{c}": proba[c].to_numpy() for c in proba.columns}
            ),
        )
        confusion_png(
            confusion_array(confusion),
            LABELS,
            f"{variant}: macro-F1 {metrics['macro_f1']:.3f}",
            ctx.path(paths.confusion_png(variant)),
        )
        reliability_png(reliability, ece, variant, ctx.path(paths.reliability_png(variant)))
        write_csv(ctx.path(paths.reliability_csv(variant)), reliability.dropna())
        # DVC's confusion template wants one row per example.
        write_csv(
            ctx.path(paths.confusion_csv(variant)),
            pd.DataFrame({"actual": test["label"].astype(str), "predicted": pred.to_numpy()}),
        )
        record = {
            **metrics,
            "variant": variant,
            "ece": round(ece, 5),
            "mean_confidence": round(float(np.mean(confidence)), 5),
            "behaviour": behaviour,
            "predict_seconds": round(elapsed, 3),
            "predict_per_s": round(len(test) / elapsed, 1),
            **latency,
            "model_size_mb": dir_size_mb(ctx.path(paths.model_dir(variant))),
            "test_sha256": prepared["test_sha256"],
            "train_run_id": trained["mlflow_run_id"],
            "model_uri": trained["model_uri"],
            "mlflow_run_id": run.info.run_id,
        }
        mlflow.log_metrics(
            {
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "ece": record["ece"],
                "predict_per_s": record["predict_per_s"],
                "model_size_mb": record["model_size_mb"],
                **latency,
                **{f"f1.{k}": v["f1"] for k, v in metrics["per_class"].items()},
                **{f"precision.{k}": v["precision"] for k, v in metrics["per_class"].items()},
                **{f"recall.{k}": v["recall"] for k, v in metrics["per_class"].items()},
                **{f"macro_f1.{k}": v["macro_f1"] for k, v in metrics["per_domain"].items()},
                **{f"behaviour.{k}": v["pass_rate"] for k, v in behaviour.items()},
            }
        )
        mlflow.log_artifact(str(ctx.path(paths.confusion_png(variant))), "plots")
        mlflow.log_artifact(str(ctx.path(paths.reliability_png(variant))), "plots")
        mlflow.log_table(checked[~checked["passed"]], "evaluation/behaviour_failures.json")
        mlflow.log_dict({k: v for k, v in record.items() if k != "mlflow_run_id"}, "evaluation/metrics.json")
        write_json(ctx.path(paths.eval_metrics(variant)), record)
    passes = ", ".join(f"{k} {v['pass_rate']:.0%}" for k, v in behaviour.items())
    info(
        f"evaluate@{variant}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {ece:.3f} on {len(test)} test sentences; behaviour: {passes}; "
        f"latency p50 {latency['latency_ms_p50']} ms (batch 1), {latency['latency_b32_ms_p50']} ms (batch 32)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("evaluate", lambda: run(argv), argv or sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
