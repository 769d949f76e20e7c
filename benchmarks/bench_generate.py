"""What a generation variant costs, side by side in one run on the text-to-text example's sentences (dates to
ISO 8601) and SmolLM2-135M-Instruct, with the example's prompt.

Decoding (greedy, the same answers either way):
- ``one_at_a_time``: transformers' ``generate`` on one prompt at a time (the KV cache, no padding);
- ``batched``: :class:`variantlab.core.generation.Generator` at ``--batch-size`` (similar lengths together,
  left-padded, the KV cache), as the train and evaluate stages and the served model decode.

Supervised fine-tuning (LoRA on q_proj/v_proj, the same adapters, data, batch size, learning rate and steps):
- ``trainer``: the Hugging Face Trainer with ``DataCollatorForSeq2Seq`` (the prompt's labels -100, right padding:
  the causal-LM collator for prompt-masked SFT; TRL's SFTTrainer does the same on top of it);
- ``ours``: ``core.training.train_loop`` with ``core.generation.answer_loss`` (length-grouped batches, left padding,
  logits of the answer's positions only).

    python benchmarks/bench_generate.py        # -> reports/bench/generate.json (about 5 minutes on 2 cores)

``--config DIR`` builds the model from a config with random weights and skips the real model (the GPU check).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import write_report  # noqa: E402

SYSTEM = "Rewrite the date mentioned in the text in ISO 8601 format (YYYY-MM-DD). Answer with the date only."


def pairs(n: int, seed: int = 11) -> list[tuple[str, str]]:
    """The example's sentences and targets (examples/text-to-text/make_dates.py)."""
    sys.path.insert(0, str(ROOT / "examples/text-to-text"))
    from make_dates import date_rows

    return [(row["text"], row["target"]) for row in date_rows(n, seed)]


def load(a: argparse.Namespace) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from variantlab.config import load_params
    from variantlab.core.decoder import load_causal_lm, load_tokenizer
    from variantlab.io.zoo import resolve

    base = resolve(load_params(ROOT / "examples/text-to-text/params.yaml").models["smollm2"], ROOT)
    tokenizer = load_tokenizer(base.directory)
    if a.config is None:
        return load_causal_lm(base.directory, a.device), tokenizer, base.entry.source
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(a.config))
    return model.to(a.device).eval(), tokenizer, f"random weights from {a.config}"


def decoding(model: Any, tokenizer: Any, texts: list[str], a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from variantlab.core.generation import GenerationSpec, Generator

    spec = GenerationSpec(system=SYSTEM, max_new_tokens=a.max_new_tokens, stop=["\n"])
    batched = Generator(model, tokenizer, spec, batch_size=a.batch_size)
    prompts = [batched.format.prompt_ids(text) for text in texts]

    def one_at_a_time() -> list[str]:
        answers = []
        with torch.inference_mode():
            for ids in prompts:
                out = model.generate(
                    input_ids=torch.tensor([ids], device=a.device),
                    attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=a.device),
                    max_new_tokens=a.max_new_tokens,
                    do_sample=False,
                    pad_token_id=batched.pad,
                    eos_token_id=batched.eos,
                )
                answers.append(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).split("\n")[0].strip())
        return answers

    def timed(run: Any) -> tuple[float, list[str]]:
        started = time.perf_counter()
        out = run()
        return time.perf_counter() - started, out

    batched.generate(texts[: a.batch_size])  # warm-up
    best: dict[str, float] = {}
    for _ in range(a.repeats):  # interleaved; the fastest of each counts
        seconds, alone = timed(one_at_a_time)
        best["one_at_a_time"] = min(best.get("one_at_a_time", seconds), seconds)
        before = batched.tokens_generated
        seconds, together = timed(lambda: batched.generate(texts))
        best["batched"] = min(best.get("batched", seconds), seconds)
        tokens = batched.tokens_generated - before
    same = float(np.mean([x == y for x, y in zip(alone, together, strict=True)]))
    return {
        "texts": len(texts),
        "batch_size": a.batch_size,
        "max_new_tokens": a.max_new_tokens,
        "generated_tokens": tokens,
        "prompt_tokens_per_text": round(float(np.mean([len(p) for p in prompts])), 1),
        "one_at_a_time": {
            "seconds": round(best["one_at_a_time"], 3),
            "texts_per_s": round(len(texts) / best["one_at_a_time"], 2),
            "tokens_per_s": round(tokens / best["one_at_a_time"], 1),
        },
        "batched": {
            "seconds": round(best["batched"], 3),
            "texts_per_s": round(len(texts) / best["batched"], 2),
            "tokens_per_s": round(tokens / best["batched"], 1),
        },
        "batched_vs_one_at_a_time": round(best["one_at_a_time"] / best["batched"], 3),
        "same_answers_share": round(same, 4),
        "example_answers": list(zip(texts[:3], together[:3], strict=True)),
    }


