"""examples/text-to-text on the real SmolLM2-135M-Instruct, made smaller so it fits `make test-slow` (140 of its
1,000 sentences, no prompted variants, LoRA on 64 pairs): `variantlab run` end to end (the gate included), then
`serve-model` answers text from the LoRA model and takes corrected answers, and the feedback is exported as data
in the task's own columns."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import DELETE, REPO, copy_project, deep_update, model_server, run

pytestmark = pytest.mark.slow

# Prompted generation runs on tiny models in tests/stages/test_generation.py; this one is about the real model.
SMALLER = {
    "split": {"val_subsample": 20},
    "variants": {
        "smollm2-zero-shot": DELETE,
        "smollm2-few-shot": DELETE,
        "smollm2-lora": {"train_rows": 64, "epochs": 1},
    },
}


def test_the_text_to_text_example_runs_end_to_end_on_the_real_smollm2(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "examples/text-to-text"))
    from make_dates import date_rows

    params = yaml.safe_load((REPO / "examples/text-to-text/params.yaml").read_text())
    project = copy_project(tmp_path / "p")
    (project / "params.yaml").write_text(yaml.safe_dump(deep_update(params, SMALLER), sort_keys=False))
    pd.DataFrame(date_rows(140)).to_csv(project / "data/external/dates.csv", index=False)
    done = run(project, "-m", "variantlab.cli", "run", timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]

    board = pd.read_csv(project / "reports/leaderboard.csv").set_index("variant")
    assert set(board.index) == {"copy", "nearest", "smollm2-lora"}
    assert board.loc["copy", "exact_match"] == 0  # a sentence is never its ISO date
    assert board.loc["smollm2-lora", "model_size_mb"] < 20  # the adapter only, not the 540 MB base
    lora = json.loads((project / "metrics/eval/smollm2-lora.json").read_text())
    assert lora["empty_outputs"] < lora["n_test"] / 2 and 0.5 < lora["length_ratio"] < 2, lora
    decision = json.loads((project / "reports/promotion.json").read_text())
    assert decision["reason"] and (decision["comparison"] is None or decision["comparison"]["test"] == "wilcoxon")

    # `variantlab predict` on a generation model: tests/stages/test_generation.py (a tiny model, the same code)
    texts = pd.DataFrame({"text": ["The parcel arrived on March 5, 2024.", "Invoice 77 is due 12/01/2025."]})
    with model_server(project, "models/smollm2-lora", log=tmp_path / "serve.log") as (client, _):
        answered = client.post("/invocations", json={"inputs": {"text": texts["text"].tolist()}})
        assert answered.status_code == 200, answered.text
        body = answered.json()
        assert all(isinstance(p, str) for p in body["predictions"])
        ids = body["prediction_ids"]
        for pid, right in zip(ids, ["2024-03-05", "2025-12-01"], strict=True):
            accepted = client.post("/feedback", json={"prediction_id": pid, "answer": right})
            assert accepted.status_code == 201, accepted.text
        too_long = client.post("/feedback", json={"prediction_id": ids[0], "answer": "2024-03-05 at noon"})
        assert too_long.status_code == 422, too_long.text

    from pipelines.feedback import export_waiting

    exported = export_waiting(str(project), True, logging.getLogger("test"))
    frame = pd.read_csv(exported["path"], dtype=str)
    assert list(frame.columns) == ["id", "text", "target"] and set(frame["target"]) == {"2024-03-05", "2025-12-01"}
