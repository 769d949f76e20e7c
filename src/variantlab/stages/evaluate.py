"""Stage ``evaluate@<variant>``: score the saved model on the frozen test set, as a user would load it."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.core import timing
from variantlab.core.task import Task
from variantlab.stages.context import StageContext

LATENCY_SAMPLES = 30  # single sentences timed for the batch-1 latency
LATENCY_BATCHES = 8  # batches of 32 timed for the batch-32 latency
LATENCY_BUDGET_S = 5.0  # a slow model (an LLM writing answers) stops sooner, after at least LATENCY_MIN calls
LATENCY_MIN = 5
CALIBRATION_BINS = 10
BEHAVIOUR_CASES = 60  # per check


def _percentiles(times: list[float], prefix: str) -> dict[str, float]:
    import numpy as np

    return {
        f"{prefix}_p50": round(float(np.percentile(times, 50)), 2),
        f"{prefix}_p95": round(float(np.percentile(times, 95)), 2),
    }


def latency_ms(
    model: Any, texts: list[str], *, batch: int, repeats: int, budget_s: float = LATENCY_BUDGET_S
) -> dict[str, float]:
    """Milliseconds per ``predict`` call on ``batch`` sentences (median and 95th percentile), after a warm-up:
    ``repeats`` calls, or as many as fit in ``budget_s`` seconds (at least ``LATENCY_MIN``)."""
    import pandas as pd

    times: list[float] = []
    with timing.compute():
        model.predict(pd.DataFrame({"text": texts[:batch]}))
        for i in range(repeats):
            if len(times) >= LATENCY_MIN and sum(times) > budget_s * 1000:
                break
            chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
            started = time.perf_counter()
            model.predict(pd.DataFrame({"text": chunk}))
            times.append((time.perf_counter() - started) * 1000)
    return _percentiles(times, "latency_ms" if batch == 1 else f"latency_b{batch}_ms")


def dir_size_mb(path: Any) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2)


@dataclass
class Scoring:
    """A task kind's view of one variant's test predictions: metrics, the answer per row, plots, logged keys."""

    metrics: dict[str, Any]
    predicted: Any  # pd.Series: the answer per test row (label or number)
    columns: dict[str, Any]  # extra columns of the predictions file (confidence, p_<label>, error)
    logged: dict[str, float]  # MLflow metrics
    plots: list[Path]


def _score_classification(ctx: StageContext, task: Task, model: Any, test: Any) -> Scoring:
    import numpy as np
    import pandas as pd

    from variantlab.core.metrics import calibration, confusion_array, confusion_frame
    from variantlab.io.files import write_csv
    from variantlab.io.plots import confusion_png, reliability_png

    variant = str(ctx.variant)
    with timing.compute():
        proba = model.predict(test[["text"]], params={"output": "proba"})
    proba = proba.reindex(columns=list(task.labels), fill_value=0.0)  # the task's order, every label
    pred = pd.Series(np.asarray(task.labels, dtype=object)[proba.to_numpy().argmax(axis=1)], index=test.index)
    confidence = proba.to_numpy().max(axis=1)
    positive = proba[task.positive_label].to_numpy() if task.is_binary and task.positive_label else None
    metrics = task.score(test, pred, positive_score=positive)
    ece, reliability = calibration(confidence, (pred == test["label"].astype(str)).to_numpy(), CALIBRATION_BINS)
    metrics |= {"ece": round(ece, 5), "mean_confidence": round(float(np.mean(confidence)), 5)}
    confusion = confusion_frame(test["label"], pred, task.labels)
    title = f"{variant}: macro-F1 {metrics['macro_f1']:.3f}"
    confusion_png(confusion_array(confusion, task.labels), task.labels, title, ctx.path(paths.confusion_png(variant)))
    reliability_png(reliability, ece, variant, ctx.path(paths.reliability_png(variant)))
    write_csv(ctx.path(paths.reliability_csv(variant)), reliability.dropna())
    # DVC's confusion template wants one row per example.
    write_csv(
        ctx.path(paths.confusion_csv(variant)),
        pd.DataFrame({"actual": test["label"].astype(str), "predicted": pred.to_numpy()}),
    )
    logged = task.flat_metrics(metrics)
    columns = {"confidence": confidence, **{f"p_{c}": proba[c].to_numpy() for c in proba.columns}}
    plots = [paths.confusion_png(variant), paths.reliability_png(variant)]
    return Scoring(metrics, pred, columns, logged, plots)


def _score_regression(ctx: StageContext, task: Task, model: Any, test: Any) -> Scoring:
    import numpy as np
    import pandas as pd

    from variantlab.io.files import write_csv
    from variantlab.io.plots import error_by_bin_png, residual_png

    variant = str(ctx.variant)
    with timing.compute():
        pred = task.answers(model.predict(test[["text"]]), test.index)
    metrics = task.score(test, pred)
    truth = test["value"].to_numpy(dtype=np.float64)
    residual_png(
        truth,
        pred.to_numpy(),
        f"{variant}: MAE {metrics['mae']:.3f}, R² {metrics['r2']:.3f}",
        ctx.path(paths.confusion_png(variant)),
    )
    write_csv(ctx.path(paths.confusion_csv(variant)), pd.DataFrame({"actual": truth, "predicted": pred.to_numpy()}))
    # No calibration for a number: the reliability slot holds the absolute error by decile of the prediction.
    deciles = pd.qcut(pred.rank(method="first"), min(10, len(pred)), labels=False)
    rows = pd.DataFrame({"bin": deciles, "predicted": pred, "abs_error": (pred - truth).abs()})
    table = rows.groupby("bin", as_index=False).mean()
    write_csv(ctx.path(paths.reliability_csv(variant)), table)
    error_by_bin_png(table, variant, ctx.path(paths.reliability_png(variant)))
    logged = task.flat_metrics(metrics)
    columns = {"error": (pred - truth).to_numpy()}
    return Scoring(metrics, pred, columns, logged, [paths.confusion_png(variant), paths.reliability_png(variant)])


WORST_EXAMPLES = 25  # per variant, logged to MLflow as a table


def _score_generation(ctx: StageContext, task: Task, model: Any, test: Any) -> Scoring:
    import mlflow
    import pandas as pd

    from variantlab.io.files import write_csv
    from variantlab.io.plots import length_png, text_scores_png

    variant = str(ctx.variant)
    with timing.compute():
        pred = task.answers(model.predict(test[["text"]]), test.index)
    scores = task.example_scores(test, pred)  # type: ignore[attr-defined]  # the generation kind's scorer
    metrics = task.score(test, pred, scores=scores)
    title = f"{variant}: chrF {metrics['chrf']:.1f}, exact match {metrics['exact_match']:.3f}"
    text_scores_png(scores, test["domain"].astype(str).tolist(), title, ctx.path(paths.confusion_png(variant)))
    length_png(scores["target_chars"], scores["output_chars"], variant, ctx.path(paths.reliability_png(variant)))
    # the DVC plot slots: lengths per example (what a confusion matrix of free text could not show)
    write_csv(
        ctx.path(paths.confusion_csv(variant)),
        pd.DataFrame({"actual": scores["target_chars"], "predicted": scores["output_chars"]}),
    )
    write_csv(ctx.path(paths.reliability_csv(variant)), scores.describe().reset_index())
    table = pd.DataFrame(
        {"domain": test["domain"].astype(str), "input": test["text"].astype(str), "target": test["label"].astype(str)}
    ).assign(output=pred.to_numpy(), **{name: scores[name].to_numpy() for name in ("chrf", "exact_match", "rouge_l")})
    mlflow.log_table(table.nsmallest(WORST_EXAMPLES, "chrf"), "evaluation/worst_examples.json")
    columns = {name: scores[name].to_numpy() for name in ("exact_match", "chrf", "rouge_l")}
    plots = [paths.confusion_png(variant), paths.reliability_png(variant)]
    return Scoring(metrics, pred, columns, task.flat_metrics(metrics), plots)


SCORERS = {
    "classification": _score_classification,
    "regression": _score_regression,
    "generation": _score_generation,
}


def _link_to_training(trained: dict[str, Any]) -> str | None:
    """Log the train run's params on the active evaluate run; the logged model's id if this store has it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from variantlab.io.models import model_id

    try:
        params = mlflow.get_run(trained["mlflow_run_id"]).data.params
        mlflow.log_params(params)
    except MlflowException as error:  # the train run lives in another store (a pulled DVC cache)
        info(f"evaluate: train run {trained['mlflow_run_id']} not found here, params not copied: {error.message}")
    found = model_id(str(trained.get("model_uri", "")))
    if found is None:
        return None
    try:
        mlflow.get_logged_model(found)
    except MlflowException:
        return None
    return found


