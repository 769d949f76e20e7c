"""``full``, ``lora``, ``qlora`` and ``pruned``: an open encoder or decoder LLM with a head, fine-tuned by
``core.training`` (all of its weights, PEFT LoRA adapters only, LoRA on a 4-bit base on CUDA, or its first
``keep_layers`` layers: a changed architecture).

An encoder mean-pools its tokens (``core/classifier.py``); a decoder's head reads its last real token
(``core/decoder.py``). The model holds the trained network, or only the adapter and head, naming the base by
sha256, behind the pyfunc wrappers in ``io/encoder_model.py`` and ``io/decoder_model.py``. ``processes: N``
trains as N DDP workers under torchrun."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from variantlab.console import info
from variantlab.core.loop_defaults import LOOP_DEFAULTS
from variantlab.errors import ConfigError
from variantlab.schema import Strict, VariantBase
from variantlab.variants.base import SCRATCH, Fitted, VariantKind, example_rows, val_stats

if TYPE_CHECKING:
    from variantlab.core.task import Task


class LoraSettings(Strict):
    rank: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    # null: the architecture's attention projections (query/value for BERT, q_proj/v_proj for Llama, Qwen,
    # Mistral and Gemma, c_attn for GPT-2); or a list of module names; or all-linear
    target_modules: tuple[str, ...] | Literal["all-linear"] | None = None


class FinetuneVariant(VariantBase):
    """``full``: all weights train; ``lora``: adapters only; ``qlora``: adapters on a 4-bit base (CUDA,
    bitsandbytes); ``pruned``: the first ``keep_layers`` layers train."""

    kind: Literal["full", "lora", "qlora", "pruned"]
    model: str
    max_length: int = Field(64, ge=8, le=512)
    epochs: int = Field(LOOP_DEFAULTS.epochs, ge=1)
    batch_size: int = Field(LOOP_DEFAULTS.batch_size, ge=1)
    lr: float = Field(LOOP_DEFAULTS.lr, gt=0)
    weight_decay: float = Field(LOOP_DEFAULTS.weight_decay, ge=0)
    warmup_ratio: float = Field(LOOP_DEFAULTS.warmup_ratio, ge=0, lt=1)
    grad_accum: int = Field(LOOP_DEFAULTS.grad_accum, ge=1)
    patience: int = Field(LOOP_DEFAULTS.patience, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    keep_layers: int | None = Field(None, ge=1)
    lora: LoraSettings = LoraSettings()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    processes: int = Field(1, ge=1)  # > 1: the stage relaunches itself under torchrun (one per GPU)
    # with processes > 1: ddp (a whole copy per process) or fsdp (weights, gradients and optimizer state sharded,
    # for a model that does not fit one GPU)
    sharding: Literal["ddp", "fsdp"] = "ddp"
    bf16: bool = LOOP_DEFAULTS.bf16  # bf16 autocast, used on CUDA only
    compile: bool = LOOP_DEFAULTS.compile
    checkpoint_every: int = Field(LOOP_DEFAULTS.checkpoint_every, ge=0)
    max_steps: int | None = Field(LOOP_DEFAULTS.max_steps, ge=1)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% slower
    # A generation task (supervised fine-tuning of a decoder): the prompt each text is trained and asked in, the
    # answer's length in tokens, and where it ends besides EOS. max_length then caps the text's tokens.
    template: str = "{text}"
    system: str | None = None
    chat_template: Literal["auto"] | bool = "auto"
    max_new_tokens: int = Field(64, ge=1, le=4096)
    stop: tuple[str, ...] = ()
    strip: bool = True  # strip whitespace from both ends of the answer

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        from variantlab.core.prompting import check_template

        return check_template(value)

    @model_validator(mode="after")
    def _pruned_needs_layers(self) -> FinetuneVariant:
        if self.kind == "pruned" and self.keep_layers is None:
            raise ValueError("a pruned variant needs keep_layers")
        if self.sharding == "fsdp" and self.checkpoint_every:
            raise ValueError("checkpoint_every is not supported with sharding: fsdp (each process holds a shard)")
        return self


def _fingerprint(cfg: FinetuneVariant, train: Any, seed: int) -> str:
    """Identifies what a checkpoint belongs to: resuming onto other params or data would be wrong."""
    digest = hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode() + str(seed).encode())
    digest.update("\n".join(train["id"].astype(str)).encode())
    return digest.hexdigest()[:16]


def relaunch_under_torchrun(processes: int, argv: list[str]) -> int:
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


def distributed_rank() -> tuple[int, int]:
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


def _quantization(device: str) -> dict[str, Any]:
    """QLoRA's base: 4-bit NF4 weights (bitsandbytes, CUDA), bf16 compute; the new head stays unquantized."""
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("qlora needs the bitsandbytes package (pip install bitsandbytes) on a CUDA machine") from None
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=["score", "classifier"],
    )
    return {"quantization_config": quantization, "device_map": {"": device}}


