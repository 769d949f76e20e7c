"""A new variant kind is one module and its registration: this test defines one here (a majority-class
baseline), registers it, and takes it through train, evaluate and compare beside the TF-IDF baseline, with no
edit anywhere else in the code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import pytest
from pydantic import Field

from tests.helpers import tiny_project, tiny_sentences
from variantlab import variants
from variantlab.schema import VariantBase
from variantlab.variants import Fitted, VariantKind
from variantlab.variants.base import example_rows, val_stats


class MajorityVariant(VariantBase):
    kind: Literal["majority"]
    strategy: Literal["most_frequent", "prior"] = "most_frequent"
    lowercase: bool = Field(True)


@dataclass
class MajorityKind(VariantKind):
    """Answers the training split's most frequent label, whatever the text: the floor any model must clear."""

    config: ClassVar[type[VariantBase]] = MajorityVariant

    def fit(self, train: Any, val: Any, task: Any, workdir: Path) -> Fitted:
        from sklearn.compose import ColumnTransformer
        from sklearn.dummy import DummyClassifier
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import Pipeline

        from variantlab.core.metrics import metric_value
        from variantlab.io.models import sklearn_model_kwargs

        features = ColumnTransformer([("tfidf", TfidfVectorizer(lowercase=self.cfg.lowercase), "text")])
        pipeline = Pipeline([("features", features), ("classifier", DummyClassifier(strategy=self.cfg.strategy))])
        pipeline.fit(train[["text"]], task.answers(train[task.target]))
        metric = self.ctx.params.metric
        value = metric_value(metric, task.answers(val[task.target]), pipeline.predict(val[["text"]]), task.labels)
        stats = {"trainable_params": 0, "total_params": 0, **val_stats(metric, value)}
        return Fitted(lambda: sklearn_model_kwargs(pipeline, workdir, example_rows(train), task), stats)


@pytest.fixture
def majority_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variants, "_KINDS", dict(variants.variant_kinds()))  # undone after the test
    variants.register(MajorityKind)


def test_a_kind_defined_in_a_test_runs_through_train_evaluate_and_compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, majority_registered: None, in_process_stages: None
) -> None:
    from variantlab.config import load_params
    from variantlab.io.files import read_json
    from variantlab.io.models import load_pyfunc
    from variantlab.stages import compare, evaluate, ingest, prepare, train, validate
    from variantlab.stages.context import StageContext

    extra = {"variants": {"majority": {"kind": "majority"}}, "promotion": {"baseline": None}}
    project = tiny_project(tmp_path / "p", data=tiny_sentences(240), extra=extra)
    monkeypatch.chdir(project)
    params = load_params(project / "params.yaml")
    assert isinstance(params.variants["majority"], MajorityVariant)
    for stage in (ingest, validate, prepare):
        assert stage.run(StageContext(project, params)) == 0
    for name in params.variants:
        assert train.run(StageContext(project, params, name)) == 0
        assert evaluate.run(StageContext(project, params, name)) == 0
    assert compare.run(StageContext(project, params)) == 0

    board = pd.read_csv(project / "reports/leaderboard.csv").set_index("variant")
    assert set(board.index) == {"majority", "tfidf-logreg"}
    assert board.loc["majority", "kind"] == "majority"
    assert board.loc["tfidf-logreg", "rank"] == 1  # the words carry the labels: the baseline beats the majority
    trained = read_json(project / "metrics/train/majority.json")
    assert trained["kind"] == "majority" and 0 < trained["val_macro_f1"] < 0.5
    answers = load_pyfunc(str(project / "models/majority")).predict(pd.DataFrame({"text": ["great", "awful"]}))
    assert len(set(answers)) == 1  # one label, whatever the text
    assert board.loc["majority", "quality"] == pytest.approx(
        read_json(project / "metrics/eval/majority.json")["macro_f1"]
    )


def test_an_unregistered_kind_is_named_with_the_kinds_there_are() -> None:
    import yaml

    from tests.helpers import REPO
    from variantlab.config import parse_params
    from variantlab.errors import ConfigError

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["variants"]["odd"] = {"kind": "majority"}
    with pytest.raises(ConfigError, match=r"variants.odd: unknown kind 'majority' \(allowed: tfidf-logreg, probe"):
        parse_params(raw)
