"""Our training loop against the Hugging Face Trainer, side by side in one run, on the same work.

Same model (all-MiniLM-L6-v2), same sentences (real VADER), batch size, maximum length, precision and number of
optimizer steps. The Trainer runs twice: at its defaults, and tuned for this work (length-grouped sampling, plus
bf16 where ours uses it). Writes reports/bench/train.json with samples/s of each and both ratios.

    python benchmarks/bench_train.py                       # CPU, batch 32, 20 steps (the figures in docs/speed.md)
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


def run_ours(model_dir: Path, ids: list[list[int]], labels: np.ndarray, a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModel

    from variantlab.core.classifier import EncoderClassifier
    from variantlab.core.training import Encoded, LoopSettings, train_classifier

    torch.manual_seed(0)
    model = EncoderClassifier(AutoModel.from_pretrained(model_dir, use_safetensors=True), 3)
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
    state = train_classifier(model, Encoded(ids, labels), val, settings, pad_id=0)
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
    model_dir: Path, ids: list[list[int]], labels: np.ndarray, a: argparse.Namespace, tuned: bool
) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3, use_safetensors=True)
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
            data_collator=DataCollatorWithPadding(AutoTokenizer.from_pretrained(model_dir)),
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
    a = parser.parse_args(argv)

    import torch
    import transformers
    from transformers import AutoTokenizer

    from variantlab.config import load_params
    from variantlab.io.zoo import resolve

    model = resolve(load_params(ROOT / "params.yaml").models["minilm"], ROOT)
    tokenizer = AutoTokenizer.from_pretrained(model.directory)
    texts, labels = sentences(a.steps * a.batch_size, seed=0)
    ids = tokenizer(texts, truncation=True, max_length=a.max_length)["input_ids"]
    runners = {
        "ours": lambda: run_ours(model.directory, ids, labels, a),
        "trainer_default": lambda: run_trainer(model.directory, ids, labels, a, tuned=False),
        "trainer_tuned": lambda: run_trainer(model.directory, ids, labels, a, tuned=True),
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
        "model": "all-MiniLM-L6-v2",
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
        n_params = sum(
            p.numel() for p in torch.nn.Module.parameters(transformers.AutoModel.from_pretrained(model.directory))
        )
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
