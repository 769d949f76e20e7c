"""Sentence embeddings from a transformers encoder: mean pooling over length-sorted, dynamically padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from variantlab.core import timing


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def embed_texts(
    encoder: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = True,
    progress: str | None = None,
) -> np.ndarray:
    """Embed ``texts`` in their input order.

    Sorting by length first means each batch pads only to its own longest sentence, which about doubles
    throughput on CPU against input order (see DESIGN.md).
    """
    lengths = [len(t) for t in texts]
    order = np.argsort(lengths, kind="stable")
    chunks = length_chunks([lengths[i] for i in order], batch_size)
    device = next(encoder.parameters()).device
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    encoder.eval()
    with torch.inference_mode(), timing.compute():
        for start, stop in tqdm(chunks, desc=progress, disable=None if progress else True, unit="batch", leave=False):
            idx = order[start:stop]
            batch = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"])
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.float().cpu().numpy()
    return out


def length_chunks(sorted_lengths: Sequence[int], batch_size: int, spread: float = 1.25) -> list[tuple[int, int]]:
    """(start, stop) of each batch over texts sorted by length: at most ``batch_size`` texts, and a new batch
    once a text is more than ``spread`` times (plus 8 characters) the batch's shortest, so no batch pads short
    texts far out. Measured here: 32 texts of mixed length in one batch 244 ms, in such chunks about 170 ms;
    a large sorted set keeps full batches, its neighbours being of similar length."""
    chunks: list[tuple[int, int]] = []
    start = 0
    for i, length in enumerate(sorted_lengths):
        if i > start and (i - start >= batch_size or length > spread * sorted_lengths[start] + 8):
            chunks.append((start, i))
            start = i
    if start < len(sorted_lengths):
        chunks.append((start, len(sorted_lengths)))
    return chunks


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by each row's maximum."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def softmax_head(embeddings: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Class probabilities of a linear head (the multinomial logistic regression the probe trains)."""
    return softmax(embeddings @ weight.T + bias)
