"""``full``, ``lora`` and ``pruned`` on a generation task: supervised fine-tuning of an open decoder LLM.

Each training pair becomes the variant's prompt (``core.generation.PromptFormat``: its template and system
prompt, through the chat template) followed by the answer and EOS; the loss falls on the answer's tokens and
EOS only, so the model learns what to write and where to stop. The project's loop (``core.training``) trains
it: length-grouped batches, AdamW with warm-up, gradient accumulation, checkpoints, DDP. Each epoch the model
*generates* the validation answers (greedy, as it will be served), and the task's metric of those answers, not a
teacher-forced loss, chooses the epoch and stops early. The model holds the adapter (or the whole decoder) and
the spec, behind ``io/generator_model.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from variantlab.errors import ConfigError
from variantlab.variants.base import Fitted, example_rows, val_stats

if TYPE_CHECKING:
    from variantlab.core.task import Task
    from variantlab.variants.finetune import FinetuneKind


def check_sft(kind: FinetuneKind, task: Task) -> Any:
    """A decoder base, a kind that fine-tunes on CPU and GPU alike, the template against its tokenizer, and
    the LoRA targets against the architecture (a meta-device skeleton: no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from variantlab.core.classifier import lora_targets
    from variantlab.io.zoo import is_decoder

    cfg, model = kind.cfg, kind.base
    if not is_decoder(model.directory):
        raise ConfigError(
            f"variant {kind.ctx.variant}: model '{cfg.model}' is an encoder and cannot write answers; "
            "a generation task fine-tunes a decoder LLM (or use copy, nearest or prompt)",
            file="params.yaml",
        )
    if cfg.kind == "qlora":
        raise ConfigError("qlora is not supported on a generation task yet: use lora", file="params.yaml")
    if cfg.sharding == "fsdp" and cfg.processes > 1:
        raise ConfigError("sharding: fsdp is not supported on a generation task yet: use ddp", file="params.yaml")
    if cfg.kind == "lora":
        config = AutoConfig.from_pretrained(model.directory, local_files_only=True)
        with torch.device("meta"):
            lora_targets(AutoModelForCausalLM.from_config(config), cfg.lora.target_modules)
    return _format(kind)


def _format(kind: FinetuneKind) -> tuple[Any, Any]:
    from variantlab.core.decoder import load_tokenizer
    from variantlab.core.generation import GenerationSpec, PromptFormat
    from variantlab.core.prompting import use_chat

    cfg, model = kind.cfg, kind.base
    tokenizer = load_tokenizer(model.directory, source=model.entry.source)
    spec = GenerationSpec(
        template=cfg.template,
        system=cfg.system,
        chat=use_chat(tokenizer, cfg.chat_template),
        max_text_tokens=cfg.max_length,
        max_new_tokens=cfg.max_new_tokens,
        stop=list(cfg.stop),
        strip=cfg.strip,
    )
    return tokenizer, PromptFormat(tokenizer, spec)


def _network(kind: FinetuneKind, device: str) -> Any:
    from variantlab.core.classifier import add_lora, lora_targets, prune_layers
    from variantlab.core.decoder import load_causal_lm

    cfg = kind.cfg
    network = load_causal_lm(kind.base.directory, device).train()
    if cfg.kind == "pruned":
        network = prune_layers(network, cfg.keep_layers or 1)
    if cfg.kind == "lora":
        return add_lora(
            network,
            rank=cfg.lora.rank,
            alpha=cfg.lora.alpha,
            dropout=cfg.lora.dropout,
            target_modules=lora_targets(network, cfg.lora.target_modules),
            task_type="CAUSAL_LM",
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
    if cfg.gradient_checkpointing:
        network.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return network


def fit_sft(kind: FinetuneKind, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
    import mlflow
    import torch

    from variantlab.core.classifier import count_parameters
    from variantlab.core.generation import Generator, answer_loss
    from variantlab.core.training import LoopSettings, resolve_device, train_loop
    from variantlab.io.models import generator_model_kwargs, stage_decoder_artifacts
    from variantlab.variants.finetune import distributed_rank

    cfg, ctx = kind.cfg, kind.ctx
    rank, world = distributed_rank()
    device = resolve_device(cfg.device)
    if device == "cuda" and world > 1:
        import os

        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    tokenizer, prompt = check_sft(kind, task)
    torch.manual_seed(ctx.params.project.seed)  # LoRA's initial weights: the same run to run
    network = _network(kind, device)
    examples = [prompt.example(text, answer) for text, answer in zip(train["text"], task.y(train), strict=True)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    metric = ctx.params.metric
    settings = LoopSettings.from_variant(
        cfg, seed=ctx.params.project.seed, device=device, objective=task.kind, metric=metric
    )
    val_texts, val_targets = val["text"].astype(str).tolist(), task.y(val)

    def batch_loss(step_model: Any, index: list[int], on: Any) -> Any:
        return answer_loss(step_model, [examples[i] for i in index], pad, on)

    def validate(model: Any) -> float:
        generator = Generator(model, tokenizer, prompt.spec, batch_size=max(16, cfg.batch_size))
        return task.validation_value(metric, val_targets, generator.generate(val_texts))

    def log_step(state: Any, loss: Any) -> None:
        if state.step % 10 == 0 and rank == 0:
            mlflow.log_metric("train_loss", float(loss), step=state.step)

    def log_epoch(state: Any, value: float) -> None:
        if rank == 0:
            mlflow.log_metric(f"val_{metric}", value, step=state.epoch)
        if kind.report is not None:
            kind.report(state.epoch, value)

    store = kind.checkpoints(train, settings.seed)
    state = train_loop(
        network,
        [len(ids) for ids, _ in examples],
        settings,
        batch_loss=batch_loss,
        validate=validate,
        checkpoints=store if cfg.checkpoint_every else None,
        resume=kind.resume,
        on_step=log_step,
        on_epoch=log_epoch,
        progress=f"train {ctx.variant}",
    )
    if store.directory.exists():
        shutil.rmtree(store.directory)
    if rank == 0:
        for row in state.history:
            mlflow.log_metric("epoch_train_loss", row["train_loss"], step=int(row["epoch"]))
    trainable, total = count_parameters(network)
    best = state.best_score if settings.higher_is_better else -state.best_score
    stats = {
        "architecture": "decoder",
        "trainable_params": trainable,
        "total_params": total,
        "base_model": kind.base.entry.source,
        "epochs_run": state.epoch,
        "optimizer_steps": state.step,
        **val_stats(metric, best),
        "train_samples_per_s": round(world * state.samples / max(state.seconds, 1e-9), 2),
        "train_tokens_per_example": round(sum(len(ids) for ids, _ in examples) / max(1, len(examples)), 1),
        "world_size": world,
        "device": device,
    }
    if device.startswith("cuda"):
        stats["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    meta = {
        **task.output_meta(),
        "spec": prompt.spec.to_json(),
        "base": kind.base.entry.model_dump(exclude_none=True),
        "base_sha256": kind.base.entry.key,
        "batch_size": max(16, cfg.batch_size),
        "strategy": cfg.kind,
    }
    mlflow.log_dict(prompt.spec.to_json(), "prompt/spec.json")

    def write() -> dict[str, Any]:
        artifacts = stage_decoder_artifacts(workdir, meta=meta, model=network.cpu(), tokenizer=tokenizer)
        return generator_model_kwargs(artifacts, example_rows(train), task)

    return Fitted(write, stats)
