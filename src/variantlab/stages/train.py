"""Stage ``train@<variant>``: fit one variant on the training split and log it as an MLflow model."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from variantlab import paths
from variantlab.config import FinetuneVariant, ProbeVariant, TfidfVariant, Variant
from variantlab.console import guarded, info
from variantlab.core import timing
from variantlab.core.task import Task
from variantlab.errors import ConfigError
from variantlab.stages.context import StageContext

SCRATCH = Path(".variantlab")


@dataclass
class Fitted:
    """What a variant kind's ``fit`` returns: its training record, and how to write the MLflow model (pyfunc
    kwargs). Writing is deferred: a search trial needs only the score, and serialising a model can cost more
    than fitting it (a 50,000-word TF-IDF vocabulary takes skops about a minute, the fit under a second)."""

    write_model: Callable[[], dict[str, Any]]
    stats: dict[str, Any]


class VariantKind(Protocol):
    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted: ...


# A search's trial passes one of these to a kind: it is called with (epoch, validation value) after each epoch.
EpochReport = Callable[[int, float], None]


def _val_stats(metric: str, value: float) -> dict[str, float]:
    """The validation score every kind reports: what the search maximises and the challenger is chosen by."""
    return {f"val_{metric}": round(float(value), 6)}


def _training_frame(cfg: Variant, ctx: StageContext, task: Task) -> Any:
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


def _example(train: Any) -> Any:
    return train[["text"]].head(3)


@dataclass
class TfidfKind:
    cfg: TfidfVariant
    ctx: StageContext
    resume: bool = False  # nothing to resume: it trains in seconds
    report: EpochReport | None = None  # one "epoch": nothing to prune

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        from variantlab.core.baseline import tfidf_pipeline
        from variantlab.core.metrics import metric_value
        from variantlab.io.models import sklearn_model_kwargs

        def target(frame: Any) -> Any:
            return task.answers(frame[task.target], frame.index)

        metric = self.ctx.params.metric
        with timing.compute():
            pipeline = tfidf_pipeline(self.cfg, task, self.ctx.params.project.seed).fit(train[["text"]], target(train))
            value = metric_value(
                metric, target(val), task.answers(pipeline.predict(val[["text"]])), task.labels or None
            )
        coef = np.atleast_2d(pipeline.named_steps["classifier"].coef_)
        size = int(coef.size + coef.shape[0])
        stats = {
            "trainable_params": size,
            "total_params": size,
            "vocabulary": int(coef.shape[1]),
            **_val_stats(metric, value),
        }
        return Fitted(lambda: sklearn_model_kwargs(pipeline, workdir, _example(train), task), stats)


@dataclass
class ProbeKind:
    cfg: ProbeVariant
    ctx: StageContext
    resume: bool = False  # the embedding cache is what survives a crash
    report: EpochReport | None = None  # one "epoch": nothing to prune

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        from variantlab.core.baseline import fit_linear_head
        from variantlab.core.embeddings import embed_texts
        from variantlab.core.metrics import metric_value
        from variantlab.io.embedding_cache import cache_key, cached_embeddings
        from variantlab.io.models import encoder_model_kwargs, stage_encoder_artifacts
        from variantlab.io.zoo import load_encoder, resolve

        cfg, ctx = self.cfg, self.ctx
        model = resolve(ctx.params.models[cfg.model], ctx.root)
        tokenizer, encoder = load_encoder(model)

        def embed(frame: Any, split: str) -> tuple[Any, bool]:
            texts = frame["text"].tolist()
            key = cache_key(model.entry.sha256, texts, max_length=cfg.max_length, normalize=True)
            return cached_embeddings(
                ctx.path(SCRATCH / "embeddings"),
                key,
                lambda: embed_texts(
                    encoder,
                    tokenizer,
                    texts,
                    batch_size=cfg.batch_size,
                    max_length=cfg.max_length,
                    progress=f"embed {split} ({ctx.variant})",
                ),
            )

        embeddings, hit = embed(train, "train")
        val_embeddings, _ = embed(val, "val")
        with timing.compute():
            weight, bias = fit_linear_head(
                embeddings,
                task.y(train),
                task,
                C=cfg.C,
                max_iter=cfg.max_iter,
                seed=ctx.params.project.seed,
                class_weight=cfg.class_weight,
            )
            outputs = val_embeddings @ weight.T + bias
            value = metric_value(ctx.params.metric, task.y(val), task.decode(outputs), task.code_labels())
        meta = {
            **task.output_meta(),
            "batch_size": cfg.batch_size,
            "max_length": cfg.max_length,
            "normalize": True,
            "base_model": model.entry.source,
            "base_sha256": model.entry.sha256,
        }
        total = sum(p.numel() for p in encoder.parameters()) + weight.size + bias.size
        stats = {
            "trainable_params": int(weight.size + bias.size),
            "total_params": int(total),
            "base_model": model.entry.source,
            "embedding_cache_hit": hit,
            **_val_stats(ctx.params.metric, value),
        }

        def write() -> dict[str, Any]:
            head = {"weight": weight, "bias": bias}
            artifacts = stage_encoder_artifacts(workdir, head=head, meta=meta, base=model)
            return encoder_model_kwargs(artifacts, _example(train), task)

        return Fitted(write, stats)


def _fingerprint(cfg: FinetuneVariant, train: Any, seed: int) -> str:
    """Identifies what a checkpoint belongs to: resuming onto other params or data would be wrong."""
    digest = hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode() + str(seed).encode())
    digest.update("\n".join(train["id"].astype(str)).encode())
    return digest.hexdigest()[:16]


def _relaunch_under_torchrun(processes: int, argv: list[str]) -> int:
    """``processes: N`` in params: run this same stage as N DDP workers (list argv, no shell)."""
    import socket
    import subprocess

    with socket.socket() as sock:  # a free port on loopback for the workers' rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    info(f"train: launching {processes} processes with torchrun")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={processes}",
        f"--master_port={port}",
        "-m",
        "variantlab.stages.train",
        *argv,
    ]
    return subprocess.run(cmd, check=False).returncode


def _distributed_rank() -> tuple[int, int]:
    """(rank, world size); under torchrun, joins the process group (NCCL on GPUs, gloo on CPU)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), world


