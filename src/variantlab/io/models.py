"""Saving and logging trained variants as MLflow models that load back without unpickling anything."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from variantlab.core.task import Task
from variantlab.io.files import atomic_dir
from variantlab.io.zoo import WEIGHTS, ResolvedModel

ENCODER_CODE = Path(__file__).with_name("encoder_model.py")
SKLEARN_CODE = Path(__file__).with_name("sklearn_model.py")
PROMPT_CODE = Path(__file__).with_name("prompt_model.py")
DECODER_CODE = Path(__file__).with_name("decoder_model.py")
GENERATOR_CODE = Path(__file__).with_name("generator_model.py")
COPY_CODE = Path(__file__).with_name("copy_model.py")
TORCH_PINS = ("mlflow", "torch", "transformers", "peft", "safetensors", "numpy", "pandas", "tqdm")
# What a frozen base model needs besides its (pinned) weights: its config and every tokenizer's files, whatever
# the tokenizer (WordPiece's vocab.txt, BPE's vocab.json + merges.txt, SentencePiece's *.model, tokenizer.json).
ENCODER_FILES = (
    "config.json",
    "tokenizer*",
    "vocab.*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
)


def _pins(*packages: str) -> list[str]:
    return [f"{name}=={version(name)}" for name in packages]


def class_answers(proba: np.ndarray, classes: list[str], params: dict[str, Any] | None) -> Any:
    """What a classifying pyfunc returns: each text's label, or with ``params={"output": "proba"}`` one
    probability per label (a DataFrame with the labels as columns)."""
    if (params or {}).get("output") == "proba":
        return pd.DataFrame(proba, columns=classes)
    return np.asarray(classes, dtype=object)[proba.argmax(axis=1)]


def signature_for(example: pd.DataFrame, task: Task) -> Any:
    """Input: a ``text`` column; output: one of the task's labels (optional param ``output="proba"`` for one
    probability per label), or a number for a regression task."""
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    output = ColSpec(task.answer_type)
    return ModelSignature(
        inputs=infer_signature(example).inputs,
        outputs=Schema([output]),
        params=ParamSchema([ParamSpec("output", "string", "label")]),
    )


def model_metadata(task: Task) -> dict[str, Any]:
    """Stored in the MLmodel file: what the model answers, readable without loading it."""
    return {"variantlab_task": task.to_json()}


def plain_vocabulary(pipeline: Any) -> Any:
    """Make a fitted TF-IDF pipeline's vocabulary map words to Python ints instead of numpy scalars.

    skops writes every numpy scalar as an array file of its own: a 50,000-word vocabulary took 58.7 s and 56 MB
    to save, against 2.2 s with plain ints. The vectorizer transforms exactly as before.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    for _, vectorizer, _ in pipeline.named_steps["features"].transformers_:
        if isinstance(vectorizer, TfidfVectorizer):
            vectorizer.vocabulary_ = {word: int(index) for word, index in vectorizer.vocabulary_.items()}
    return pipeline


def sklearn_model_kwargs(pipeline: Any, workdir: Path, example: pd.DataFrame, task: Task) -> dict[str, Any]:
    """Write the pipeline as a skops file in ``workdir``; the pyfunc wrapper loads it with a fixed allow-list."""
    import skops.io

    skops.io.dump(plain_vocabulary(pipeline), workdir / "model.skops")
    return {
        "python_model": str(SKLEARN_CODE),
        "artifacts": {"skops": str(workdir / "model.skops")},
        "signature": signature_for(example, task),
        "metadata": model_metadata(task),
        "input_example": example,
        "pip_requirements": _pins("mlflow", "scikit-learn", "skops", "numpy", "scipy", "pandas"),
    }


