"""A sentence classifier on top of an open encoder, and the architecture changes a variant may make to it."""

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


def prune_layers(encoder: Any, keep: int) -> Any:
    """Keep the first ``keep`` transformer layers: a smaller, faster architecture to fine-tune."""
    layers = encoder.encoder.layer
    if not 1 <= keep <= len(layers):
        raise ConfigError(
            f"keep_layers must be between 1 and {len(layers)} for this model, got {keep}", file="params.yaml"
        )
    encoder.encoder.layer = nn.ModuleList(list(layers)[:keep])
    encoder.config.num_hidden_layers = keep
    return encoder


def add_lora(encoder: Any, *, rank: int, alpha: int, dropout: float, target_modules: Sequence[str]) -> Any:
    """Freeze the encoder and add PEFT LoRA adapters to the named linear layers."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules))
    return get_peft_model(encoder, config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
