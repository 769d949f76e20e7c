"""Twenty-three bad inputs through `variantlab run`: each ends with one clear line, a non-zero exit, and nothing
written by the failing stage or after it, nothing registered, nothing promoted.

The last line of stderr is the user's answer: ``variantlab run: error: <stage> failed: <file>: column '<c>':
row(s) <n>: <what is wrong>`` (or ``<params.yaml>: <key>: ...`` before any work starts).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.helpers import run, tiny_project, tiny_sentences

SOURCE = "data/external/tiny.csv"


def write_csv(text: str | bytes) -> Callable[[Path], None]:
    def mutate(project: Path) -> None:
        (project / SOURCE).write_bytes(text if isinstance(text, bytes) else text.encode())

    return mutate


def write_frame(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def mutate(project: Path) -> None:
        change(tiny_sentences()).to_csv(project / SOURCE, index=False)

    return mutate


def edit_params(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def mutate(project: Path) -> None:
        params = yaml.safe_load((project / "params.yaml").read_text())
        change(params)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    return mutate


def with_row(index: int, **values: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype(object)
        for column, value in values.items():
            frame.loc[index, column] = value
        return frame

    return change


def both(*mutations: Callable[[Path], None]) -> Callable[[Path], None]:
    def mutate(project: Path) -> None:
        for change in mutations:
            change(project)

    return mutate


def regression(params: dict[str, Any]) -> None:
    params["task"] = {"kind": "regression", "target_column": "rating", "value_range": [-4.0, 4.0]}
    params["promotion"].update(metric="mae", floor=None)


def generation(params: dict[str, Any]) -> None:
    """A text-to-text task (answers of at most 40 characters) whose one variant is the copy baseline."""
    params["task"] = {"kind": "generation", "target_column": "target", "max_target_chars": 40}
    params["variants"] = {"copy": {"kind": "copy"}}
    params["promotion"].update(metric=None, floor=None, baseline=None)


def write_pairs(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    """A generation task's file (text, target), changed, with the task set in params.yaml."""

    def mutate(project: Path) -> None:
        frame = tiny_sentences()[["id", "text"]].assign(target=lambda f: f["text"].str.split().str[1])
        change(frame).to_csv(project / SOURCE, index=False)
        edit_params(generation)(project)

    return mutate


@dataclass(frozen=True)
class Case:
    mutate: Callable[[Path], None]
    expected: str  # what the last line must say
    stage: str | None  # the stage that refuses (None: params.yaml, before any stage runs)
    model: bool = False  # needs the tiny BERT (a probe variant)


def external_model(project: Path, tiny_bert: tuple[Path, str], damage: str) -> None:
    """The probe's model as a folder inside the project, wrong hash pinned or its weights truncated."""
    copy = project / "data/external/tiny-bert"
    shutil.copytree(tiny_bert[0], copy)
    weights = copy / "model.safetensors"
    sha = tiny_bert[1]
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        sha = hashlib.sha256(weights.read_bytes()).hexdigest()  # the pin matches: only the format is wrong
    elif damage == "hash":
        sha = "0" * 64
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["tiny"] = {"source": "path:data/external/tiny-bert", "sha256": sha}
    params["variants"] = {"tiny-probe": params["variants"]["tiny-probe"]}  # the one stage that loads the model
    params["promotion"]["baseline"] = None
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