def stage_encoder_artifacts(
    workdir: Path,
    *,
    head: dict[str, np.ndarray],
    meta: dict[str, Any],
    base: ResolvedModel | None = None,
    encoder: Any = None,
    tokenizer: Any = None,
) -> dict[str, str]:
    """Lay out an encoder variant's artifacts in ``workdir``.

    ``base`` alone: the frozen base model's files are bundled (probe). ``encoder`` + ``tokenizer``: the trained
    encoder is saved with ``save_pretrained`` (safetensors); a PEFT model saves only its adapter.
    """
    from safetensors.numpy import save_file

    workdir.mkdir(parents=True, exist_ok=True)
    artifacts = {"head": str(workdir / "head.safetensors"), "meta": str(workdir / "meta.json")}
    if encoder is not None and hasattr(encoder, "peft_config"):
        encoder.save_pretrained(str(workdir / "adapter"), safe_serialization=True)
        artifacts["adapter"] = str(workdir / "adapter")
    elif encoder is not None:
        encoder.save_pretrained(str(workdir / "encoder"), safe_serialization=True)
        tokenizer.save_pretrained(str(workdir / "encoder"))
        artifacts["encoder"] = str(workdir / "encoder")
    else:
        assert base is not None
        (workdir / "encoder").mkdir()
        weights = [*sorted(base.entry.shards), "model.safetensors.index.json"] if base.entry.shards else [WEIGHTS]
        names = {path.name for pattern in ENCODER_FILES for path in base.directory.glob(pattern)} | set(weights)
        for name in sorted(names):
            if (base.directory / name).is_file():
                shutil.copy2(base.directory / name, workdir / "encoder" / name)
        artifacts["encoder"] = str(workdir / "encoder")
    save_file(head, artifacts["head"])
    Path(artifacts["meta"]).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return artifacts


def encoder_model_kwargs(artifacts: dict[str, str], example: pd.DataFrame, task: Task) -> dict[str, Any]:
    return {
        "python_model": str(ENCODER_CODE),
        "artifacts": artifacts,
        "code_paths": [str(Path(__file__).resolve().parents[1])],
        "signature": signature_for(example, task),
        "metadata": model_metadata(task),
        "input_example": example,
        "pip_requirements": _pins(*TORCH_PINS),
    }


