"""MLflow models-from-code definition of an open LLM that writes answers (``prompt``, ``lora``, ``full`` on a
generation task). No pickles.

Artifacts: ``meta.json`` (the generation spec, the base model's zoo entry); a LoRA variant adds ``adapter/``
and ``tokenizer/``, a fully fine-tuned one ``decoder/`` (safetensors) and ``tokenizer/``; a prompt variant has
only the spec, its base resolved (and hash-checked) through the zoo. Answers come from
:class:`variantlab.core.generation.Generator`, as in the train and evaluate stages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class TextGeneratorModel(PythonModel):
    """``predict(DataFrame[text]) -> answers`` (one string per text)."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch

        from variantlab.config import ModelEntry
        from variantlab.core.decoder import load_causal_lm, load_tokenizer
        from variantlab.core.generation import GenerationSpec, Generator
        from variantlab.io.zoo import resolve

        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            self.meta = json.load(fh)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # a full fine-tune is its own decoder; a prompt or an adapter runs on the pinned base (hash-checked)
        trained = context.artifacts.get("decoder")
        weights = trained or resolve(ModelEntry(**self.meta["base"]), Path.cwd()).directory
        tokenizer = load_tokenizer(context.artifacts.get("tokenizer") or weights)
        model = load_causal_lm(weights, device)
        if context.artifacts.get("adapter"):  # LoRA: merged into the pinned base once, at load
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, context.artifacts["adapter"]).merge_and_unload().eval()
        spec = GenerationSpec.from_json(self.meta["spec"])
        self.generator = Generator(model, tokenizer, spec, batch_size=self.meta["batch_size"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        texts = [str(t) for t in model_input["text"]]
        answers = self.generator.generate(texts, progress="generate" if len(texts) > 64 else None)
        return np.asarray(answers, dtype=object)


mlflow.models.set_model(TextGeneratorModel())
