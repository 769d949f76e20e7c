"""Stage ``train@<variant>``: fit one variant on the training split and log it as an MLflow model."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from variantlab import paths
from variantlab.config import ProbeVariant, TfidfVariant
from variantlab.console import guarded, info
from variantlab.stages.context import StageContext


def _train_tfidf(
    cfg: TfidfVariant, train: Any, ctx: StageContext, workdir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    from variantlab.core.baseline import tfidf_logreg
    from variantlab.io.models import sklearn_model_kwargs

    pipeline = tfidf_logreg(cfg, ctx.params.project.seed).fit(train[["text"]], train["label"].astype(str))
    coef = pipeline.named_steps["classifier"].coef_
    stats = {"trainable_params": int(coef.size + coef.shape[0]), "vocabulary": int(coef.shape[1])}
    return sklearn_model_kwargs(pipeline, workdir, train[["text"]].head(3)), stats


def _train_probe(
    cfg: ProbeVariant, train: Any, ctx: StageContext, workdir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    from variantlab.core.baseline import fit_linear_head
    from variantlab.core.embeddings import embed_texts
    from variantlab.io.models import probe_model_kwargs, stage_probe_artifacts
    from variantlab.io.zoo import load_encoder, resolve

    model = resolve(ctx.params.models[cfg.model], ctx.root)
    tokenizer, encoder = load_encoder(model)
    embeddings = embed_texts(
        encoder,
        tokenizer,
        train["text"].tolist(),
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        progress=f"embed train ({ctx.variant})",
    )
    weight, bias, classes = fit_linear_head(
        embeddings, train["label"].astype(str).to_numpy(), C=cfg.C, max_iter=cfg.max_iter, seed=ctx.params.project.seed
    )
    meta = {
        "classes": classes,
        "batch_size": cfg.batch_size,
        "max_length": cfg.max_length,
        "base_model": model.entry.source,
        "base_sha256": model.entry.sha256,
    }
    artifacts = stage_probe_artifacts(workdir, model, {"weight": weight, "bias": bias}, meta)
    stats = {
        "trainable_params": int(weight.size + bias.size),
        "total_params": int(sum(p.numel() for p in encoder.parameters()) + weight.size + bias.size),
        "base_model": model.entry.source,
    }
    return probe_model_kwargs(artifacts, train[["text"]].head(3)), stats


def run(argv: Sequence[str] | None) -> int:
    import mlflow
    import pandas as pd
    import torch

    from variantlab.io.files import md5_file, write_json
    from variantlab.io.models import save_and_log
    from variantlab.io.tracking import flatten, log_dvc_inputs, log_frame_input, stage_run
    from variantlab.stages.context import parse_stage_args

    ctx = parse_stage_args("Train one variant.", argv, variant=True)
    assert ctx.variant is not None
    cfg = ctx.params.variant(ctx.variant)
    torch.manual_seed(ctx.params.project.seed)
    train_file = ctx.path(paths.split_path("train"))
    train = pd.read_parquet(train_file)
    with (
        stage_run(
            "train", root=ctx.root, project=ctx.params.project.name, variant=ctx.variant, system_metrics=True
        ) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.set_tag("strategy", cfg.kind)
        mlflow.log_params(flatten({"variant": cfg.model_dump(), "seed": ctx.params.project.seed}))
        log_dvc_inputs({"train": train_file})
        log_frame_input(
            train, name="train-split", source=paths.split_path("train"), digest=md5_file(train_file), context="training"
        )
        started = time.perf_counter()
        trainer = _train_tfidf if isinstance(cfg, TfidfVariant) else _train_probe
        kwargs, stats = trainer(cfg, train, ctx, Path(tmp))  # type: ignore[arg-type]
        train_time = time.perf_counter() - started
        model_uri = save_and_log(kwargs, ctx.path(paths.model_dir(ctx.variant)))
        size = sum(f.stat().st_size for f in ctx.path(paths.model_dir(ctx.variant)).rglob("*") if f.is_file())
        record = {
            "variant": ctx.variant,
            "kind": cfg.kind,
            "n_train": len(train),
            "train_time_s": round(train_time, 3),
            "model_size_bytes": size,
            **stats,
            "model_uri": model_uri,
            "mlflow_run_id": run.info.run_id,
        }
        mlflow.log_metrics({k: float(v) for k, v in record.items() if isinstance(v, int | float)})
        write_json(ctx.path(paths.train_metrics(ctx.variant)), record)
    info(f"train@{ctx.variant}: {cfg.kind} on {len(train)} sentences in {train_time:.1f}s -> {model_uri}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("train", lambda: run(argv), argv or sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
