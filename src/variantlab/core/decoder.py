"""Open decoder LLMs (Llama, Qwen, Mistral, Gemma, GPT-2 families) as classifiers and regressors.

A decoder reads left to right, so its summary of a text is the hidden state of the *last real token*. The
sequence-classification models of transformers pool exactly that token, finding it through the pad id in the
model's config (not only the tokenizer's): batches are right-padded with that id. LoRA targets differ per
architecture (``q_proj``/``v_proj`` for Llama-style attention, ``c_attn`` for GPT-2), so they come from a table
and are checked against the modules the model really has.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from variantlab.errors import ConfigError

# Attention projections LoRA adapts by default, per ``config.model_type``.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2", "smollm3"),
        ("q_proj", "v_proj"),
    ),
    "gpt2": ("c_attn",),
    # encoders
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra"), ("query", "value")),
    "distilbert": ("q_lin", "v_lin"),
}
ALL_LINEAR = "all-linear"


def load_tokenizer(directory: str | Path, *, source: str = "") -> Any:
    """The model's tokenizer, right padding, with a pad token (the eos token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(
                f"the tokenizer of {source or directory} has neither a pad nor an eos token: "
                "a batch of texts of different lengths cannot be padded"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _quiet() -> Any:
    """transformers reports the new head's fresh weights as a warning a user cannot act on: silenced."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_causal_lm(directory: str | Path, device: str = "cpu") -> Any:
    from transformers import AutoModelForCausalLM

    _quiet()
    model: Any = AutoModelForCausalLM.from_pretrained(
        directory, use_safetensors=True, local_files_only=True, dtype=torch.float32
    )
    return model.to(device).eval()


def load_sequence_classifier(
    directory: str | Path, *, num_labels: int, regression: bool, pad_token_id: int, device: str = "cpu"
) -> Any:
    """A decoder with a linear head on its last real token; the pad id goes into the model's config."""
    from transformers import AutoModelForSequenceClassification

    _quiet()
    model = AutoModelForSequenceClassification.from_pretrained(
        directory,
        num_labels=num_labels,
        problem_type="regression" if regression else "single_label_classification",
        use_safetensors=True,
        local_files_only=True,
        dtype=torch.float32,
    )
    model.config.pad_token_id = pad_token_id
    return model.to(device)


class DecoderClassifier(nn.Module):
    """``forward(input_ids, attention_mask) -> logits``: the interface of the project's training loop."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


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


def add_decoder_lora(
    model: Any, *, rank: int, alpha: int, dropout: float, targets: list[str] | str, gradient_checkpointing: bool
) -> Any:
    """Freeze the decoder and add LoRA adapters; ``task_type=SEQ_CLS`` trains and saves the head with them."""
    from peft import LoraConfig, TaskType, get_peft_model

    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())  # GPT-2 stores its linears transposed
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,
    )
    return get_peft_model(model, config)


def decoder_layers(model: Any) -> tuple[Any, str]:
    """The decoder's list of blocks and the config key that counts them."""
    base = getattr(model, model.base_model_prefix, model)
    for attr, key in (("layers", "num_hidden_layers"), ("h", "n_layer")):
        layers = getattr(base, attr, None)
        if isinstance(layers, nn.ModuleList):
            return (base, attr), key
    raise ConfigError(
        f"pruned: cannot find the decoder layers of a '{model.config.model_type}' model; use full or lora",
        file="params.yaml",
    )


def prune_decoder(model: Any, keep: int) -> Any:
    """Keep the first ``keep`` decoder blocks (and their entries in per-layer config lists)."""
    (owner, attr), key = decoder_layers(model)
    layers = getattr(owner, attr)
    if not 1 <= keep <= len(layers):
        raise ConfigError(
            f"keep_layers must be between 1 and {len(layers)} for this model, got {keep}", file="params.yaml"
        )
    setattr(owner, attr, nn.ModuleList(list(layers)[:keep]))
    setattr(model.config, key, keep)
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:keep]
    return model