@dataclass
class FinetuneKind(VariantKind):
    """``full``, ``lora`` and ``pruned``: the open encoder with a head, trained by ``core.training``. A search's
    ``report`` may raise optuna.TrialPruned after an epoch."""

    config: ClassVar[type[VariantBase]] = FinetuneVariant
    takes_finetune_profile: ClassVar[bool] = True
    distributed: ClassVar[bool] = True
    generates: ClassVar[bool | None] = None  # a decoder learns to write answers (supervised fine-tuning)

    def check(self, task: Task) -> None:
        """The base's pins, qlora's device, and the LoRA targets against the architecture (built on the meta
        device from its config: no weights loaded), before the stage writes or logs anything."""
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

        from variantlab.core.classifier import lora_targets
        from variantlab.core.training import resolve_device
        from variantlab.io.zoo import is_decoder

        cfg, model = self.cfg, self.base
        if task.generative:
            from variantlab.variants.sft import check_sft

            check_sft(self, task)
            return
        if cfg.kind == "qlora" and not resolve_device(cfg.device).startswith("cuda"):
            raise ConfigError(
                "qlora needs a CUDA device (bitsandbytes 4-bit weights): use lora on CPU", file="params.yaml"
            )
        if cfg.kind in ("lora", "qlora"):
            config = AutoConfig.from_pretrained(model.directory, local_files_only=True)
            builder = AutoModelForSequenceClassification if is_decoder(model.directory) else AutoModel
            with torch.device("meta"):
                skeleton = builder.from_config(config)
            lora_targets(skeleton, cfg.lora.target_modules)

    def _encoder(self, model: Any, task: Task) -> tuple[Any, Any]:
        import torch

        from variantlab.core.classifier import EncoderClassifier, add_lora, lora_targets, prune_layers
        from variantlab.io.zoo import load_encoder

        cfg = self.cfg
        if cfg.kind == "qlora":
            raise ConfigError("qlora quantizes a decoder LLM's base; use lora for an encoder", file="params.yaml")
        tokenizer, encoder = load_encoder(model)
        if cfg.kind == "pruned":
            encoder = prune_layers(encoder, cfg.keep_layers or 1)
        if cfg.kind == "lora":
            targets = lora_targets(encoder, cfg.lora.target_modules)
            encoder = add_lora(
                encoder, rank=cfg.lora.rank, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout, target_modules=targets
            )
        torch.manual_seed(self.ctx.params.project.seed)
        return tokenizer, EncoderClassifier(encoder, task.num_outputs, dropout=cfg.dropout)

    def _decoder(self, model: Any, task: Task, device: str) -> tuple[Any, Any]:
        from variantlab.core.classifier import add_lora, lora_targets, prune_layers
        from variantlab.core.decoder import DecoderClassifier, load_sequence_classifier, load_tokenizer

        cfg = self.cfg
        tokenizer = load_tokenizer(model.directory, source=model.entry.source)
        network = load_sequence_classifier(
            model.directory,
            num_labels=task.num_outputs,
            problem_type=task.problem_type,
            pad_token_id=tokenizer.pad_token_id,
            **(_quantization(device) if cfg.kind == "qlora" else {}),
        )
        if cfg.kind == "qlora":
            from peft import prepare_model_for_kbit_training

            network = prepare_model_for_kbit_training(network, use_gradient_checkpointing=False)
        if cfg.kind == "pruned":
            network = prune_layers(network, cfg.keep_layers or 1)
        if cfg.kind in ("lora", "qlora"):
            network = add_lora(
                network,
                rank=cfg.lora.rank,
                alpha=cfg.lora.alpha,
                dropout=cfg.lora.dropout,
                target_modules=lora_targets(network, cfg.lora.target_modules),
                task_type="SEQ_CLS",
                gradient_checkpointing=cfg.gradient_checkpointing,
            )
        elif cfg.gradient_checkpointing:
            network.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return tokenizer, DecoderClassifier(network)

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        if task.generative:
            from variantlab.variants.sft import fit_sft

            return fit_sft(self, train, val, task, workdir)
        return self._fit_head(train, val, task, workdir)

    def checkpoints(self, train: Any, seed: int) -> Any:
        """The variant's checkpoint store (what its params and data are), for ``checkpoint_every``."""
        from variantlab.io.checkpoints import DirectoryCheckpointer

        store_dir = self.ctx.path(SCRATCH / "checkpoints" / f"{self.ctx.variant}-{_fingerprint(self.cfg, train, seed)}")
        if self.resume and store_dir.exists():
            info(f"train@{self.ctx.variant}: resuming from {store_dir}")
        return DirectoryCheckpointer(store_dir)

    def _fit_head(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        import mlflow
        import torch

        from variantlab.core.classifier import count_parameters
        from variantlab.core.training import Encoded, LoopSettings, resolve_device, train_classifier
        from variantlab.io.models import (
            decoder_model_kwargs,
            encoder_model_kwargs,
            stage_decoder_artifacts,
            stage_encoder_artifacts,
        )
        from variantlab.io.zoo import is_decoder

        cfg, ctx, model = self.cfg, self.ctx, self.base
        decoder = is_decoder(model.directory)
        rank, world = distributed_rank()
        device = resolve_device(cfg.device)
        if device == "cuda" and world > 1:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        # Seeded before anything draws from torch's generator: the adapters' initial weights (LoRA's A) and a
        # decoder's new head are random, and a search's second trial in one process must not start from the
        # first one's leftovers.
        torch.manual_seed(ctx.params.project.seed)
        tokenizer, classifier = self._decoder(model, task, device) if decoder else self._encoder(model, task)
        # The head trains on the target the kind standardises (a regression's); the served model undoes it.
        mean, std = task.standardiser(train)

        def encode(frame: Any) -> Encoded:
            ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=cfg.max_length)["input_ids"]
            return Encoded(ids, task.scaled_y(frame, mean, std))

        metric = ctx.params.metric
        settings = LoopSettings.from_variant(
            cfg, seed=ctx.params.project.seed, device=device, objective=task.kind, metric=metric
        )
        # Regression trains and validates on the standardised target: errors go back to the target's units.
        unit = task.metric_unit(metric, std)
        store = self.checkpoints(train, settings.seed)

        def log_step(state: Any, loss: Any) -> None:
            if state.step % 10 == 0 and rank == 0:  # float() syncs the GPU: only on the steps we log
                mlflow.log_metric("train_loss", float(loss), step=state.step)

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
        if store.directory.exists():  # finished: the model is the output now, the checkpoint only takes space
            shutil.rmtree(store.directory)
        if settings.fsdp and world > 1:  # every process gives its shards; rank 0 puts them in an unsharded copy
            from variantlab.core.training import full_state_dict

            weights = full_state_dict(classifier)  # a collective: every rank takes part, rank 0 receives
            if rank != 0:  # the other ranks' part is done; rank 0 alone saves (see stages.train)
                return Fitted(dict, {"world_size": world})
            torch.manual_seed(ctx.params.project.seed)
            tokenizer, classifier = self._decoder(model, task, "cpu") if decoder else self._encoder(model, task)
            classifier.load_state_dict(weights)
        if rank == 0:
            for row in state.history:
                mlflow.log_metric("epoch_train_loss", row["train_loss"], step=int(row["epoch"]))
        head = (
            {}
            if decoder
            else {
                "weight": classifier.head.weight.detach().cpu().numpy(),
                "bias": classifier.head.bias.detach().cpu().numpy(),
            }
        )
        meta = {
            **task.output_meta(mean, std),
            "batch_size": 64,
            "max_length": cfg.max_length,
            "normalize": False,
            "base_model": model.entry.source,
            "base_sha256": model.entry.key,
            "base": model.entry.model_dump(exclude_none=True),
            "architecture": "decoder" if decoder else "encoder",
            "strategy": cfg.kind,
        }
        trainable, total = count_parameters(classifier)
        best = (state.best_score if settings.higher_is_better else -state.best_score) * unit
        stats = {
            "architecture": "decoder" if decoder else "encoder",
            "trainable_params": trainable,
            "total_params": total,
            "base_model": model.entry.source,
            "epochs_run": state.epoch,
            "optimizer_steps": state.step,
            **val_stats(metric, best),
            "train_samples_per_s": round(world * state.samples / max(state.seconds, 1e-9), 2),
            "world_size": world,
            "device": device,
        }
        if device.startswith("cuda"):
            stats["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)

        def write() -> dict[str, Any]:
            if decoder:
                artifacts = stage_decoder_artifacts(workdir, meta=meta, model=classifier.model, tokenizer=tokenizer)
                return decoder_model_kwargs(artifacts, example_rows(train), task)
            artifacts = stage_encoder_artifacts(
                workdir, head=head, meta=meta, encoder=classifier.encoder, tokenizer=tokenizer
            )
            return encoder_model_kwargs(artifacts, example_rows(train), task)

        return Fitted(write, stats)
