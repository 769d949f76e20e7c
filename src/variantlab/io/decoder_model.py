"""MLflow models-from-code definition of a fine-tuned decoder LLM (full, pruned, LoRA). No pickles.

Artifacts: ``meta.json``; ``tokenizer/`` (with its pad token); and either ``decoder/`` (the whole
sequence-classification model, safetensors) or ``adapter/`` (LoRA weights and the head), whose base is resolved
through the zoo by the sha256 it names and checked before it loads. Texts are batched by length and
right-padded with the pad id in the model's config, so the head reads each text's last real token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class DecoderClassifierModel(PythonModel):
    """``predict(DataFrame[text]) -> labels`` (``params={"output": "proba"}``: probabilities), or numbers."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch

        from variantlab.config import ModelEntry
        from variantlab.core.decoder import DecoderClassifier, load_sequence_classifier, load_tokenizer
        from variantlab.core.tasks import task_kind
        from variantlab.io.zoo import resolve

        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            self.meta = json.load(fh)
        self.tokenizer = load_tokenizer(context.artifacts["tokenizer"])
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        adapter = context.artifacts.get("adapter")
        # LoRA: the pinned base (hash-checked by the zoo) under this model's adapter; else the whole model
        directory = resolve(ModelEntry(**self.meta["base"]), Path.cwd()).directory if adapter else None
        network = load_sequence_classifier(
            directory or context.artifacts["decoder"],
            num_labels=len(self.meta.get("classes") or [None]),  # a regression's head has one output
            problem_type=task_kind(self.meta["task"]).problem_type,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if adapter:
            from peft import PeftModel

            network = PeftModel.from_pretrained(network, adapter)
        self.model = DecoderClassifier(network).to(self.device).eval()

    def _logits(self, texts: list[str]) -> np.ndarray:
        from variantlab.core.training import Encoded, predict_logits

        ids = self.tokenizer(texts, truncation=True, max_length=self.meta["max_length"])["input_ids"]
        data = Encoded(ids, np.zeros(len(ids)))
        return predict_logits(
            self.model, data, batch_size=self.meta["batch_size"], pad_id=self.tokenizer.pad_token_id, device=self.device
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        from variantlab.core.embeddings import softmax
        from variantlab.io.models import class_answers

        texts = [str(t) for t in model_input["text"]]
        logits = self._logits(texts)
        if self.meta.get("task") == "regression":
            return (logits[:, 0] * self.meta["target_std"] + self.meta["target_mean"]).astype(np.float64)
        return class_answers(softmax(logits.astype(np.float64)), self.meta["classes"], params)


mlflow.models.set_model(DecoderClassifierModel())
