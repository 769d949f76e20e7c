from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import default_task, raw_sentences
from variantlab.config import ValidationConfig
from variantlab.core.expectations import build_suite, validation_view
from variantlab.core.task import Classification, Regression, Task
from variantlab.errors import ConfigError
from variantlab.io.validation import render_failures, run_suite

DOMAINS = ("tweets", "movie_reviews", "amazon_reviews", "nyt_editorials")


def raw_frame(n: int = 90) -> pd.DataFrame:
    return raw_sentences(n)


def validate(frame: pd.DataFrame, task: Task | None = None, **cfg: object):
    config = ValidationConfig(**{"domains": DOMAINS, **cfg})  # type: ignore[arg-type]
    task = task or default_task()
    return run_suite(validation_view(frame, task), build_suite(config, task))


def test_clean_data_passes_every_expectation() -> None:
    report = validate(raw_frame())
    assert report.summary()["success"], render_failures(report, "x")
    assert report.summary()["evaluated"] == len(build_suite(ValidationConfig(domains=DOMAINS), default_task()))


def test_out_of_range_rating_is_an_error_with_the_row() -> None:
    frame = raw_frame()
    frame.loc[7, "value"] = 9.0
    report = validate(frame)
    assert [o.key for o in report.errors] == ["rating_range"]  # the user's column, not the internal one
    assert report.errors[0].examples[0]["row"] == 7
    assert "rating_range: expected rating within [-4, 4]" in render_failures(report, "raw.parquet")


def test_a_label_outside_the_task_is_an_error() -> None:
    frame = raw_frame()
    frame.loc[5, "label"] = "sarcastic"
    report = validate(frame)
    assert "label_set" in [o.key for o in report.errors]


def test_each_of_n_labels_gets_its_own_class_floor() -> None:
    labels = tuple(f"topic{i}" for i in range(8))
    task = Classification(labels=labels)
    frame = raw_frame(160).assign(label=[labels[i % 8] for i in range(160)], value=float("nan"))
    assert validate(frame, task, min_class_fraction=0.1).summary()["success"]
    frame.loc[frame["label"] == "topic3", "label"] = "topic4"
    assert [o.key for o in validate(frame, task, min_class_fraction=0.1).errors] == ["class_floor_topic3"]


def test_a_regression_target_is_checked_for_its_range_and_presence() -> None:
    task = Regression(value_range=(0.0, 10.0), value_column="price")
    frame = raw_frame().assign(value=[float(i % 10) for i in range(90)], label=pd.NA)
    assert validate(frame, task).summary()["success"]
    frame.loc[3, "value"] = 11.0
    frame.loc[4, "value"] = float("nan")
    assert {o.key for o in validate(frame, task).errors} == {"price_range", "target_not_null"}


def test_duplicates_are_a_warning_by_default_and_an_error_on_request() -> None:
    frame = raw_frame()
    frame.loc[:20, "text"] = "same text"
    frame.loc[:20, "id"] = [f"dup{i}" for i in range(21)]
    assert [o.key for o in validate(frame).warnings] == ["duplicate_fraction"]
    assert not validate(frame).errors
    assert [o.key for o in validate(frame, severity={"duplicate_fraction": "error"}).errors] == ["duplicate_fraction"]


def test_single_class_breaks_the_class_floor() -> None:
    frame = raw_frame().assign(label="positive")
    keys = {o.key for o in validate(frame).errors}
    assert {"class_floor_negative", "class_floor_neutral"} <= keys


def test_unknown_domain_and_null_text() -> None:
    frame = raw_frame()
    frame.loc[3, "domain"] = "blogs"
    frame.loc[4, "text"] = None
    keys = {o.key for o in validate(frame).errors}
    assert {"domain_set", "text_not_null"} <= keys


def test_unknown_severity_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown expectation"):
        build_suite(ValidationConfig(severity={"nope": "warning"}), default_task())


def test_the_gx_fingerprint_switch_we_turn_off_still_exists() -> None:
    """run_suite sets GX's HASH_THRESHOLD to skip hashing the frame; a GX that renames it would hash again."""
    from great_expectations.execution_engine import pandas_execution_engine

    assert isinstance(pandas_execution_engine.HASH_THRESHOLD, int | float)
    source = Path(pandas_execution_engine.__file__).read_text()
    assert "< HASH_THRESHOLD:" in source and "pandas_data_fingerprint" in source


def test_a_class_floor_no_data_could_pass_is_a_config_error() -> None:
    twenty = Classification(labels=tuple(f"l{i}" for i in range(20)))
    with pytest.raises(ConfigError, match=r"min_class_fraction 0.1 x 20 labels is more than the whole data"):
        build_suite(ValidationConfig(min_class_fraction=0.1), twenty)
    floors = [s for s in build_suite(ValidationConfig(), twenty) if s.key.startswith("class_floor_")]
    assert len(floors) == 20 and {s.kwargs["min_value"] for s in floors} == {1 / 80}  # a quarter of 5%
