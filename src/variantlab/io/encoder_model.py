"""MLflow models-from-code definition of every encoder variant (probe, full, pruned, LoRA). No pickles.

MLflow copies this file into the logged model and executes it on load. Artifacts next to it:
``encoder/`` (tokenizer + safetensors weights) for the probe and fine-tuned encoders, or, for LoRA,
``adapter/`` (safetensors) plus a reference to the pinned base model in ``meta.json``; and ``head.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class EncoderClassifierModel(PythonModel):
    """``predict(DataFrame[text]) -> labels``; ``params={"output": "proba"}`` returns one probability per label.
    A regression variant returns numbers (its head has one output, on the standardised target)."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch
        from safetensors.numpy import load_file

        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            self.meta = json.load(fh)
        self.tokenizer, self.encoder = self._load_encoder(context.artifacts)
        self.encoder.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        head = load_file(context.artifacts["head"])
        self.weight, self.bias = head["weight"], head["bias"]

    def _load_encoder(self, artifacts: dict[str, str]) -> tuple[Any, Any]:
        from transformers import AutoTokenizer

        from variantlab.io.zoo import load_saved_encoder

        if "encoder" in artifacts:
            path = artifacts["encoder"]
            return AutoTokenizer.from_pretrained(path), load_saved_encoder(path)
        # LoRA: the pinned base (hash-checked by the zoo) plus this model's adapter, never a merged copy.
        from peft import PeftModel

        from variantlab.config import ModelEntry
        from variantlab.io.zoo import load_encoder, resolve

        entry = self.meta.get("base") or {"source": self.meta["base_model"], "sha256": self.meta["base_sha256"]}
        base = resolve(ModelEntry(**entry), Path.cwd())
        tokenizer, encoder = load_encoder(base)
        return tokenizer, PeftModel.from_pretrained(encoder, artifacts["adapter"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        from variantlab.core.embeddings import embed_texts

        return embed_texts(
            self.encoder,
            self.tokenizer,
            texts,
            batch_size=self.meta["batch_size"],
            max_length=self.meta["max_length"],
            normalize=self.meta.get("normalize", True),
            progress="predict",
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        from variantlab.core.embeddings import softmax_head

        return softmax_head(self._embed(texts), self.weight, self.bias)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        texts = [str(t) for t in model_input["text"]]
        if self.meta.get("task") == "regression":
            raw = (self._embed(texts) @ self.weight.T + self.bias)[:, 0]
            return (raw * self.meta["target_std"] + self.meta["target_mean"]).astype(np.float64)
        proba = self.predict_proba(texts)
        from variantlab.io.models import class_answers

        return class_answers(proba, self.meta["classes"], params)


mlflow.models.set_model(EncoderClassifierModel())
