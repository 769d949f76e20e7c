"""A sentence classifier on top of an open encoder, and the architecture changes a variant may make to any
transformer, encoder or decoder LLM: LoRA adapters (targets per architecture) and pruned layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from variantlab.core.embeddings import mean_pool
from variantlab.errors import ConfigError


class EncoderClassifier(nn.Module):
    """Encoder -> mean pooling over real tokens -> dropout -> linear head."""

    def __init__(self, encoder: Any, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        # Mean pooling replaces BERT's pooler; an unused pooler would also stall DDP's gradient reduction.
        base = encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder
        if getattr(base, "pooler", None) is not None:
            base.pooler = None
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(mean_pool(hidden, attention_mask)))


# Attention projections LoRA adapts by default, per ``config.model_type``.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2", "smollm3"),
        ("q_proj", "v_proj"),
    ),
    "gpt2": ("c_attn",),
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra"), ("query", "value")),
    "distilbert": ("q_lin", "v_lin"),
}
ALL_LINEAR = "all-linear"


def transformer_blocks(model: Any) -> tuple[nn.Module, str, nn.ModuleList]:
    """(owner, attribute, blocks): the ``ModuleList`` of the model's ``num_hidden_layers`` transformer blocks,
    wherever the architecture keeps it (BERT's ``encoder.layer``, Llama's ``model.layers``, GPT-2's ``h``)."""
    count = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            owner, _, attr = name.rpartition(".")
            return model.get_submodule(owner), attr, module
    raise ConfigError(
        f"pruned: cannot find the {count} transformer blocks of a '{model.config.model_type}' model; use full or lora",
        file="params.yaml",
    )


def prune_layers(model: Any, keep: int) -> Any:
    """Keep the first ``keep`` transformer blocks (and their entries in per-layer config lists): a smaller,
    faster architecture to fine-tune."""
    owner, attr, blocks = transformer_blocks(model)
    if not 1 <= keep <= len(blocks):
        raise ConfigError(
            f"keep_layers must be between 1 and {len(blocks)} for this model, got {keep}", file="params.yaml"
        )
    setattr(owner, attr, nn.ModuleList(list(blocks)[:keep]))
    model.config.num_hidden_layers = keep
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:keep]
    return model


def linear_module_names(model: nn.Module) -> list[str]:
    """The short names of the model's linear layers (GPT-2's Conv1D included): what LoRA can target."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def lora_targets(model: nn.Module, requested: Sequence[str] | str | None) -> list[str] | str:
    """The modules LoRA adapts: as asked, or the architecture's attention projections; a name the model does
    not have is an error that lists the ones it does."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if requested == ALL_LINEAR:
        return ALL_LINEAR
    if requested is None:
        if model_type not in LORA_TARGETS:
            raise ConfigError(
                f"no default LoRA targets for a '{model_type}' model: set lora.target_modules to some of "
                f"{', '.join(linear_module_names(model))} (or {ALL_LINEAR})",
                file="params.yaml",
            )
        requested = LORA_TARGETS[model_type]
    available = set(linear_module_names(model))
    missing = [name for name in requested if name not in available]
    if missing:
        raise ConfigError(
            f"LoRA target(s) {', '.join(missing)} are not modules of this {model_type or 'model'}: "
            f"its linear layers are {', '.join(sorted(available))} (or use {ALL_LINEAR})",
            file="params.yaml",
        )
    return list(requested)


def add_lora(
    model: Any,
    *,
    rank: int,
    alpha: int,
    dropout: float,
    target_modules: Sequence[str] | str,
    task_type: str | None = None,
    gradient_checkpointing: bool = False,
) -> Any:
    """Freeze the model and add PEFT LoRA adapters to the named linear layers. ``task_type="SEQ_CLS"`` (a
    decoder's sequence-classification model) trains and saves its head with them."""
    from peft import LoraConfig, get_peft_model

    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())  # GPT-2 stores its linears transposed
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(
        task_type=task_type,
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,
    )
    return get_peft_model(model, config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
