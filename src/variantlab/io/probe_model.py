"""MLflow models-from-code definition of the probe: a frozen encoder plus a linear head, no pickles.

MLflow copies this file into the logged model and executes it on load; the encoder weights and the head
are safetensors artifacts next to it.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class EncoderProbe(PythonModel):
    """``predict(DataFrame[text]) -> labels``; ``params={"output": "proba"}`` returns class probabilities."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch
        from safetensors.numpy import load_file
        from transformers import AutoModel, AutoTokenizer

        encoder_dir = context.artifacts["encoder"]
        self.tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
        self.encoder = AutoModel.from_pretrained(encoder_dir, use_safetensors=True)
        self.encoder.to("cuda" if torch.cuda.is_available() else "cpu")
        head = load_file(context.artifacts["head"])
        self.weight, self.bias = head["weight"], head["bias"]
        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            self.meta = json.load(fh)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        from variantlab.core.embeddings import embed_texts, softmax_head

        embeddings = embed_texts(
            self.encoder,
            self.tokenizer,
            texts,
            batch_size=self.meta["batch_size"],
            max_length=self.meta["max_length"],
            progress="predict",
        )
        return softmax_head(embeddings, self.weight, self.bias)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        texts = [str(t) for t in model_input["text"]]
        proba = self.predict_proba(texts)
        classes = self.meta["classes"]
        if (params or {}).get("output") == "proba":
            return pd.DataFrame(proba, columns=classes)
        return np.asarray(classes, dtype=object)[proba.argmax(axis=1)]


mlflow.models.set_model(EncoderProbe())
