"""The bad inputs of LLM variants, on tiny random decoders: each is one clear line, exit 2, and nothing written or
registered. The project is prepared once; each case adds one variant (and its model) and runs its train stage as
`dvc repro` would (`python -m variantlab.stage train <variant>`); a bad template fails when params.yaml is read."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import make_tiny_decoder, run, tiny_project, tiny_sentences

PROMPT = {"kind": "prompt", "model": "llm"}
LORA = {"kind": "lora", "model": "llm", "max_length": 16, "batch_size": 8}


def _decoder(**options: Any) -> Callable[[Path], dict[str, Any]]:
    def build(folder: Path) -> dict[str, Any]:
        return {"source": f"path:{folder}", "sha256": make_tiny_decoder(folder, **options)}

    return build


def _wrong_pin(folder: Path) -> dict[str, Any]:
    make_tiny_decoder(folder)
    return {"source": f"path:{folder}", "sha256": "0" * 64}


def _gguf_wrong_pin(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    (folder / "model.Q4_1.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    return {"source": f"path:{folder}", "file": "model.Q4_1.gguf", "sha256": "1" * 64}


# name: (model builder, variant, what the last line says). A prompt variant on a regression task:
# tests/stages/test_llm_variants.py (the task is resolved by prepare, which this prepared project has run).
CASES: dict[str, tuple[Callable[[Path], dict[str, Any]], dict[str, Any], str]] = {
    "label-with-no-tokens": (_decoder(), {**PROMPT, "words": {"neutral": " "}}, "tokenizes to nothing"),
    "lora-targets-not-in-the-model": (
        _decoder(architecture="gpt2"),
        {**LORA, "lora": {"target_modules": ["q_proj", "v_proj"]}},
        "LoRA target(s) q_proj, v_proj are not modules of this gpt2: its linear layers are c_attn",
    ),
    "safetensors-sha256-differs": (_wrong_pin, PROMPT, "does not match the pinned 0000000000"),
    "gguf-sha256-differs": (_gguf_wrong_pin, PROMPT, "does not match the pinned 1111111111"),
    "chat-template-asked-for-but-missing": (
        _decoder(chat=False),
        {**PROMPT, "chat_template": True},
        "ask for the model's chat template (chat_template: true) but its tokenizer has none",
    ),
    "no-pad-and-no-eos-token": (_decoder(eos=False), LORA, "has neither a pad nor an eos token"),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tiny_project(tmp_path_factory.mktemp("llm-bad") / "p", data=tiny_sentences(150))
    done = run(project, "-m", "variantlab.cli", "run")
    assert done.returncode == 0, done.stderr[-2000:]
    return project


def _registered(project: Path) -> int:
    with sqlite3.connect(project / "mlflow.db") as db:
        return int(db.execute("select count(*) from registered_models").fetchone()[0])


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_llm_input_is_one_clear_line_and_changes_nothing(name: str, prepared: Path) -> None:
    build, variant, expected = CASES[name]
    registered = _registered(prepared)
    params = yaml.safe_load((prepared / "params.yaml").read_text())
    original = yaml.safe_dump(params, sort_keys=False)
    folder = prepared.parent / f"model-{name}"
    params["models"][name] = build(folder)
    params["variants"][name] = {**variant, "model": name}
    (prepared / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        done = run(prepared, "-m", "variantlab.stage", "train", name)
    finally:
        (prepared / "params.yaml").write_text(original)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train: error: ") and expected in last, f"{name}: {last[:500]}"
    assert len(last) < 400, f"{name}: the error line is {len(last)} characters long"
    assert not (prepared / "models" / name).exists() and not (prepared / "metrics/train" / f"{name}.json").exists()
    assert _registered(prepared) == registered


def test_a_template_without_its_text_placeholder_stops_before_any_stage(tmp_path: Path) -> None:
    folder = tmp_path / "llm"
    sha = make_tiny_decoder(folder)
    extra = {
        "models": {"llm": {"source": f"path:{folder}", "sha256": sha}},
        "variants": {"llm": {**PROMPT, "template": "Classify the sentiment."}},
    }
    project = tiny_project(tmp_path / "p", extra=extra)
    done = run(project, "-m", "variantlab.cli", "run")
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("variantlab run: error: ") and "the template needs a {text} placeholder" in last, last
    assert not (project / "data/raw").exists() and not (project / "models").exists()
    assert not (project / "mlflow.db").exists() or _registered(project) == 0
