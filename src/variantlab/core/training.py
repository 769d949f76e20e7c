"""The fine-tuning loop: small enough to read in one screen, fast where it matters on CPU and GPU.

Pre-tokenised inputs, dynamic padding, length-grouped batches, AdamW with linear warm-up and decay, gradient
accumulation, validation each epoch with early stopping, bf16 autocast and TF32 on CUDA, optional
torch.compile, checkpoints every N optimizer steps that resume bit-for-bit on CPU, DDP when launched that way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from variantlab.core import timing
from variantlab.core.loop_defaults import LOOP_DEFAULTS as _DEFAULTS
from variantlab.errors import ConfigError


@dataclass(frozen=True)
class LoopSettings:
    """The loop's knobs. Defaults are the config's own (``core.loop_defaults``), so the two cannot drift apart;
    ``device`` is a resolved torch device, never ``auto``; ``objective`` comes from the task."""

    epochs: int = _DEFAULTS.epochs
    batch_size: int = _DEFAULTS.batch_size
    lr: float = _DEFAULTS.lr
    weight_decay: float = _DEFAULTS.weight_decay
    warmup_ratio: float = _DEFAULTS.warmup_ratio
    grad_accum: int = _DEFAULTS.grad_accum
    patience: int = _DEFAULTS.patience
    seed: int = 42
    device: str = "cpu"
    bf16: bool = _DEFAULTS.bf16
    compile: bool = _DEFAULTS.compile
    checkpoint_every: int = _DEFAULTS.checkpoint_every
    max_steps: int | None = _DEFAULTS.max_steps
    fsdp: bool = _DEFAULTS.fsdp  # several processes shard parameters, gradients and optimizer state (FSDP2)
    objective: str = "classification"  # or "regression": one output, mean squared error
    metric: str | None = None  # the validation metric (the task's headline): macro_f1 / mae when None

    @classmethod
    def from_variant(
        cls, cfg: Any, *, seed: int, device: str, objective: str, metric: str | None = None
    ) -> LoopSettings:
        resolved = {"seed", "device", "objective", "metric"}
        shared = {
            f.name: getattr(cfg, f.name)
            for f in fields(cls)
            if f.name in type(cfg).model_fields and f.name not in resolved
        }
        fsdp = getattr(cfg, "sharding", "ddp") == "fsdp"
        return cls(**shared, seed=seed, device=device, objective=objective, metric=metric, fsdp=fsdp)

    @property
    def val_metric(self) -> str:
        return self.metric or ("macro_f1" if self.objective == "classification" else "mae")

    @property
    def higher_is_better(self) -> bool:
        return self.val_metric not in ("mae", "rmse")


@dataclass
class Encoded:
    """Token ids (unpadded) and targets: integer labels, or numbers (standardised) for regression."""

    ids: list[list[int]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float = float("-inf")  # higher is better: macro-F1, or minus an error (MAE, RMSE)
    bad_epochs: int = 0
    samples: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


class Checkpointer(Protocol):
    def exists(self) -> bool: ...
    def save(
        self, model: dict[str, torch.Tensor], best: dict[str, torch.Tensor] | None, trainer: dict[str, Any]
    ) -> None: ...
    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]: ...


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was requested but no CUDA device is available: set the variant's device to auto or cpu "
            "(or profile: cpu)",
            file="params.yaml",
        )
    return requested


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, megabatch: int = 50) -> list[list[int]]:
    """Shuffle, then sort within mega-batches by length: batches pad little yet still vary between epochs."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    for start in range(0, len(perm), megabatch * batch_size):
        chunk = perm[start : start + megabatch * batch_size]
        chunk = chunk[np.argsort([-lengths[i] for i in chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(ids: list[list[int]], index: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic padding: to the longest sequence of this batch only."""
    width = max(len(ids[i]) for i in index)
    input_ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    for row, i in enumerate(index):
        input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
        mask[row, : len(ids[i])] = 1
    return input_ids, mask


def _optimizer(model: nn.Module, s: LoopSettings, fused: bool) -> torch.optim.AdamW:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s.lr, fused=fused)


def _schedule(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def predict_logits(model: nn.Module, data: Encoded, *, batch_size: int, pad_id: int, device: str) -> np.ndarray:
    """Logits in input order; batches of similar length for speed."""
    order = np.argsort([len(x) for x in data.ids], kind="stable")
    out: np.ndarray | None = None
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size].tolist()
            input_ids, mask = pad_batch(data.ids, index, pad_id)
            logits = model(input_ids.to(device), mask.to(device)).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(data), logits.shape[1]), dtype=np.float32)
            out[index] = logits
    model.train()
    assert out is not None
    return out


def validation_score(logits: np.ndarray, targets: np.ndarray, objective: str, metric: str | None = None) -> float:
    """The validation metric of the argmax (classification: macro-F1 by default) or of the one output
    (regression: MAE by default, in the units of ``targets``)."""
    from variantlab.core.metrics import metric_value

    if objective == "regression":
        return metric_value(metric or "mae", targets, logits[:, 0])
    if metric in (None, "macro_f1"):
        return float(f1_score(targets, logits.argmax(1), average="macro"))
    return metric_value(metric, targets, logits.argmax(1))


def shard(model: nn.Module) -> None:
    """FSDP2: every block of each ``ModuleList`` (the transformer's layers) is one unit, then the whole model;
    each process keeps a shard of the weights, gradients and optimizer state. Frozen and trainable parameters
    (LoRA) may share a unit."""
    from torch.distributed.fsdp import fully_shard

    for module in list(model.modules()):
        if isinstance(module, nn.ModuleList):
            for block in module:
                fully_shard(block)
    fully_shard(model)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A sharded model's whole weights on the CPU, gathered from every process (all of them must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    gathered = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {name: value for name, value in gathered.items() if isinstance(value, torch.Tensor)}


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def train_classifier(
    model: nn.Module,
    train: Encoded,
    val: Encoded,
    s: LoopSettings,
    *,
    pad_id: int,
    **loop: Any,
) -> LoopState:
    """Train a classifier or regressor (``model(input_ids, mask) -> (rows, outputs)``) in place with
    ``train_loop``: cross-entropy on the labels, or mean squared error on the standardised targets; validated
    on the argmax (macro-F1 by default) or on the one output (MAE)."""
    regression = s.objective == "regression"
    labels = torch.tensor(train.labels, dtype=torch.float32 if regression else torch.long)

    def batch_loss(step_model: Any, index: list[int], device: torch.device) -> torch.Tensor:
        input_ids, mask = pad_batch(train.ids, index, pad_id)
        logits = step_model(input_ids.to(device, non_blocking=True), mask.to(device, non_blocking=True))
        target = labels[index].to(device)
        if regression:
            return nn.functional.mse_loss(logits.float().squeeze(-1), target)
        return nn.functional.cross_entropy(logits.float(), target)

    def validate(trained: nn.Module) -> float:
        logits = predict_logits(trained, val, batch_size=max(64, s.batch_size), pad_id=pad_id, device=s.device)
        return validation_score(logits, val.labels, s.objective, s.val_metric)

    return train_loop(model, [len(x) for x in train.ids], s, batch_loss=batch_loss, validate=validate, **loop)


def train_loop(
    model: nn.Module,
    lengths: list[int],
    s: LoopSettings,
    *,
    batch_loss: Callable[[Any, list[int], torch.device], torch.Tensor],
    validate: Callable[[nn.Module], float],
    checkpoints: Checkpointer | None = None,
    resume: bool = False,
    on_step: Callable[[LoopState, torch.Tensor], None] | None = None,
    on_epoch: Callable[[LoopState, float], None] | None = None,
    progress: str | None = None,
) -> LoopState:
    """Train in place; returns the final state. ``lengths``: each training example's tokens (batches group
    similar lengths); ``batch_loss(model, rows, device)`` the mean loss of those rows (the loop scales it for
    gradient accumulation and runs it under autocast); ``validate(model)`` the validation metric after each
    epoch, which early stopping and the kept weights follow.

    ``on_step(state, loss)`` sees every optimizer step and ``on_epoch(state, value)`` every epoch's validation
    value; an exception it raises (a search pruning the trial) stops training and propagates. ``loss`` is a
    0-d tensor on the training device: turning it into a number syncs a GPU, so a callback should do that only
    on the steps it logs.
    """
    import time

    from variantlab.core.decoder import grouped_query_attention

    with grouped_query_attention(model, s.device):  # Llama-style attention on CPU: see there
        torch.manual_seed(s.seed)
        device = torch.device(s.device)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        model.to(device)
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        sharded = s.fsdp and world > 1
        if sharded:  # before the optimizer: it must hold the shards
            shard(model)
        optimizer = _optimizer(model, s, fused=device.type == "cuda")
        # Mega-batches hold a whole number of batches, so an epoch has ceil(n / batch_size) of them; no need to
        # build (shuffle and sort) an epoch's batches just to count them.
        batches_per_rank = math.ceil(math.ceil(len(lengths) / s.batch_size) / world)
        per_epoch = math.ceil(batches_per_rank / s.grad_accum)
        total = min(s.max_steps or 10**12, s.epochs * per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, int(s.warmup_ratio * total)))
        state, best = LoopState(), None
        if resume and checkpoints is not None and checkpoints.exists():
            weights, best, trainer = checkpoints.load()
            model.load_state_dict(weights)
            optimizer.load_state_dict(trainer["optimizer"])
            scheduler.load_state_dict(trainer["scheduler"])
            torch.set_rng_state(trainer["rng"])
            state = LoopState(**trainer["state"])
        wrapped: nn.Module = model
        if world > 1 and not sharded:
            wrapped = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        step_model = torch.compile(wrapped) if s.compile else wrapped

        def checkpoint() -> None:
            if checkpoints is not None and rank == 0:
                trainer = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "state": asdict(state),
                }
                checkpoints.save(_state_dict(model), best, trainer)

        while state.epoch < s.epochs and state.step < total:
            batches = length_grouped_batches(lengths, s.batch_size, s.seed + state.epoch)[rank::world]
            loss_sum, seen = torch.zeros((), device=device), 0
            started = time.perf_counter()
            bar = tqdm(
                total=len(batches),
                initial=state.batch_in_epoch,
                desc=f"{progress or 'train'} epoch {state.epoch + 1}",
                disable=None if progress else True,
                unit="batch",
                leave=False,
            )
            for b in range(state.batch_in_epoch, len(batches)):
                index = batches[b]
                with timing.compute():
                    with torch.autocast(
                        device_type=device.type, dtype=torch.bfloat16, enabled=s.bf16 and device.type == "cuda"
                    ):
                        loss = batch_loss(step_model, index, device) / s.grad_accum
                    loss.backward()
                    loss_sum += loss.detach()  # no .item() per step: it would sync the GPU every batch
                seen += len(index)
                bar.update(1)
                if (b + 1) % s.grad_accum and b + 1 != len(batches):
                    continue
                with timing.compute():
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batch_in_epoch = b + 1
                if on_step is not None:
                    on_step(state, loss.detach() * s.grad_accum)
                if s.checkpoint_every and state.step % s.checkpoint_every == 0:
                    checkpoint()
                if state.step >= total:
                    break
            bar.close()
            state.samples += seen
            state.seconds += time.perf_counter() - started
            with timing.compute():
                value = validate(model)
            score = value if s.higher_is_better else -value  # higher is better, whatever the metric
            state.history.append(
                {
                    "epoch": state.epoch + 1,
                    "train_loss": float(loss_sum) * s.grad_accum / max(1, len(batches)),
                    f"val_{s.val_metric}": value,
                }
            )
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            if score > state.best_score:
                state.best_score, state.bad_epochs, best = score, 0, _state_dict(model)
            else:
                state.bad_epochs += 1
            checkpoint()
            if on_epoch is not None:
                on_epoch(state, value)
            if state.bad_epochs >= s.patience:
                break
        if best is not None:
            model.load_state_dict(best)
        return state
