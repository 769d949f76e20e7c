"""MLflow models-from-code definition of a ``prompt`` variant: an open LLM scoring each label's words. No pickles.

Artifacts: ``meta.json`` (the prompt spec, the labels, the base model's zoo entry). The base is resolved
through the zoo (hash-checked; a GGUF from its converted cache) when the model loads; scores come from
:class:`variantlab.core.prompting.PromptScorer`, as in the train stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class PromptClassifierModel(PythonModel):
    """``predict(DataFrame[text]) -> labels``; ``params={"output": "proba"}``: one probability per label."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch

        from variantlab.config import ModelEntry
        from variantlab.core.decoder import load_causal_lm, load_tokenizer
        from variantlab.core.prompting import PromptScorer, PromptSpec
        from variantlab.io.zoo import resolve

        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            self.meta = json.load(fh)
        base = resolve(ModelEntry(**self.meta["base"]), Path.cwd())
        tokenizer = load_tokenizer(base.directory, source=base.entry.source)
        model = load_causal_lm(base.directory, "cuda" if torch.cuda.is_available() else "cpu")
        spec = PromptSpec.from_json(self.meta["spec"])
        self.scorer = PromptScorer(model, tokenizer, spec, batch_size=self.meta["batch_size"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        texts = [str(t) for t in model_input["text"]]
        proba = self.scorer.proba(texts, progress="predict" if len(texts) > 256 else None)
        from variantlab.io.models import class_answers

        return class_answers(proba, self.meta["classes"], params)


mlflow.models.set_model(PromptClassifierModel())
