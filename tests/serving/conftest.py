"""A registry with real models for the model server's tests: two versions of a three-class TF-IDF classifier (a
task that is not sentiment) and one regression model with a declared target range, in a SQLite MLflow store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import tiny_sentences
from variantlab.core.task import Classification, Generation, Regression, Task

WEATHER = Classification(labels=("cold", "hot", "mild"))
SCORE = Regression(value_range=(-4.0, 4.0), value_column="score")
WRITER = Generation(max_target_chars=40)
CLASSIFIER = "weather-model"
REGRESSOR = "score-model"
GENERATOR = "writer-model"  # a generation task's copy baseline: answers text


@dataclass(frozen=True)
class Registry:
    uri: str
    root: Path
    texts: list[str]


def _log(pipeline: object, task: Task, workdir: Path, name: str) -> str:
    import mlflow

    from variantlab.io.models import sklearn_model_kwargs

    workdir.mkdir(parents=True)
    example = pd.DataFrame({"text": ["the soup was warm one two"]})
    kwargs = sklearn_model_kwargs(pipeline, workdir, example, task)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", **kwargs)
    return str(mlflow.register_model(info.model_uri, name).version)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    import mlflow

    from variantlab.core.baseline import tfidf_pipeline
    from variantlab.variants.tfidf import TfidfVariant

    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    # artifacts under the test's folder, not ./mlruns of whatever directory pytest runs in
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("serving-tests", (root / "artifacts").as_uri()))
    data = tiny_sentences(150)
    labels = np.where(data["rating"] > 1, "hot", np.where(data["rating"] < -1, "cold", "mild"))
    for i, c in enumerate((0.05, 20.0), start=1):  # two versions that answer differently
        pipe = tfidf_pipeline(TfidfVariant(kind="tfidf-logreg", min_df=1, C=c), WEATHER, 0)
        pipe.fit(data[["text"]], labels)
        assert _log(pipe, WEATHER, root / f"weather-{i}", CLASSIFIER) == str(i)
    ridge = tfidf_pipeline(TfidfVariant(kind="tfidf-logreg", min_df=1), SCORE, 0)
    ridge.fit(data[["text"]], data["rating"])
    _log(ridge, SCORE, root / "score", REGRESSOR)
    from variantlab.io.models import copy_model_kwargs

    with mlflow.start_run():
        kwargs = copy_model_kwargs(pd.DataFrame({"text": ["the soup was warm"]}), WRITER)
        info = mlflow.pyfunc.log_model(name="model", **kwargs)
    mlflow.register_model(info.model_uri, GENERATOR)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(CLASSIFIER, "champion", "1")
    client.set_registered_model_alias(REGRESSOR, "champion", "1")
    client.set_registered_model_alias(GENERATOR, "champion", "1")
    yield Registry(uri, root, data["text"].tolist())
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
