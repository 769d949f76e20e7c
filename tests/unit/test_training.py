"""The fine-tuning loop on a tiny random BERT: learning, resume-after-interrupt, strategies, 2-process DDP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import tiny_sentences
from variantlab.core.classifier import EncoderClassifier, add_lora, count_parameters, prune_layers
from variantlab.core.training import Encoded, LoopSettings, length_grouped_batches, pad_batch, train_classifier
from variantlab.errors import ConfigError
from variantlab.io.checkpoints import DirectoryCheckpointer

LABELS = ["negative", "neutral", "positive"]


def encoded(tokenizer, n: int, seed: int) -> Encoded:
    frame = tiny_sentences(n, seed=seed)
    labels = np.where(frame["rating"] > 1, 2, np.where(frame["rating"] < -1, 0, 1))
    return Encoded(tokenizer(frame["text"].tolist(), truncation=True, max_length=16)["input_ids"], labels)


def build(tiny_bert: tuple[Path, str], strategy: str = "full") -> tuple[EncoderClassifier, object]:
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert[0])
    encoder = AutoModel.from_pretrained(tiny_bert[0], use_safetensors=True)
    if strategy == "pruned":
        encoder = prune_layers(encoder, 1)
    if strategy == "lora":
        encoder = add_lora(encoder, rank=4, alpha=8, dropout=0.0, target_modules=["query", "value"])
    return EncoderClassifier(encoder, 3, dropout=0.1), tokenizer


def test_length_grouped_batches_cover_every_example_once() -> None:
    lengths = list(np.random.default_rng(0).integers(1, 60, 333))
    batches = length_grouped_batches(lengths, 16, seed=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(333))
    assert batches != length_grouped_batches(lengths, 16, seed=2)  # a new order each epoch
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    assert spread < 10  # grouped: a batch holds similar lengths, so padding is small


def test_pad_batch_pads_to_the_batch_maximum() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8], [9, 9, 9, 9, 9]], [0, 1], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("strategy", ["full", "pruned", "lora"])
def test_each_strategy_learns_the_tiny_task(tiny_bert: tuple[Path, str], strategy: str) -> None:
    model, tok = build(tiny_bert, strategy)
    trainable, total = count_parameters(model)
    if strategy == "lora":
        assert trainable < total / 5  # only adapters and the head train
    if strategy == "pruned":
        assert len(model.encoder.encoder.layer) == 1
    settings = LoopSettings(epochs=8, batch_size=16, lr=3e-3 if strategy != "lora" else 1e-2, patience=8, seed=0)
    state = train_classifier(model, encoded(tok, 240, 0), encoded(tok, 60, 1), settings, pad_id=0)
    assert state.epoch == 8 and len(state.history) == 8
    assert state.best_score > 0.8, state.history  # chance is ~0.33


def test_resume_after_interrupt_gives_the_same_weights(tiny_bert: tuple[Path, str], tmp_path: Path) -> None:
    settings = LoopSettings(epochs=2, batch_size=16, lr=1e-3, seed=3, checkpoint_every=2, patience=5)
    model, tok = build(tiny_bert)
    train, val = encoded(tok, 96, 0), encoded(tok, 30, 1)
    train_classifier(model, train, val, settings, pad_id=0)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    class Interrupted(Exception):
        pass

    def crash_at_step_5(state, loss):  # after the step-4 checkpoint: steps 5+ must be redone
        if state.step == 5:
            raise Interrupted

    store = DirectoryCheckpointer(tmp_path / "ckpt")
    model, _ = build(tiny_bert)
    with pytest.raises(Interrupted):
        train_classifier(model, train, val, settings, pad_id=0, checkpoints=store, on_step=crash_at_step_5)
    assert store.exists()
    model, _ = build(tiny_bert)
    state = train_classifier(model, train, val, settings, pad_id=0, checkpoints=store, resume=True)
    assert state.epoch == 2
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)


def test_early_stopping_restores_the_best_epoch(tiny_bert: tuple[Path, str]) -> None:
    model, tok = build(tiny_bert)
    settings = LoopSettings(epochs=6, batch_size=16, lr=0.0, patience=1, seed=0, warmup_ratio=0.0)
    state = train_classifier(model, encoded(tok, 48, 0), encoded(tok, 30, 1), settings, pad_id=0)
    assert state.epoch == 2  # a zero learning rate never improves: stop after one bad epoch


def test_device_choice_is_explicit_about_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from variantlab.core.training import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