STEP_PAUSE_ENV = "VARIANTLAB_TRAIN_STEP_PAUSE_S"
TRIAL_PAUSE_ENV = "VARIANTLAB_TRIAL_PAUSE_S"  # fault injection for the search tests: each trial lasts longer


@dataclass
class FinetuneKind:
    """``full``, ``lora`` and ``pruned``: the open encoder with a head, trained by ``core.training``."""

    cfg: FinetuneVariant
    ctx: StageContext
    resume: bool = False
    report: EpochReport | None = None  # a search's pruner: may raise optuna.TrialPruned after an epoch

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        import mlflow
        import torch

        from variantlab.core.classifier import EncoderClassifier, add_lora, count_parameters, prune_layers
        from variantlab.core.training import Encoded, LoopSettings, resolve_device, train_classifier
        from variantlab.io.checkpoints import DirectoryCheckpointer
        from variantlab.io.models import encoder_model_kwargs, stage_encoder_artifacts
        from variantlab.io.zoo import load_encoder, resolve

        cfg, ctx = self.cfg, self.ctx
        model = resolve(ctx.params.models[cfg.model], ctx.root)
        # Seeded before anything draws from torch's generator: the adapters' initial weights (LoRA's A) are
        # random, and a search's second trial in one process must not start from the first one's leftovers.
        torch.manual_seed(ctx.params.project.seed)
        tokenizer, encoder = load_encoder(model)
        if cfg.kind == "pruned":
            encoder = prune_layers(encoder, cfg.keep_layers or 1)
        if cfg.kind == "lora":
            encoder = add_lora(
                encoder,
                rank=cfg.lora.rank,
                alpha=cfg.lora.alpha,
                dropout=cfg.lora.dropout,
                target_modules=cfg.lora.target_modules,
            )
        torch.manual_seed(ctx.params.project.seed)
        classifier = EncoderClassifier(encoder, task.num_outputs, dropout=cfg.dropout)
        # The head trains on the target the kind standardises (a regression's); the served model undoes it.
        mean, std = task.standardiser(train)

        def encode(frame: Any) -> Encoded:
            ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=cfg.max_length)["input_ids"]
            return Encoded(ids, task.scaled_y(frame, mean, std))

        rank, world = _distributed_rank()
        device = resolve_device(cfg.device)
        if device == "cuda" and world > 1:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        metric = ctx.params.metric
        settings = LoopSettings.from_variant(
            cfg, seed=ctx.params.project.seed, device=device, objective=task.kind, metric=metric
        )
        # Regression trains and validates on the standardised target: errors go back to the target's units.
        unit = task.metric_unit(metric, std)
        store_dir = ctx.path(SCRATCH / "checkpoints" / f"{ctx.variant}-{_fingerprint(cfg, train, settings.seed)}")
        store = DirectoryCheckpointer(store_dir)
        if self.resume and store.exists():
            info(f"train@{ctx.variant}: resuming from {store_dir}")

        pause = float(os.environ.get(STEP_PAUSE_ENV) or 0)  # fault injection for the crash tests: a wider window

        def log_step(state: Any, loss: Any) -> None:
            if state.step % 10 == 0 and rank == 0:  # float() syncs the GPU: only on the steps we log
                mlflow.log_metric("train_loss", float(loss), step=state.step)
            if pause:
                time.sleep(pause)

        val_key = f"val_{settings.val_metric}"

        def log_epoch(state: Any, value: float) -> None:
            if rank == 0:
                mlflow.log_metric(val_key, value * unit, step=state.epoch)
            if self.report is not None:
                self.report(state.epoch, value * unit)

        state = train_classifier(
            classifier,
            encode(train),
            encode(val),
            settings,
            pad_id=tokenizer.pad_token_id or 0,
            checkpoints=store if cfg.checkpoint_every else None,
            resume=self.resume,
            on_step=log_step,
            on_epoch=log_epoch,
            progress=f"train {ctx.variant}",
        )
        if store_dir.exists():  # finished: the model is the output now, the checkpoint only takes space
            shutil.rmtree(store_dir)
        if rank == 0:
            for row in state.history:
                mlflow.log_metric("epoch_train_loss", row["train_loss"], step=int(row["epoch"]))
        head = {
            "weight": classifier.head.weight.detach().cpu().numpy(),
            "bias": classifier.head.bias.detach().cpu().numpy(),
        }
        meta = {
            **task.output_meta(mean, std),
            "batch_size": 64,
            "max_length": cfg.max_length,
            "normalize": False,
            "base_model": model.entry.source,
            "base_sha256": model.entry.sha256,
            "strategy": cfg.kind,
        }
        trainable, total = count_parameters(classifier)
        best = (state.best_score if settings.higher_is_better else -state.best_score) * unit
        stats = {
            "trainable_params": trainable,
            "total_params": total,
            "base_model": model.entry.source,
            "epochs_run": state.epoch,
            "optimizer_steps": state.step,
            **_val_stats(metric, best),
            "train_samples_per_s": round(world * state.samples / max(state.seconds, 1e-9), 2),
            "world_size": world,
            "device": device,
        }
        if device.startswith("cuda"):
            stats["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)

        def write() -> dict[str, Any]:
            artifacts = stage_encoder_artifacts(
                workdir, head=head, meta=meta, encoder=classifier.encoder, tokenizer=tokenizer
            )
            return encoder_model_kwargs(artifacts, _example(train), task)

        return Fitted(write, stats)


KINDS: dict[str, Any] = {
    "tfidf-logreg": TfidfKind,
    "probe": ProbeKind,
    "full": FinetuneKind,
    "lora": FinetuneKind,
    "pruned": FinetuneKind,
}


def kind_for(
    cfg: Variant, ctx: StageContext, *, resume: bool = False, report: EpochReport | None = None
) -> VariantKind:
    """The configured kind's object: the discriminated config's ``kind`` picks it."""
    kind = KINDS[cfg.kind]
    return kind(cfg, ctx, resume, report)


def _ids_digest(frame: Any) -> str:
    return hashlib.sha256("\n".join(frame["id"].astype(str)).encode()).hexdigest()[:16]


@dataclass
class Search:
    """One variant's search: its study, and the objective every process that joins it runs."""

    ctx: StageContext
    cfg: Variant
    train: Any
    val: Any
    task: Task

    @property
    def label(self) -> str:
        return f"search@{self.ctx.variant}"

    def open(self) -> Any:
        from variantlab.core import search as space
        from variantlab.core.task import dumps, higher_is_better
        from variantlab.io.study import open_study

        assert self.cfg.search is not None
        params = self.ctx.params
        # What the trials' values depend on; the budget (trials, timeout) is not part of it: raising `trials`
        # of an unfinished study adds trials to it.
        identity = {
            "variant": self.cfg.model_dump(exclude={"search": {"trials", "timeout_s"}}),
            "seed": params.project.seed,
            "metric": params.metric,
            "task": dumps(self.task),
            "train": _ids_digest(self.train),
            "val": _ids_digest(self.val),
        }
        return open_study(
            self.cfg.search,
            root=self.ctx.root,
            name=space.study_name(params.project.name, str(self.ctx.variant), identity),
            maximize=higher_is_better(params.metric),
            seed=params.project.seed,
            max_epochs=space.max_epochs(self.cfg.search, getattr(self.cfg, "epochs", None)),
            fresh=True,
        )

    def objective(self, trial: Any) -> float:
        """Fit the trial's variant on the training split, score it on validation, inside a nested MLflow run."""
        import mlflow
        import optuna

        from variantlab.core import search as space
        from variantlab.io.tracking import flatten, owner_tags

        assert self.cfg.search is not None
        values = space.suggest(trial, self.cfg.search.space)
        trial_cfg = self.cfg.with_values(values)
        metric = self.ctx.params.metric
        run = mlflow.start_run(
            run_name=f"trial:{self.ctx.variant}:{trial.number}",
            nested=True,
            tags={
                "variantlab.stage": "trial",
                "variant": str(self.ctx.variant),
                "optuna.study": trial.study.study_name,
                "optuna.trial": str(trial.number),
                **owner_tags(),  # a trial killed with its process is marked KILLED by the next stage run
            },
        )
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        status, state = "FAILED", "failed"
        try:
            mlflow.log_params({**flatten({"trial": values}), "trial_number": trial.number})
            earlier = space.repeat_of(trial)
            if earlier is not None and earlier.value is not None:
                info(f"{self.ctx.variant}: trial {trial.number} repeats trial {earlier.number}; its value is reused")
                trial.set_user_attr("repeat_of", earlier.number)
                trial.set_user_attr("fit_s", 0.0)
                mlflow.set_tag("optuna.repeat_of", str(earlier.number))
                mlflow.log_metric(f"val_{metric}", float(earlier.value))
                status, state = "FINISHED", "complete"
                return float(earlier.value)
            reporter = space.Reporter(trial)
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                try:
                    fitted = kind_for(trial_cfg, self.ctx, report=reporter).fit(
                        self.train, self.val, self.task, Path(tmp)
                    )
                finally:
                    trial.set_user_attr("fit_s", round(time.perf_counter() - started, 4))
                time.sleep(float(os.environ.get(TRIAL_PAUSE_ENV) or 0))
            value = float(fitted.stats[f"val_{metric}"])
            mlflow.log_metric(f"val_{metric}", value)
            status, state = "FINISHED", "complete"
            return value
        except optuna.TrialPruned:
            status, state = "KILLED", "pruned"
            raise
        finally:
            mlflow.set_tag("optuna.state", state)
            mlflow.end_run(status=status)

    def run(self, *, wait_for_others: bool) -> tuple[Any, list[Any]]:
        from variantlab.io.study import run_trials

        assert self.cfg.search is not None
        study = self.open()
        outcomes = run_trials(
            study,
            self.cfg.search,
            self.objective,
            label=self.label,
            wait_for_others=wait_for_others,
            seed=self.ctx.params.project.seed,
        )
        return study, outcomes


def _finish_search(search: Search, study: Any, seconds: float) -> tuple[Variant, dict[str, Any]]:
    """The best trial's variant, with the search's summary logged on the (active) train run."""
    import mlflow

    from variantlab.io import study as studies
    from variantlab.io.tracking import flatten

    assert search.cfg.search is not None
    best = studies.best_trial(study, search.label)
    storage = studies.storage_url(search.cfg.search, search.ctx.root)
    summary = studies.summary(study, search.cfg.search, storage, seconds)
    mlflow.log_params(flatten({"best": dict(best.params)}))
    mlflow.set_tags(
        {
            "optuna.study": study.study_name,
            "optuna.best_trial": str(best.number),
            "optuna.best_trial_run_id": str(best.user_attrs.get("mlflow_run_id", "")),
        }
    )
    numeric = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    mlflow.log_metrics({f"search.{k}": float(v) for k, v in numeric.items()})
    with tempfile.TemporaryDirectory() as tmp:
        for png in studies.plots(study, Path(tmp)):
            mlflow.log_artifact(str(png), artifact_path="search")
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    mlflow.log_table(frame.astype({c: str for c in frame.columns if frame[c].dtype == object}), "search/trials.json")
    info(
        f"{search.label}: best trial {best.number} of {summary['trials']} ({summary['pruned']} pruned, "
        f"{summary['failed']} failed): {search.ctx.params.metric} {best.value:.4f} on validation with "
        + ", ".join(f"{k}={v}" for k, v in best.params.items())
    )
    return search.cfg.with_values(dict(best.params)), summary


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def _mark_finished(ctx: StageContext, cfg: Variant, study_name: str, run_id: str) -> None:
    """The study became a model: a later run of this stage (changed code, say) searches afresh."""
    import optuna

    from variantlab.io.study import FINISHED_ATTR, storage_url

    assert cfg.search is not None
    optuna.load_study(study_name=study_name, storage=storage_url(cfg.search, ctx.root)).set_user_attr(
        FINISHED_ATTR, run_id
    )


def _trials_only(ctx: StageContext, search: Search) -> int:
    """A search worker: run trials of the variant's shared study under a ``search:<variant>`` run; no model."""
    from variantlab.io.tracking import stage_run

    if search.cfg.search is None:
        raise ConfigError(f"variant '{ctx.variant}' has no `search:` in params.yaml", file="params.yaml")
    with stage_run("search", root=ctx.root, project=ctx.params.project.name, variant=ctx.variant):
        _, outcomes = search.run(wait_for_others=False)
    info(f"{search.label}: this worker ran {len(outcomes)} trial(s)")
    return 0


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
        return _relaunch_under_torchrun(processes, list(argv))
    task = ctx.task()
    torch.manual_seed(ctx.params.project.seed)
    train_file = ctx.path(paths.split_path("train"))
    train = _training_frame(cfg, ctx, task)
    val = pd.read_parquet(ctx.path(paths.split_path("val")))
    out_dir = ctx.path(paths.model_dir(ctx.variant))
    if trials_only:
        return _trials_only(ctx, Search(ctx, cfg, train, val, task))
    kind = kind_for(cfg, ctx, resume=resume)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not isinstance(kind, FinetuneKind):
            raise ConfigError(f"variant '{ctx.variant}' ({cfg.kind}) does not train on several processes")
        rank, _ = _distributed_rank()
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
            final, searched = _finish_search(search, study, time.perf_counter() - started)
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
            _mark_finished(ctx, cfg, searched["study"], run.info.run_id)
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