CASES: dict[str, Case] = {
    "missing-column": Case(
        write_csv("id,txt,rating\n1,good,2.0\n"), f"{SOURCE}: column 'text': missing required column", "ingest"
    ),
    "extra-column": Case(
        write_frame(lambda f: f.assign(notes="x")), f"{SOURCE}: column 'notes': unexpected column ['notes']", "ingest"
    ),
    "empty-file": Case(write_csv(""), f"{SOURCE}: file is empty", "ingest"),
    "header-only": Case(write_csv("text,rating\n"), f"{SOURCE}: has a header but no data rows", "ingest"),
    "wrong-encoding": Case(
        write_csv(b"text,rating\nfine,1.0\n" + "caf\u00e9 au lait,2.0\n".encode("latin-1")),
        f"{SOURCE}: row 3: not valid UTF-8 (byte 24: b'\\xe9'); save the file as UTF-8",
        "ingest",
    ),
    "non-numeric-rating": Case(
        write_frame(with_row(4, rating="minus two")),
        f"{SOURCE}: column 'rating': row 6: values are not numbers",
        "ingest",
    ),
    "nan-rating": Case(
        write_frame(with_row(4, rating=None)), "target_not_null: expected target is present (row 4, id 't4'", "validate"
    ),
    "rating-out-of-range": Case(
        write_frame(with_row(5, rating=7.5)), "rating_range: expected rating within [-4, 4] (row 5, id 't5'", "validate"
    ),
    "unknown-label": Case(
        write_frame(lambda f: f.drop(columns="rating").assign(label=["positive", "negative", "meh"] * 50)),
        f"{SOURCE}: column 'label': rows 4, 7, 10, 13, 16 (+45 more): unknown labels ['meh'] (allowed: negative,",
        "ingest",
    ),
    "one-megabyte-text": Case(
        write_frame(with_row(7, text="x" * 1_000_000)),
        "text_length_max: expected text has <= 5000 chars (row 7, id 't7', text 'xxxxxxxxxx",
        "validate",
    ),
    "duplicate-ids": Case(
        write_frame(with_row(9, id="t3")),
        "id_unique: expected ids are unique (row 3, id 't3'; row 9, id 't3')",
        "validate",
    ),
    "single-class": Case(
        write_frame(lambda f: f.assign(rating=2.5)), "class_floor_negative: expected at least 8% negative", "validate"
    ),
    "auto-labels-one-class": Case(
        both(
            write_frame(lambda f: f.drop(columns="rating").assign(label="spam")),
            edit_params(lambda p: p.update(task={"kind": "classification", "labels": "auto"})),
        ),
        "task.labels is auto but the data holds 1 label(s) ['spam']: a classifier needs at least 2",
        "validate",
    ),
    "class-too-small-for-every-split": Case(
        both(
            write_frame(lambda f: f.drop(columns="rating").assign(label=["ham"] * 149 + ["spam"])),
            edit_params(
                lambda p: (
                    p.update(task={"kind": "classification", "labels": "auto"}),
                    p["validation"].update(min_class_fraction=0.0),
                )
            ),
        ),
        "column 'label': class(es) 'spam' (train 1, val 0, test 0) too few to appear in every split",
        "prepare",
    ),
    "regression-target-not-a-number": Case(
        both(write_frame(with_row(4, rating="high")), edit_params(regression)),
        f"{SOURCE}: column 'rating': row 6: values are not numbers",
        "ingest",
    ),
    "regression-target-out-of-range": Case(
        both(write_frame(with_row(5, rating=9.0)), edit_params(regression)),
        "rating_range: expected rating within [-4, 4] (row 5, id 't5'",
        "validate",
    ),
    "option-that-does-not-fit-the-task": Case(
        edit_params(lambda p: (regression(p), p["variants"]["tfidf-logreg"].update(class_weight="balanced"))),
        "params.yaml: <top>: Value error, variants.tfidf-logreg.class_weight is for classification; this task is a "
        "regression",
        None,
    ),
    "metric-that-does-not-fit-the-task": Case(
        edit_params(lambda p: (regression(p), p["promotion"].update(metric="macro_f1"))),
        "promotion.metric 'macro_f1' does not fit a regression task (allowed: mae, rmse, r2, spearman)",
        None,
    ),
    "unknown-variant-kind": Case(
        edit_params(lambda p: p["variants"]["tfidf-logreg"].update(kind="xgboost")),
        "params.yaml: variants.tfidf-logreg: unknown kind 'xgboost' "
        "(allowed: tfidf-logreg, probe, full, lora, qlora, pruned, prompt, copy, nearest)",
        None,
    ),
    "generation-empty-target": Case(
        write_pairs(with_row(6, target="")), "target_not_null: expected target is present (row 6, id 't6'", "validate"
    ),
    "generation-target-too-long": Case(
        write_pairs(with_row(3, target="a" * 41)),
        "target_length: expected target has 1 to 40 chars (row 3, id 't3'",
        "validate",
    ),
    "generation-target-column-missing": Case(
        write_pairs(lambda f: f.drop(columns="target")),
        f"{SOURCE}: column 'target': needs the task's column 'target'",
        "ingest",
    ),
    "label-scoring-variant-on-a-generation-task": Case(
        both(
            write_pairs(lambda f: f), edit_params(lambda p: p["variants"].update({"tfidf": {"kind": "tfidf-logreg"}}))
        ),
        "variants.tfidf (tfidf-logreg) scores labels or numbers, and this task is generation: use one of copy, full,",
        None,
    ),
    "generation-template-without-text": Case(
        both(
            write_pairs(lambda f: f),
            edit_params(
                lambda p: p["variants"].update({"llm": {"kind": "prompt", "model": "minilm", "template": "Fix it."}})
            ),
        ),
        "params.yaml: variants.llm.template: Value error, the template needs a {text} placeholder",
        None,
    ),
    "wrong-type-in-params": Case(
        edit_params(lambda p: p["split"].update(test_fraction="a fifth")),
        "params.yaml: split.test_fraction: Input should be a valid number",
        None,
    ),
    "unknown-params-key": Case(
        edit_params(lambda p: p["split"].update(tset_fraction=0.3)),
        "params.yaml: unknown key 'split.tset_fraction'",
        None,
    ),
    "data-outside-the-project": Case(
        edit_params(lambda p: p["data"].update(source="../outside.csv")),
        "../outside.csv: data path lies outside the project; copy it under data/external/",
        "ingest",
    ),
    "model-hash-mismatch": Case(lambda p: None, "does not match the pinned 0000000000", "train", model=True),
    "truncated-safetensors": Case(
        lambda p: None, "model.safetensors: not a valid safetensors file (truncated or corrupt)", "train", model=True
    ),
}