def _lora(model: Any) -> Any:
    import torch

    from variantlab.core.classifier import add_lora, lora_targets

    torch.manual_seed(0)
    return add_lora(
        model, rank=8, alpha=16, dropout=0.0, target_modules=lora_targets(model, None), task_type="CAUSAL_LM"
    )


def training(fresh: Any, tokenizer: Any, data: list[tuple[str, str]], a: argparse.Namespace) -> dict[str, Any]:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from variantlab.core.generation import GenerationSpec, PromptFormat, answer_loss
    from variantlab.core.training import LoopSettings, train_loop

    prompt = PromptFormat(tokenizer, GenerationSpec(system=SYSTEM))
    examples = [prompt.example(text, answer) for text, answer in data[: a.steps * a.batch_size]]
    pad = tokenizer.pad_token_id
    samples = len(examples)

    def ours() -> float:
        model = _lora(fresh())
        settings = LoopSettings(
            epochs=1, batch_size=a.batch_size, lr=1e-4, device=a.device, max_steps=a.steps, warmup_ratio=0.0
        )
        started = time.perf_counter()
        train_loop(
            model,
            [len(ids) for ids, _ in examples],
            settings,
            batch_loss=lambda m, index, device: answer_loss(m, [examples[i] for i in index], pad, device),
            validate=lambda m: 0.0,  # validation is not what we time
        )
        return time.perf_counter() - started

    def trainer() -> float:
        model = _lora(fresh())
        rows = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels} for ids, labels in examples]
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=a.batch_size,
                max_steps=a.steps,
                learning_rate=1e-4,
                report_to="none",
                save_strategy="no",
                logging_strategy="no",
                disable_tqdm=True,
                use_cpu=a.device == "cpu",
                seed=0,
            )
            collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
            run = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
            started = time.perf_counter()
            run.train()
            return time.perf_counter() - started

    best: dict[str, float] = {}
    for _ in range(a.repeats):
        for name, run in (("trainer", trainer), ("ours", ours)):
            seconds = run()
            best[name] = min(best.get(name, seconds), seconds)
    return {
        "steps": a.steps,
        "batch_size": a.batch_size,
        "samples": samples,
        "tokens_per_example": round(float(np.mean([len(ids) for ids, _ in examples])), 1),
        "answer_tokens_per_example": round(float(np.mean([sum(t != -100 for t in y) for _, y in examples])), 1),
        "trainer": {"seconds": round(best["trainer"], 3), "samples_per_s": round(samples / best["trainer"], 2)},
        "ours": {"seconds": round(best["ours"], 3), "samples_per_s": round(samples / best["ours"], 2)},
        "ours_vs_trainer": round(best["trainer"] / best["ours"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps of each training loop")
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs of each; the fastest counts")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--config", type=Path, default=None, help="a model config: random weights (GPU check)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/bench/generate.json")
    a = parser.parse_args(argv)

    import torch
    import transformers

    model, tokenizer, source = load(a)
    data = pairs(a.texts + a.steps * a.train_batch_size)
    texts = [text for text, _ in data[: a.texts]]
    decoded = decoding(model, tokenizer, texts, a)
    print(f"decoding: {decoded['batched_vs_one_at_a_time']}x ({decoded['batched']} vs {decoded['one_at_a_time']})")
    trained = training(
        lambda: load(a)[0].train(),
        tokenizer,
        data[a.texts :],
        argparse.Namespace(**{**vars(a), "batch_size": a.train_batch_size}),
    )
    report = {
        "what": "generation: batched greedy decoding vs one prompt at a time; our SFT loop vs the HF Trainer",
        "command": "python benchmarks/bench_generate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": source,
        "device": a.device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "decoding": decoded,
        "sft": trained,
        "targets": {"batched_vs_one_at_a_time": 4.0, "ours_vs_trainer": 1.3},
    }
    write_report(a.out, report)
    print(f"sft: ours {trained['ours']} vs trainer {trained['trainer']}: {trained['ours_vs_trainer']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
