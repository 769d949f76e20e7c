"""What a prompt variant costs, side by side in one run on real VADER sentences and SmolLM2-135M-Instruct.

- ``forward``: one plain forward pass of the zero-shot prompts (batches of 16, left padding, logits of the last
  position only): the floor any scoring of these prompts pays;
- ``zero_shot_uncached``: our single-token path scoring every label, computing each prompt whole;
- ``zero_shot``: the same with the shared prefix's keys and values computed once (what the variant runs);
- ``per_label_naive``: one pass per label over prompt + label (what scoring full label sequences costs);
- ``few_shot`` / ``few_shot_uncached``: k examples per label before every text, with and without the cache;
- ``matmul_peak``: fp32 GEMM GFLOP/s of this machine, and the prompt variant's GFLOP/s as a share of it
  (2 x non-embedding parameters x tokens computed; attention's own FLOPs left out).

    python benchmarks/bench_llm.py                 # -> reports/bench/llm-prompt.json (about 4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import write_report  # noqa: E402
from benchmarks.bench_train import sentences  # noqa: E402

TEMPLATE = "What is the sentiment of this text? Answer with one word: {labels}.\n\nText: {text}"
LABELS = ["negative", "neutral", "positive"]


def matmul_peak(size: int = 1024, repeats: int = 20) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def plain_forward(model: Any, scorer: Any, texts: list[str], batch_size: int) -> int:
    """One forward pass per batch of full prompts, left-padded, last position's logits only; returns tokens."""
    import torch

    tokens = 0
    rows = [scorer.prompt_ids(text) for text in texts]
    order = np.argsort([len(r) for r in rows], kind="stable")
    for start in range(0, len(order), batch_size):
        batch = [rows[i] for i in order[start : start + batch_size]]
        width = max(len(r) for r in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1, use_cache=False)
        tokens += int(mask.sum())
    return tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=128, help="as many as a small test set: the prefix amortizes")
    parser.add_argument("--shots", type=int, default=2, help="few-shot examples per label")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs of each; the fastest counts")
    parser.add_argument("--params", type=Path, default=ROOT / "examples/llm-variants/params.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/bench/llm-prompt.json")
    a = parser.parse_args(argv)

    import torch
    import transformers

    from variantlab.config import load_params
    from variantlab.core.decoder import load_causal_lm, load_tokenizer
    from variantlab.core.prompting import PromptScorer, PromptSpec
    from variantlab.io.zoo import resolve

    base = resolve(load_params(a.params).models["smollm2"], ROOT)
    tokenizer, model = load_tokenizer(base.directory), load_causal_lm(base.directory)
    texts, labels = sentences(a.texts + 3 * a.shots, seed=1)
    texts, pool = texts[: a.texts], list(zip(texts[a.texts :], labels[a.texts :], strict=True))
    examples = [(text, LABELS[int(y)]) for text, y in pool][: 3 * a.shots]
    zero = PromptSpec(template=TEMPLATE, labels=LABELS, words=LABELS, max_text_tokens=128)
    few = PromptSpec(template=TEMPLATE, labels=LABELS, words=LABELS, max_text_tokens=128, examples=examples)
    zero_scorer = PromptScorer(model, tokenizer, zero, batch_size=a.batch_size)
    few_scorer = PromptScorer(model, tokenizer, few, batch_size=a.batch_size)
    naive = PromptScorer(model, tokenizer, zero, batch_size=a.batch_size)
    naive.single_token = False  # one pass per label over prompt + label

    def scored(scorer: Any, use_cache: bool) -> Any:
        def run() -> int:
            scorer._prefix_cache = None  # the prefix is computed again in every timed run
            before = scorer.tokens_scored
            scorer.label_scores(texts, use_cache=use_cache)
            return int(scorer.tokens_scored - before)

        return run

    runners = {
        "forward": lambda: plain_forward(model, zero_scorer, texts, a.batch_size),
        "zero_shot_uncached": scored(zero_scorer, False),
        "zero_shot": scored(zero_scorer, True),
        "per_label_naive": scored(naive, False),
        "few_shot": scored(few_scorer, True),
        "few_shot_uncached": scored(few_scorer, False),
    }
    best: dict[str, dict[str, float]] = {}
    peaks = []
    for repeat in range(a.repeats):  # interleaved: drift in the machine's load hits every runner alike
        peaks.append(matmul_peak())
        for name, fn in runners.items():
            started = time.perf_counter()
            tokens = fn()
            seconds = time.perf_counter() - started
            if name not in best or seconds < best[name]["seconds"]:
                best[name] = {"seconds": round(seconds, 3), "tokens_computed": tokens}
            print(f"[{repeat + 1}/{a.repeats}] {name:20s} {seconds:7.2f} s", file=sys.stderr)
    for row in best.values():
        row["texts_per_s"] = round(a.texts / row["seconds"], 2)
    embedding = model.get_input_embeddings().weight.numel()
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding
    peak = max(peaks)
    gflops = 2 * non_embedding * best["zero_shot"]["tokens_computed"] / best["zero_shot"]["seconds"] / 1e9
    forward = best["forward"]["seconds"]
    report = {
        "what": "prompt variant cost: label scoring against one forward pass; the shared prefix's cache",
        "command": "python benchmarks/bench_llm.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": base.entry.source + "/" + (base.entry.file or ""),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "texts": a.texts,
        "batch_size": a.batch_size,
        "shots_per_label": a.shots,
        "prompt_tokens_per_text": {
            "zero_shot": round(float(np.mean([len(zero_scorer.prompt_ids(t)) for t in texts])), 1),
            "few_shot": round(float(np.mean([len(few_scorer.prompt_ids(t)) for t in texts])), 1),
        },
        "results": best,
        "ratios": {
            "zero_shot_uncached_vs_forward": round(best["zero_shot_uncached"]["seconds"] / forward, 3),
            "zero_shot_vs_forward": round(best["zero_shot"]["seconds"] / forward, 3),
            "per_label_naive_vs_forward": round(best["per_label_naive"]["seconds"] / forward, 3),
            "few_shot_vs_zero_shot": round(best["few_shot"]["seconds"] / best["zero_shot"]["seconds"], 3),
            "few_shot_uncached_vs_zero_shot": round(
                best["few_shot_uncached"]["seconds"] / best["zero_shot"]["seconds"], 3
            ),
        },
        "matmul_peak_gflops": round(peak, 1),
        "zero_shot_gflops": round(gflops, 1),
        "zero_shot_share_of_peak": round(gflops / peak, 3),
        "non_embedding_params": non_embedding,
        "targets": {"zero_shot_uncached_vs_forward": 1.2, "few_shot_vs_zero_shot": 1.5},
    }
    write_report(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