# What each stage writes: a failing stage and every later one must leave none of it behind.
LATER_OUTPUTS = {
    None: ["data/raw", "metrics", "reports", "data/prepared", "models"],
    "ingest": ["data/raw", "metrics", "reports", "data/prepared", "models"],
    "validate": ["reports/validation.json", "metrics/validate.json", "data/prepared", "models"],
    "prepare": ["data/prepared", "metrics/prepare.json", "models", "metrics/train"],
    "train": [
        "models/tiny-probe",
        "metrics/train/tiny-probe.json",
        "metrics/eval/tiny-probe.json",
        "reports/promotion.json",
    ],
}


def written(path: Path) -> bool:
    """A pipeline output is there (the benchmark reports committed under reports/bench/ are not outputs)."""
    if path.is_dir():
        return any(p.is_file() and "bench" not in p.parts for p in path.rglob("*"))
    return path.exists()


def store_state(project: Path) -> tuple[int, set[str]]:
    """Registered models and run statuses, read straight from the SQLite store (no MLflow start-up per case)."""
    with sqlite3.connect(project / "mlflow.db") as db:
        registered = db.execute("select count(*) from registered_models").fetchone()[0]
        return int(registered), {row[0] for row in db.execute("select status from runs")}


# The task's own bad inputs run in `make test-slow` (CI runs both): `make test` stays under 20 minutes.
TASK_CASES = {
    "auto-labels-one-class",
    "class-too-small-for-every-split",
    "regression-target-not-a-number",
    "regression-target-out-of-range",
    "option-that-does-not-fit-the-task",
    "metric-that-does-not-fit-the-task",
    "generation-empty-target",
    "generation-target-too-long",
    "generation-target-column-missing",
    "label-scoring-variant-on-a-generation-task",
    "generation-template-without-text",
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in TASK_CASES else n for n in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(
    name: str, tmp_path: Path, tiny_bert: tuple[Path, str]
) -> None:
    case = CASES[name]
    tiny_sentences().to_csv(tmp_path / "outside.csv", index=False)
    project = tiny_project(tmp_path / "p", *(tiny_bert if case.model else (None, None)))
    if case.model:
        external_model(project, tiny_bert, "hash" if name == "model-hash-mismatch" else "truncated")
    case.mutate(project)

    done = run(project, "-m", "variantlab.cli", "run")

    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    prefix = "variantlab run: error: " + (f"{case.stage} failed: " if case.stage else "")
    assert last.startswith(prefix) and case.expected in last, f"{name}: {last[:500]}"
    assert len(last) < 400, f"{name}: the error line is {len(last)} characters long"
    assert sum("variantlab run: error:" in line for line in done.stderr.splitlines()) == 1
    left = [out for out in LATER_OUTPUTS[case.stage] if written(project / out)]
    assert left == [], f"{name}: left behind {left}"
    if (project / "mlflow.db").exists():
        registered, statuses = store_state(project)
        assert registered == 0, f"{name}: something was registered"
        assert "RUNNING" not in statuses, f"{name}: a run was left RUNNING: {statuses}"