def run(ctx: StageContext) -> int:
    import mlflow
    import pandas as pd

    from variantlab.core.behaviour import build_cases, run_checks
    from variantlab.io.files import md5_file, read_json, write_json, write_parquet
    from variantlab.io.models import load_pyfunc
    from variantlab.io.tracking import log_dvc_inputs, log_frame_input, stage_run

    assert ctx.variant is not None
    variant = ctx.variant
    task = ctx.task()
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
        dataset = log_frame_input(
            test, name="test-split", source=paths.split_path("test"), digest=md5_file(test_file), context="testing"
        )
        linked = _link_to_training(trained)  # the variant's params here too, so Compare shows params and metrics
        started = time.perf_counter()
        scoring = SCORERS[task.kind](ctx, task, model, test)
        elapsed = time.perf_counter() - started
        texts = test["text"].tolist()
        latency = {
            **latency_ms(model, texts, batch=1, repeats=LATENCY_SAMPLES),
            **latency_ms(model, texts, batch=32, repeats=LATENCY_BATCHES),
        }
        cases = build_cases(
            ctx.params.project.seed,
            BEHAVIOUR_CASES,
            texts,
            negation=task.polarity is not None,
            invariance=task.invariance,
        )
        tolerance = task.behaviour_tolerance(test)
        with timing.compute():
            behaviour, checked = run_checks(
                lambda batch: model.predict(pd.DataFrame({"text": batch})), cases, tolerance=tolerance
            )
        truth = test[["id", "domain", task.target]]
        write_parquet(
            ctx.path(paths.predictions_path(variant)), truth.assign(predicted=scoring.predicted, **scoring.columns)
        )
        record = {
            **scoring.metrics,
            "variant": variant,
            "task": task.kind,
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
        mlflow.log_metrics(  # on this run, and on the variant's logged model for the test dataset (Models tab)
            {
                **scoring.logged,
                "predict_per_s": record["predict_per_s"],
                "model_size_mb": record["model_size_mb"],
                **latency,
                **{f"behaviour.{k}": v["pass_rate"] for k, v in behaviour.items()},
            },
            model_id=linked,
            dataset=dataset if linked else None,
        )
        for plot in scoring.plots:
            mlflow.log_artifact(str(ctx.path(plot)), "plots")
        if len(checked):
            mlflow.log_table(checked[~checked["passed"]], "evaluation/behaviour_failures.json")
        mlflow.log_dict({k: v for k, v in record.items() if k != "mlflow_run_id"}, "evaluation/metrics.json")
        write_json(ctx.path(paths.eval_metrics(variant)), record)
    passes = ", ".join(f"{k} {v['pass_rate']:.0%}" for k, v in behaviour.items()) or "none asked for"
    main_metrics = ", ".join(f"{k} {scoring.logged[k]:.4f}" for k in list(scoring.logged)[:3])
    info(
        f"evaluate@{variant}: {main_metrics} on {len(test)} test texts; behaviour: {passes}; "
        f"latency p50 {latency['latency_ms_p50']} ms (batch 1), {latency['latency_b32_ms_p50']} ms (batch 32)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from variantlab.stages.context import parse_stage_args

    args = list(argv if argv is not None else sys.argv[1:])
    return guarded(
        "evaluate",
        lambda: run(parse_stage_args("Evaluate one variant on the frozen test set.", args, variant=True)),
        args,
    )


if __name__ == "__main__":
    raise SystemExit(main())
