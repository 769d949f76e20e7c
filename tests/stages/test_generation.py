"""Generation tasks (text to text) through the stages, on a tiny random Llama built here: the copy and nearest
baselines, a prompted LLM and a LoRA-fine-tuned one, scored on what each generated; the gate's paired test on
per-example scores; and the bad inputs a user can hit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import make_tiny_decoder, run_stages, tiny_project

GENERATION_TASK = {"kind": "generation", "max_target_chars": 40}
TEXT_VARIANTS: dict[str, Any] = {
    "copy": {"kind": "copy"},
    "nearest": {"kind": "nearest"},
    "llm-few-shot": {"kind": "prompt", "model": "llm", "shots": 2, "max_new_tokens": 6, "chat_template": False},
    "llm-lora": {
        "kind": "lora",
        "model": "llm",
        "max_length": 16,
        "batch_size": 16,
        "lr": 1e-2,
        "epochs": 1,
        "max_new_tokens": 6,
        "lora": {"rank": 4, "alpha": 8},
    },
}


def digit_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """``1 2 3`` -> ``3 2 1``: a deterministic mapping (``n`` different triples), in two domains."""
    rng = np.random.default_rng(seed)
    rows = []
    for number in rng.choice(1000, size=n, replace=False):
        digits = list(f"{number:03d}")
        rows.append(
            {
                "text": " ".join(digits),
                "target": " ".join(reversed(digits)),
                "domain": "odd" if int(digits[0]) % 2 else "even",
            }
        )
    return pd.DataFrame(rows)


def _project(tmp_path: Path, variants: dict[str, Any], data: pd.DataFrame | None = None, **extra: Any) -> Path:
    """A tiny project whose task is generation (params.yaml's task, models and variants replaced)."""
    import yaml

    sha = make_tiny_decoder(tmp_path / "llm")
    project = tiny_project(tmp_path / "p", data=digit_pairs(160) if data is None else data)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params |= {
        "task": GENERATION_TASK,
        "models": {"llm": {"source": f"path:{tmp_path / 'llm'}", "sha256": sha}},
        "variants": variants,
        "feedback": {**params.get("feedback", {}), "embedding_model": "llm"},
    }
    params["promotion"] = {**params["promotion"], "baseline": None, "floor": None}
    for key, value in extra.items():
        params[key] = {**params.get(key, {}), **value}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def test_generation_variants_are_scored_on_what_they_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process_stages: None
) -> None:
    from variantlab.io.files import read_json
    from variantlab.io.models import load_pyfunc

    project = _project(tmp_path, TEXT_VARIANTS)
    monkeypatch.chdir(project)
    run_stages(project, list(TEXT_VARIANTS))
    board = pd.read_csv(project / "reports/leaderboard.csv").set_index("variant")
    assert set(board.index) == set(TEXT_VARIANTS)
    # copy writes the input: right on palindromes only, and as long as the target
    copy = read_json(project / "metrics/eval/copy.json")
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    assert copy["exact_match"] == pytest.approx((test["text"] == test["label"]).mean(), abs=1e-6)
    assert copy["length_ratio"] == 1.0
    assert set(copy["per_domain"]) == {"even", "odd"}
    for name in TEXT_VARIANTS:
        scored = read_json(project / f"metrics/eval/{name}.json")
        assert 0 <= scored["chrf"] <= 100 and 0 <= scored["rouge_l"] <= 1
        predictions = pd.read_parquet(project / f"reports/predictions/{name}.parquet")
        assert {"label", "predicted", "chrf", "exact_match"} <= set(predictions.columns)
    few = read_json(project / "metrics/train/llm-few-shot.json")
    assert few["n_examples"] == 2 and few["trainable_params"] == 0
    lora = read_json(project / "metrics/train/llm-lora.json")
    assert 0 < lora["trainable_params"] < lora["total_params"] / 5
    assert (project / "models/llm-lora/artifacts/adapter").is_dir()
    assert not list((project / "models/llm-lora").rglob("model.safetensors"))

    # the saved models answer text, as a user loads them
    for name in TEXT_VARIANTS:
        answers = load_pyfunc(str(project / "models" / name)).predict(pd.DataFrame({"text": ["1 2 3"]}))
        assert len(answers) == 1 and isinstance(answers[0], str), name
    nearest = load_pyfunc(str(project / "models/nearest")).predict(pd.DataFrame({"text": ["9 9 9"]}))
    assert nearest[0] in set(digit_pairs(160)["target"])

    # `variantlab predict` writes the answers in `predicted`, as text (a "007"-like answer stays a string)
    from variantlab.cli import main

    pd.DataFrame({"text": ["1 2 3", "0 0 7"]}).to_csv(project / "in.csv", index=False)
    assert main(["predict", "models/copy", "in.csv", "-o", "out.csv"]) == 0
    written = pd.read_csv(project / "out.csv", dtype=str)
    assert written["predicted"].tolist() == ["1 2 3", "0 0 7"]
    assert main(["predict", "models/llm-few-shot", "in.csv", "-o", "few.csv"]) == 0
    assert len(pd.read_csv(project / "few.csv", dtype=str, keep_default_na=False)["predicted"]) == 2


