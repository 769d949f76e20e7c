"""Our training loop against the Hugging Face Trainer, side by side in one run, on the same work.

Same model, same sentences (real VADER), batch size, maximum length, precision and number of optimizer steps.
The Trainer runs twice: at its defaults, and tuned for this work (length-grouped sampling, plus bf16 where ours
uses it). Writes reports/bench/train.json (or --out) with samples/s of each and both ratios.

The model is all-MiniLM-L6-v2 by default; ``--model smollm2 --lora`` is SmolLM2-135M with LoRA on a
sequence-classification head (peft, the same adapters for both loops). ``--config FILE`` builds the model from a
config with random weights and random token ids of real lengths (the GPU check: no weights or data to fetch).

    python benchmarks/bench_train.py                       # CPU, batch 32, 20 steps (the figures in docs/speed.md)
    python benchmarks/bench_train.py --model smollm2 --lora --batch-size 16 --max-length 64 --steps 8 \
        --out reports/bench/train-llm-lora.json           # decoder LoRA (docs/llm.md)
    python benchmarks/bench_train.py --device cuda --bf16  # what benchmarks/gpu_check.sh runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def sentences(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n real VADER sentences with labels, fetched and parsed exactly as the ingest stage does."""
    from variantlab.config import load_params
    from variantlab.core.preprocessing import clean_text
    from variantlab.core.task import resolve_task, with_labels
    from variantlab.io.sources import fetch_vader_sdist, read_vader

    params = load_params(ROOT / "params.yaml")
    raw = with_labels(read_vader(fetch_vader_sdist(params.data.vader), params.data.vader.member), params)
    raw = raw.sample(n=n, random_state=seed)
    return [clean_text(t) for t in raw["text"]], resolve_task(params).y(raw)


def build(model_dir: Any, a: argparse.Namespace, *, head: bool) -> Any:
    """The network both loops train: a decoder's sequence-classification model (LoRA with ``--lora``), or for an
    encoder ``head``: our mean-pooling classifier, else the Trainer's sequence-classification model."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from variantlab.core.classifier import EncoderClassifier, add_lora, lora_targets
    from variantlab.core.decoder import is_causal_lm

    torch.manual_seed(0)
    source = a.config or model_dir
    config = AutoConfig.from_pretrained(source, num_labels=3)
    if is_causal_lm(config.architectures):
        config.pad_token_id = a.pad_id
        if a.config:
            network = AutoModelForSequenceClassification.from_config(config)
        else:
            network = AutoModelForSequenceClassification.from_pretrained(model_dir, config=config)
        if a.lora:
            targets = lora_targets(network, None)
            network = add_lora(network, rank=8, alpha=16, dropout=0.0, target_modules=targets, task_type="SEQ_CLS")
        return network
    if head:
        encoder = AutoModel.from_config(config) if a.config else AutoModel.from_pretrained(source)
        return EncoderClassifier(encoder, 3)
    if a.config:
        return AutoModelForSequenceClassification.from_config(config)
    return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3, use_safetensors=True)


def run_ours(model_dir: Any, ids: list[list[int]], labels: np.ndarray, a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from variantlab.core.decoder import DecoderClassifier
    from variantlab.core.training import Encoded, LoopSettings, train_classifier

    network = build(model_dir, a, head=True)
    model = network if hasattr(network, "head") else DecoderClassifier(network)
    settings = LoopSettings(
        epochs=1,
        batch_size=a.batch_size,
        lr=5e-5,
        device=a.device,
        bf16=a.bf16,
        compile=a.compile,
        max_steps=a.steps,
        patience=5,
    )
    val = Encoded(ids[: a.batch_size], labels[: a.batch_size])  # one batch: validation is not what we time
    if a.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    state = train_classifier(model, Encoded(ids, labels), val, settings, pad_id=a.pad_id)
    if a.device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    # Wall clock, as for the Trainer: set-up, and our one-batch validation, count against us.
    return {
        "samples_per_s": state.samples / wall,
        "wall_s": wall,
        "steps": state.step,
        "samples": state.samples,
        "loop_only_samples_per_s": state.samples / state.seconds,
    }


def run_trainer(
    model_dir: Any, ids: list[list[int]], labels: np.ndarray, a: argparse.Namespace, tuned: bool
) -> dict[str, Any]:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model = build(model_dir, a, head=False)
    data = [
        {"input_ids": x, "attention_mask": [1] * len(x), "labels": int(y)} for x, y in zip(ids, labels, strict=True)
    ]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=a.batch_size,
            max_steps=a.steps,
            learning_rate=5e-5,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=a.device == "cpu",
            seed=0,
            bf16=tuned and a.bf16,
            torch_compile=tuned and a.compile,
            train_sampling_strategy="group_by_length" if tuned else "random",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=DataCollatorWithPadding(a.tokenizer),
        )
        started = time.perf_counter()
        result = trainer.train()
        wall = time.perf_counter() - started
    samples = a.steps * a.batch_size
    return {
        "samples_per_s": samples / wall,
        "wall_s": wall,
        "steps": a.steps,
        "samples": samples,
        "trainer_reported_samples_per_s": result.metrics.get("train_samples_per_second"),
    }


def synthetic(a: argparse.Namespace) -> tuple[list[list[int]], np.ndarray]:
    """Random token ids with VADER-like lengths (8 to max_length) and random labels: for random-weight models."""
    import json as _json

    vocab = _json.loads((a.config / "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(0)
    n = a.steps * a.batch_size
    lengths = rng.integers(8, a.max_length + 1, size=n)
    a.pad_id = 0
    return [rng.integers(1, vocab, size=k).tolist() for k in lengths], rng.integers(0, 3, size=n)


class _PadOnly:
    """The Trainer's collator needs a tokenizer only to pad: this one pads input ids and masks, on the right."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def pad(self, features: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = [f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        return {
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor([f["labels"] for f in features]),
        }


