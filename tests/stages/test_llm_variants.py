"""Decoder LLM variants through the stages, on a tiny random Llama built here: prompted (zero- and few-shot,
calibrated), LoRA-adapted (only the adapter and head saved, the base named by sha256) and fully fine-tuned, beside
the TF-IDF baseline on one split, with the cost columns in the leaderboard; and the bad inputs a user can hit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers import DELETE, make_tiny_decoder, run_stages, tiny_project, tiny_sentences

LLM_VARIANTS: dict[str, Any] = {
    "llm-zero-shot": {"kind": "prompt", "model": "llm", "calibrate": True, "words": {"neutral": "plain"}},
    "llm-few-shot": {"kind": "prompt", "model": "llm", "shots": 1, "chat_template": False},
    "llm-lora": {
        "kind": "lora",
        "model": "llm",
        "max_length": 16,
        "batch_size": 16,
        "lr": 1e-2,
        "epochs": 2,
        "lora": {"rank": 4, "alpha": 8},
    },
    "llm-full": {"kind": "full", "model": "llm", "max_length": 16, "batch_size": 16, "lr": 1e-3, "epochs": 1},
}


def _project(tmp_path: Path, variants: dict[str, Any], **extra: Any) -> tuple[Path, str]:
    sha = make_tiny_decoder(tmp_path / "llm")
    update = {"models": {"llm": {"source": f"path:{tmp_path / 'llm'}", "sha256": sha}}, "variants": variants}
    update["promotion"] = {"baseline": None}
    project = tiny_project(tmp_path / "p", data=tiny_sentences(240), extra={**update, **extra})
    return project, sha


def test_prompted_and_adapted_llms_run_beside_the_baseline_with_their_costs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process_stages: None
) -> None:
    from variantlab.io.files import read_json
    from variantlab.io.models import load_pyfunc

    project, _ = _project(tmp_path, LLM_VARIANTS)
    monkeypatch.chdir(project)
    run_stages(project, ["tfidf-logreg", *LLM_VARIANTS])
    board = pd.read_csv(project / "reports/leaderboard.csv").set_index("variant")
    assert set(board.index) == {"tfidf-logreg", *LLM_VARIANTS}
    for name in LLM_VARIANTS:
        assert board.loc[name, "predict_per_s"] > 0 and board.loc[name, "total_params"] > 0
    assert board.loc["llm-zero-shot", "trainable_params"] == 0
    assert board.loc["llm-zero-shot", "prompt_tokens_per_text"] > 10
    # few-shot prompts are longer, but the examples are a prefix computed once: fewer tokens computed per text
    few = read_json(project / "metrics/train/llm-few-shot.json")
    assert few["n_examples"] == 3 and few["tokens_computed_per_text"] < few["prompt_tokens_per_text"]
    lora = read_json(project / "metrics/train/llm-lora.json")
    assert 0 < lora["trainable_params"] < lora["total_params"] / 5 and lora["architecture"] == "decoder"

    # the LoRA model is its adapter and head, naming the base by sha256; the full fine-tune is the whole model
    assert (project / "models/llm-lora/artifacts/adapter").is_dir()
    assert not list((project / "models/llm-lora").rglob("model.safetensors"))
    assert list((project / "models/llm-full").rglob("model.safetensors"))

    texts = pd.DataFrame({"text": ["the movie was great", "the day was plain one two", "the film was awful"]})
    for name in LLM_VARIANTS:  # the saved model answers as evaluation scored it
        model = load_pyfunc(str(project / "models" / name))
        proba = model.predict(texts, params={"output": "proba"})
        assert list(proba.columns) == ["negative", "neutral", "positive"]
        assert proba.to_numpy().sum(axis=1) == pytest.approx([1, 1, 1])
        predictions = pd.read_parquet(project / "reports/predictions" / f"{name}.parquet")
        test = pd.read_parquet(project / "data/prepared/test.parquet")
        again = model.predict(test[["text"]])
        assert list(again) == list(predictions["predicted"]), name

    # an adapter loads onto its pinned base only: a changed base is refused
    shutil.copytree(tmp_path / "llm", tmp_path / "llm-original")
    weights = tmp_path / "llm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    from variantlab.errors import IntegrityError

    with pytest.raises(IntegrityError, match="does not match the pinned"):
        load_pyfunc(str(project / "models/llm-lora"))


def test_a_regression_head_on_a_decoder_and_prompt_refused_on_regression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process_stages: None
) -> None:
    from variantlab.config import load_params
    from variantlab.errors import ConfigError
    from variantlab.io.models import load_pyfunc
    from variantlab.stages import train
    from variantlab.stages.context import StageContext

    regression = {
        "labels": DELETE,
        "label_rule": DELETE,
        "positive_label": DELETE,
        "behaviour": {"polarity": None},
        "kind": "regression",
        "target_column": "rating",
        "value_range": [-4.0, 4.0],
    }
    variants = {"llm-lora": LLM_VARIANTS["llm-lora"], "llm-zero-shot": {"kind": "prompt", "model": "llm"}}
    project, _ = _project(tmp_path, variants, task=regression, promotion={"baseline": None, "metric": "mae"})
    monkeypatch.chdir(project)
    run_stages(project, ["llm-lora"], leaderboard=False)
    answers = load_pyfunc(str(project / "models/llm-lora")).predict(pd.DataFrame({"text": ["the film was awful"]}))
    assert answers.dtype.kind == "f"
    params = load_params(project / "params.yaml")
    with pytest.raises(ConfigError, match="a prompt variant scores labels, and this task is regression"):
        train.run(StageContext(project, params, "llm-zero-shot"))
    assert not (project / "models/llm-zero-shot").exists()
    assert not (project / "metrics/train/llm-zero-shot.json").exists()