def test_a_tiny_decoder_fine_tuned_on_a_mapping_learns_it_and_where_its_answers_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process_stages: None
) -> None:
    """Reversing three digits, from random weights: only a loss on the answer's tokens and EOS teaches both
    the mapping (exact match far above copying the input) and the answer's end (lengths match the targets')."""
    from variantlab.io.files import read_json

    variants = {
        "copy": {"kind": "copy"},
        "sft": {
            "kind": "full",
            "model": "llm",
            "template": "{text} =",
            "chat_template": False,
            "max_new_tokens": 10,
            "epochs": 15,
            "batch_size": 32,
            "lr": 3e-3,
            "weight_decay": 0.0,
            "patience": 15,
        },
    }
    project = _project(
        tmp_path,
        variants,
        data=digit_pairs(800),
        # the gate's statistics are under test, not the guardrail: ten decoding steps take about 100 ms on a
        # loaded 2-core CI machine, on the edge of the default 100 ms
        promotion={"metric": "exact_match", "baseline": "copy", "max_latency_ms": 2000},
    )
    monkeypatch.chdir(project)
    run_stages(project, list(variants), promote=True)
    copy, sft = read_json(project / "metrics/eval/copy.json"), read_json(project / "metrics/eval/sft.json")
    assert copy["exact_match"] < 0.2
    assert sft["exact_match"] > copy["exact_match"] + 0.5, sft
    assert 0.9 <= sft["length_ratio"] <= 1.1 and sft["empty_outputs"] == 0, sft
    predictions = pd.read_parquet(project / "reports/predictions/sft.parquet")
    assert (predictions["predicted"].str.len() <= 5).mean() > 0.9  # it stops: no run-on past the three digits

    # the gate: a paired bootstrap of the mean exact match and a signed-rank test, against the copy baseline
    report = read_json(project / "reports/promotion.json")
    assert report["promote"] is True and report["against"] == "baseline", report["reason"]
    comparison = report["comparison"]
    assert comparison["test"] == "wilcoxon" and comparison["ci_low"] > 0 and comparison["p_value"] < 0.01
    assert comparison["delta"] == pytest.approx(sft["exact_match"] - copy["exact_match"], abs=1e-6)


def test_fine_tuning_an_encoder_on_a_generation_task_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process_stages: None
) -> None:
    import yaml

    from tests.helpers import make_tiny_bert
    from variantlab.config import load_params
    from variantlab.errors import ConfigError
    from variantlab.stages import ingest, prepare, train, validate
    from variantlab.stages.context import StageContext

    project = _project(tmp_path, {"copy": {"kind": "copy"}})
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["bert"] = {"source": f"path:{tmp_path / 'bert'}", "sha256": make_tiny_bert(tmp_path / "bert")}
    params["variants"]["bert-lora"] = {"kind": "lora", "model": "bert", "lora": {"target_modules": ["query"]}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(project)
    loaded = load_params(project / "params.yaml")
    for stage in (ingest, validate, prepare):
        assert stage.run(StageContext(project, loaded)) == 0
    with pytest.raises(ConfigError, match="model 'bert' is an encoder and cannot write answers"):
        train.run(StageContext(project, loaded, "bert-lora"))
    assert not (project / "models/bert-lora").exists() and not (project / "metrics/train/bert-lora.json").exists()