def stage_prompt_artifacts(workdir: Path, meta: dict[str, Any]) -> dict[str, str]:
    """A prompt variant's model is its spec: the base LLM is named by its zoo entry (sha256), not copied."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return {"meta": str(workdir / "meta.json")}


def prompt_model_kwargs(artifacts: dict[str, str], example: pd.DataFrame, task: Task) -> dict[str, Any]:
    return {**encoder_model_kwargs(artifacts, example, task), "python_model": str(PROMPT_CODE)}


def stage_decoder_artifacts(workdir: Path, *, meta: dict[str, Any], model: Any, tokenizer: Any) -> dict[str, str]:
    """A fine-tuned decoder: the whole model (``full``, ``pruned``: a sequence classifier, or a causal LM that
    writes answers), or, for LoRA, only the adapter (a classifier's head with it: ``task_type=SEQ_CLS``), naming
    its base by sha256. The tokenizer (with its pad token) goes with either."""
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts = {"meta": str(workdir / "meta.json"), "tokenizer": str(workdir / "tokenizer")}
    if hasattr(model, "peft_config"):
        model.save_pretrained(str(workdir / "adapter"), safe_serialization=True)
        artifacts["adapter"] = str(workdir / "adapter")
    else:
        model.save_pretrained(str(workdir / "decoder"), safe_serialization=True)
        artifacts["decoder"] = str(workdir / "decoder")
    tokenizer.save_pretrained(str(workdir / "tokenizer"))
    (workdir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return artifacts


def decoder_model_kwargs(artifacts: dict[str, str], example: pd.DataFrame, task: Task) -> dict[str, Any]:
    return {**encoder_model_kwargs(artifacts, example, task), "python_model": str(DECODER_CODE)}


def generator_model_kwargs(artifacts: dict[str, str], example: pd.DataFrame, task: Task) -> dict[str, Any]:
    """An LLM that writes answers: a prompt's spec, or a fine-tuned decoder (``stage_decoder_artifacts``)."""
    return {**encoder_model_kwargs(artifacts, example, task), "python_model": str(GENERATOR_CODE)}


def copy_model_kwargs(example: pd.DataFrame, task: Task) -> dict[str, Any]:
    return {
        "python_model": str(COPY_CODE),
        "signature": signature_for(example, task),
        "metadata": model_metadata(task),
        "input_example": example,
        "pip_requirements": _pins("mlflow", "numpy", "pandas"),
    }


# Written by MLflow into every download of a registered version (its name and number), not part of the model.
DIGEST_IGNORE = frozenset({"registered_model_meta"})


def model_digest(model_uri: str) -> str:
    """sha256 over a logged model's files, the same for the logged model and each registered version of it."""
    import tempfile

    import mlflow

    from variantlab.io.files import tree_sha256

    with tempfile.TemporaryDirectory(prefix="variantlab-digest-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        return tree_sha256(local, DIGEST_IGNORE)


def load_pyfunc(uri: str) -> Any:
    """Load any variant's model exactly as a user would, with pickle deserialisation refused."""
    import os

    import mlflow

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    return mlflow.pyfunc.load_model(uri)


class _SavedModel:
    """A flavor for ``mlflow.models.Model.log`` whose ``save_model`` lays out a model already saved on disk.

    ``Model.log`` creates the logged model, saves it into a temporary directory through its flavor and uploads
    that directory. Through this flavor the files are hard links to the saved model (copies across devices), so
    a variant is serialised once: for the DVC output and for MLflow alike (issue 19: skops took 2.2 s per save
    of a 50,000-word TF-IDF pipeline, ``save_pretrained`` about 1 s per fine-tuned encoder).
    """

    # what MLflow writes when it logs (the run, the logged model); the rest of the MLmodel comes from the saved one
    IDENTITY = frozenset({"artifact_path", "run_id", "model_uuid", "model_id", "utc_time_created", "mlflow_version"})

    def __init__(self, source: Path) -> None:
        self.source = source

    def save_model(self, path: str, mlflow_model: Any, **_: Any) -> None:
        from mlflow.models import Model

        shutil.copytree(self.source, path, copy_function=_link_or_copy)
        saved = Model.load(str(self.source / "MLmodel"))
        for key, value in saved.__dict__.items():  # signature, metadata, example, size: kept as private fields
            if key not in self.IDENTITY:
                setattr(mlflow_model, key, value)
        (Path(path) / "MLmodel").unlink()  # a link to the saved file: write a new one, not through the link
        mlflow_model.save(str(Path(path) / "MLmodel"))


def _link_or_copy(src: str, dst: str) -> None:
    import os

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def save_and_log(
    kwargs: dict[str, Any], local_dir: Path, *, name: str = "model", params: dict[str, str] | None = None
) -> str:
    """Save the pyfunc model to ``local_dir`` (a DVC out) and log the same files as the active run's model.

    ``name`` is the logged model's name (the variant: the experiment's Models tab lists one row per variant) and
    ``params`` are shown beside its metrics there. The model is serialised once, into ``local_dir``; MLflow gets
    those files (see :class:`_SavedModel`). MLflow's serving-input check is left out: it loads the model once
    more only to warn, and the evaluate stage loads it and predicts the whole test set, failing loudly.
    Returns the logged model's URI (``models:/<model id>``).
    """
    import mlflow
    from mlflow.models import Model

    with atomic_dir(local_dir) as staging:
        shutil.rmtree(staging)
        mlflow.pyfunc.save_model(path=str(staging), **kwargs)
        flavor = "pyfunc.ModelFromCode" if isinstance(kwargs.get("python_model"), str) else "pyfunc"
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=_SavedModel(staging),
            params=params,
            flavor_name=flavor,
            validate_serving_input=False,
        )
    return str(info.model_uri)


def model_id(model_uri: str) -> str | None:
    """The logged model's id in ``models:/<id>`` (None for any other URI)."""
    rest = model_uri.removeprefix("models:/")
    return rest if rest != model_uri and rest.startswith("m-") and "/" not in rest else None
