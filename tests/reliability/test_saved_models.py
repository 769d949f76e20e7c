"""Every model kind saves as an MLflow pyfunc and loads back in a fresh process with pickle deserialisation
refused, predicting what was trained (moved out of tests/unit: it starts a process per kind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import tiny_sentences
from tests.unit.test_models import PROBES, SENTIMENT
from variantlab.config import ModelEntry
from variantlab.core.baseline import fit_linear_head
from variantlab.core.embeddings import embed_texts
from variantlab.io.zoo import load_encoder, resolve


def _fine_tuned_kwargs(
    kind: str, tiny_bert: tuple[Path, str], data: pd.DataFrame, tmp_path: Path
) -> tuple[dict, np.ndarray]:
    from variantlab.core.classifier import EncoderClassifier, add_lora, prune_layers
    from variantlab.core.training import Encoded, LoopSettings, predict_logits, train_classifier
    from variantlab.io.models import encoder_model_kwargs, stage_encoder_artifacts

    directory, sha = tiny_bert
    model = resolve(ModelEntry(source=f"path:{directory}", sha256=sha), tmp_path)
    tokenizer, encoder = load_encoder(model)
    if kind == "pruned":
        encoder = prune_layers(encoder, 1)
    if kind == "lora":
        encoder = add_lora(encoder, rank=4, alpha=8, dropout=0.0, target_modules=["query", "value"])
    classifier = EncoderClassifier(encoder, 3)
    labels = data["label"].map(["negative", "neutral", "positive"].index).to_numpy()
    enc = Encoded(tokenizer(data["text"].tolist())["input_ids"], labels)
    train_classifier(classifier, enc, enc, LoopSettings(epochs=6, batch_size=16, lr=3e-3, patience=6), pad_id=0)
    head = {"weight": classifier.head.weight.detach().numpy(), "bias": classifier.head.bias.detach().numpy()}
    meta = {
        "classes": ["negative", "neutral", "positive"],
        "batch_size": 8,
        "max_length": 16,
        "normalize": False,
        "base_model": model.entry.source,
        "base_sha256": model.entry.sha256,
    }
    artifacts = stage_encoder_artifacts(
        tmp_path / "work", head=head, meta=meta, encoder=classifier.encoder, tokenizer=tokenizer
    )
    if kind == "lora":  # adapters plus a reference to the pinned base, not a merged copy
        assert "adapter" in artifacts and "encoder" not in artifacts
        assert (Path(artifacts["adapter"]) / "adapter_model.safetensors").is_file()
    logits = predict_logits(
        classifier, Encoded(tokenizer(PROBES)["input_ids"], np.zeros(2)), batch_size=8, pad_id=0, device="cpu"
    )
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return encoder_model_kwargs(artifacts, data[["text"]].head(2), SENTIMENT), expected


@pytest.mark.parametrize("kind", ["sklearn", "probe", "full", "pruned", "lora"])
def test_saved_models_load_without_pickle(kind: str, tiny_bert: tuple[Path, str], tmp_path: Path) -> None:
    """Every model kind saves as an MLflow pyfunc and loads back with pickle deserialisation refused."""
    import mlflow

    from variantlab.core.baseline import tfidf_pipeline
    from variantlab.io.models import (
        encoder_model_kwargs,
        plain_vocabulary,
        sklearn_model_kwargs,
        stage_encoder_artifacts,
    )
    from variantlab.variants.tfidf import TfidfVariant

    data = tiny_sentences(90).assign(
        label=lambda f: np.where(f["rating"] > 1, "positive", np.where(f["rating"] < -1, "negative", "neutral"))
    )
    example = data[["text"]].head(2)
    if kind == "sklearn":
        pipe = tfidf_pipeline(TfidfVariant(kind="tfidf-logreg", min_df=1), SENTIMENT, 0)
        pipe.fit(data[["text"]], data["label"])
        expected_sklearn = pipe.predict_proba(pd.DataFrame({"text": PROBES}))
        pipe = plain_vocabulary(pipe)
        vocabulary = pipe.named_steps["features"].transformers_[0][1].vocabulary_
        assert {type(i) for i in vocabulary.values()} == {int}
        assert np.array_equal(pipe.predict_proba(pd.DataFrame({"text": PROBES})), expected_sklearn)
        kwargs = sklearn_model_kwargs(pipe, tmp_path, example, SENTIMENT)
    elif kind == "probe":
        directory, sha = tiny_bert
        model = resolve(ModelEntry(source=f"path:{directory}", sha256=sha), tmp_path)
        tokenizer, encoder = load_encoder(model)
        emb = embed_texts(encoder, tokenizer, data["text"].tolist())
        weight, bias = fit_linear_head(emb, SENTIMENT.y(data), SENTIMENT, C=1.0, max_iter=300, seed=0)
        artifacts = stage_encoder_artifacts(
            tmp_path / "work",
            head={"weight": weight, "bias": bias},
            base=model,
            meta={"classes": list(SENTIMENT.labels), "batch_size": 8, "max_length": 16},
        )
        kwargs = encoder_model_kwargs(artifacts, example, SENTIMENT)
    else:
        kwargs, expected = _fine_tuned_kwargs(kind, tiny_bert, data, tmp_path)
    mlflow.pyfunc.save_model(path=str(tmp_path / "model"), **kwargs)
    script = (
        "import json, mlflow, pandas as pd, sys; m = mlflow.pyfunc.load_model(sys.argv[1]); "
        f"x = pd.DataFrame({{'text': {PROBES!r}}}); "
        "print(json.dumps(m.predict(x, params={'output': 'proba'}).values.tolist())); print(','.join(m.predict(x)))"
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOAD REPORT" not in done.stderr, done.stderr[-2000:]  # no missing or unexpected weights to warn of
    labels = done.stdout.strip().splitlines()[-1].split(",")
    assert len(labels) == 2 and set(labels) <= {"negative", "neutral", "positive"}
    if kind == "sklearn":  # the baseline learns these words; a broken wrapper would not
        assert labels == ["positive", "negative"]
    if kind in ("full", "pruned", "lora"):  # what loads back is exactly what was trained
        loaded = np.array(json.loads(done.stdout.strip().splitlines()[-2]))
        np.testing.assert_allclose(loaded, expected, atol=1e-5)
    assert not list((tmp_path / "model").rglob("*.pkl"))
    assert not list((tmp_path / "model").rglob("*.bin"))
