"""Open decoder LLMs (Llama, Qwen, Mistral, Gemma, GPT-2 families) as classifiers and regressors.

A decoder reads left to right, so its summary of a text is the hidden state of the *last real token*. The
sequence-classification models of transformers pool exactly that token, finding it through the pad id in the
model's config (not only the tokenizer's): batches are right-padded with that id. LoRA and pruning work on any
architecture (``core/classifier.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from variantlab.errors import ConfigError


def is_causal_lm(architectures: list[str] | None) -> bool:
    """A config's ``architectures`` name a causal language model (an open LLM), not an encoder."""
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures or [])


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
    directory: str | Path, *, num_labels: int, problem_type: str, pad_token_id: int, **loading: Any
) -> Any:
    """A decoder with a linear head on its last real token (``problem_type``: the task kind's); the pad id goes
    into the model's config. ``loading``: more ``from_pretrained`` arguments (qlora's quantization); without
    them the weights load as float32 on the CPU."""
    from transformers import AutoModelForSequenceClassification

    _quiet()
    model = AutoModelForSequenceClassification.from_pretrained(
        directory,
        num_labels=num_labels,
        problem_type=problem_type,
        use_safetensors=True,
        local_files_only=True,
        **(loading or {"dtype": torch.float32}),
    )
    model.config.pad_token_id = pad_token_id
    return model


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


def has_grouped_query_attention(model: nn.Module) -> bool:
    """Fewer key/value heads than query heads (Llama-style decoders; not BERT)."""
    config = next((m.config for m in model.modules() if hasattr(m, "config")), None)
    heads = getattr(config, "num_attention_heads", None)
    return heads is not None and getattr(config, "num_key_value_heads", heads) < heads


@contextmanager
def grouped_query_attention(model: nn.Module, device: str | torch.device) -> Iterator[None]:
    """While it lasts, a model with grouped-query attention on CPU attends through SDPA's ``enable_gqa`` even
    under a padding mask, instead of first copying the keys and values to every query head, which transformers
    does unless CUDA's unmasked fast path applies. The same attention, less memory traffic: about 10% more
    samples/s for SmolLM2 LoRA (reports/bench/train-llm-lora.json), and few-shot prompts, whose batches all
    attend to a long shared prefix, 1.99x -> 1.26x the cost of zero-shot (reports/bench/llm-prompt.json)."""
    key = "TRANSFORMERS_SDPA_FORCE_GQA"
    before = os.environ.get(key)
    if torch.device(device).type == "cpu" and has_grouped_query_attention(model):
        os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
