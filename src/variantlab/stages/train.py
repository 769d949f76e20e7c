"""Stage ``train@<variant>``: fit one variant on the training split and log it as an MLflow model.

The stage only wires: it reads the splits, picks the configured kind from ``variantlab.variants``, searches
(``variants.search``) or fits, and logs the model and its record. What a kind does lives in its module.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.core.task import Task
from variantlab.errors import ConfigError
from variantlab.search import Search, finish_search, mark_finished
from variantlab.search import trials_only as search_trials_only
from variantlab.stages.context import StageContext
from variantlab.variants import kind_for
from variantlab.variants.finetune import distributed_rank, relaunch_under_torchrun


def _training_frame(cfg: Any, ctx: StageContext, task: Task) -> Any:
    """The training split, capped at ``train_rows`` (stratified), plus the variant's extra data if any."""
    import pandas as pd

    from variantlab.core.preprocessing import clean_text, stratified_subsample
    from variantlab.io.sources import read_user_file

    train = stratified_subsample(
        pd.read_parquet(ctx.path(paths.split_path("train"))), cfg.train_rows, ctx.params.project.seed
    )
    if cfg.extra_data is None:
        return train
    if cfg.extra_data == "holdout":
        extra = pd.read_parquet(ctx.path(paths.split_path("extra")))
        if extra.empty:
            raise ConfigError(
                "extra_data: holdout, but split.holdout_domains holds no training rows", file="params.yaml"
            )
    else:
        extra = read_user_file(cfg.extra_data, ctx.root, ctx.params)
        extra = extra.assign(text=extra["text"].map(clean_text))
        extra = extra[extra[task.target].notna()]
        extra = extra.assign(stratum=task.strata_of(extra))
    extra = stratified_subsample(extra, cfg.extra_rows, ctx.params.project.seed)
    return pd.concat([train, extra[train.columns.intersection(extra.columns)]], ignore_index=True)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def run(ctx: StageContext, *, resume: bool = False, argv: Sequence[str] = (), trials_only: bool = False) -> int:
    """Train variant ``ctx.variant`` (searching its settings first when it declares ``search:``); ``argv`` is
    what a torchrun relaunch passes on to each worker. ``trials_only``: join the variant's search as a worker."""
    import mlflow
    import pandas as pd
    import torch

    from variantlab.io.files import md5_file, write_json
    from variantlab.io.models import save_and_log
    from variantlab.io.tracking import flatten, log_dvc_inputs, log_frame_input, stage_run

    assert ctx.variant is not None
    cfg = ctx.params.variant(ctx.variant)
    processes = getattr(cfg, "processes", 1)
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch_under_torchrun(processes, list(argv))
    task = ctx.task()
    torch.manual_seed(ctx.params.project.seed)
    train_file = ctx.path(paths.split_path("train"))
    train = _training_frame(cfg, ctx, task)
    val = pd.read_parquet(ctx.path(paths.split_path("val")))
    out_dir = ctx.path(paths.model_dir(ctx.variant))
    if trials_only:
        return search_trials_only(ctx, Search(ctx, cfg, train, val, task))
    kind = kind_for(cfg, ctx, resume=resume)
    kind.check(task)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not kind.distributed:
            raise ConfigError(f"variant '{ctx.variant}' ({cfg.kind}) does not train on several processes")
        rank, _ = distributed_rank()
        if rank != 0:  # other ranks train in lock-step; rank 0 alone logs, saves and writes outputs
            with tempfile.TemporaryDirectory() as tmp:
                kind.fit(train, val, task, Path(tmp))
            return 0
    with (
        stage_run(
            "train", root=ctx.root, project=ctx.params.project.name, variant=ctx.variant, system_metrics=True
        ) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.set_tags({"strategy": cfg.kind, "task": task.describe()[:250]})
        variant_params = flatten({"variant": cfg.model_dump(exclude={"search"}), "seed": ctx.params.project.seed})
        mlflow.log_params(variant_params)
        if cfg.search is not None:
            mlflow.log_params(
                {f"search.{k}": getattr(cfg.search, k) for k in ("trials", "sampler", "pruner", "timeout_s")}
            )
            mlflow.log_dict(cfg.search.model_dump(mode="json"), "search/space.json")
        log_dvc_inputs({"train": train_file})
        log_frame_input(
            train, name="train-data", source=paths.split_path("train"), digest=md5_file(train_file), context="training"
        )
        searched: dict[str, Any] = {}
        started = time.perf_counter()
        if cfg.search is not None:
            search = Search(ctx, cfg, train, val, task)
            study, _ = search.run(wait_for_others=True)
            final, searched = finish_search(search, study, time.perf_counter() - started)
            refit = time.perf_counter()  # the best values once more, deterministic: the model the trial scored
            fitted = kind_for(final, ctx, resume=resume).fit(train, val, task, Path(tmp))
            searched["refit_s"] = round(time.perf_counter() - refit, 3)
        else:
            fitted = kind.fit(train, val, task, Path(tmp))
        train_time = time.perf_counter() - started
        # the logged model carries the values it was fitted with (a searched variant: the best trial's)
        fitted_cfg = final if cfg.search is not None else cfg
        logged_params = flatten({"variant": fitted_cfg.model_dump(exclude={"search"}), "seed": ctx.params.project.seed})
        model_uri = save_and_log(
            fitted.write_model(), out_dir, name=ctx.variant, params={k: str(v) for k, v in logged_params.items()}
        )
        size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
        record = {
            "variant": ctx.variant,
            "kind": cfg.kind,
            "task": task.kind,
            "n_train": len(train),
            "train_time_s": round(train_time, 3),
            "model_size_mb": round(size / 2**20, 2),
            "peak_rss_mb": _peak_rss_mb(),
            **fitted.stats,
            **({"search": searched} if searched else {}),
            "model_uri": model_uri,
            "mlflow_run_id": run.info.run_id,
        }
        mlflow.log_metrics(
            {k: float(v) for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        )
        write_json(ctx.path(paths.train_metrics(ctx.variant)), record)
        if searched:
            mark_finished(ctx, cfg, searched["study"], run.info.run_id)
    info(f"train@{ctx.variant}: {cfg.kind} on {len(train)} texts in {train_time:.1f}s -> {model_uri}")
    return 0


def _run_from_argv(argv: Sequence[str]) -> int:
    from variantlab.stages.context import parse_stage_args

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--resume", action="store_true", help="continue from this variant's last checkpoint")
    parser.add_argument(
        "--trials-only", action="store_true", help="run trials of the variant's search (a worker); save no model"
    )
    known, rest = parser.parse_known_args(argv)
    resume = known.resume or os.environ.get("VARIANTLAB_RESUME", "") not in ("", "0")
    ctx = parse_stage_args("Train one variant.", rest, variant=True)
    return run(ctx, resume=resume, argv=argv, trials_only=known.trials_only)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    return guarded("train", lambda: _run_from_argv(args), args)


if __name__ == "__main__":
    raise SystemExit(main())