def model_flops_utilisation(n_params: int, tokens_per_s: float, peak_tflops: float) -> float:
    """Training FLOPs ~ 6 x parameters x tokens; the share of the chip's peak bf16 dense throughput."""
    return 6 * n_params * tokens_per_s / (peak_tflops * 1e12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved; the best counts")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA) for ours and the tuned Trainer")
    parser.add_argument("--compile", action="store_true", help="torch.compile for ours and the tuned Trainer")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="chip peak bf16 dense TFLOP/s (H100: 989)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/bench/train.json")
    parser.add_argument("--model", default="minilm", help="a models: key of --params (minilm, smollm2)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--lora", action="store_true", help="LoRA adapters (peft) on a decoder, in both loops")
    parser.add_argument("--config", type=Path, help="a config.json folder: random weights and random token ids")
    a = parser.parse_args(argv)

    import torch
    import transformers

    if a.config:
        model_dir, ids, labels = None, *synthetic(a)
        a.tokenizer = _PadOnly(a.pad_id)
        name = f"{a.config.name} (random weights)"
    else:
        from variantlab.config import load_params
        from variantlab.core.decoder import load_tokenizer
        from variantlab.io.zoo import resolve

        model = resolve(load_params(a.params).models[a.model], ROOT)
        model_dir, name = model.directory, model.entry.source
        a.tokenizer = load_tokenizer(model.directory)
        a.pad_id = a.tokenizer.pad_token_id
        texts, labels = sentences(a.steps * a.batch_size, seed=0)
        ids = a.tokenizer(texts, truncation=True, max_length=a.max_length)["input_ids"]
    runners = {
        "ours": lambda: run_ours(model_dir, ids, labels, a),
        "trainer_default": lambda: run_trainer(model_dir, ids, labels, a, tuned=False),
        "trainer_tuned": lambda: run_trainer(model_dir, ids, labels, a, tuned=True),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    for repeat in range(a.repeats):  # interleaved, so drift in machine load hits all three alike
        for name, fn in runners.items():
            runs[name].append(fn())
            print(
                f"[{repeat + 1}/{a.repeats}] {name:16s} {runs[name][-1]['samples_per_s']:8.1f} samples/s",
                file=sys.stderr,
            )
    results = {
        name: {**max(r, key=lambda x: x["samples_per_s"]), "all_samples_per_s": [x["samples_per_s"] for x in r]}
        for name, r in runs.items()
    }
    ours = results["ours"]["samples_per_s"]
    report: dict[str, Any] = {
        "what": "training samples/s: variantlab loop vs Hugging Face Trainer (defaults, and group_by_length)",
        "command": "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": a.device if a.device == "cpu" else torch.cuda.get_device_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "model": name,
        "lora": a.lora,
        "batch_size": a.batch_size,
        "max_length": a.max_length,
        "steps": a.steps,
        "bf16": a.bf16,
        "compile": a.compile,
        "mean_tokens_per_sample": float(np.mean([len(x) for x in ids])),
        "results": results,
        "ratio_vs_default": ours / results["trainer_default"]["samples_per_s"],
        "ratio_vs_tuned": ours / results["trainer_tuned"]["samples_per_s"],
        "targets": {"cpu": {"ratio_vs_default": 1.5, "ratio_vs_tuned": 1.0}, "gpu": {"ratio_vs_tuned": 1.3}},
    }
    if a.device == "cuda":
        n_params = sum(p.numel() for p in torch.nn.Module.parameters(build(model_dir, a, head=False)))
        tokens_per_s = ours * report["mean_tokens_per_sample"]
        report["mfu_ours"] = model_flops_utilisation(n_params, tokens_per_s, a.peak_tflops)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {k: report[k] for k in ("device", "ratio_vs_default", "ratio_vs_tuned")}
            | {f"{k}_samples_per_s": round(v["samples_per_s"], 1) for k, v in results.items()}
            | ({"mfu_ours": report["mfu_ours"]} if "mfu_ours" in report else {})
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
