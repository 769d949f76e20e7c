from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import tiny_sentences
from variantlab.config import LabelConfig, ValidationConfig
from variantlab.core.corpus import RAW_COLUMNS
from variantlab.core.expectations import build_suite, validation_view
from variantlab.errors import ConfigError
from variantlab.io.validation import render_failures, run_suite


def raw_frame(n: int = 90) -> pd.DataFrame:
    frame = tiny_sentences(n).assign(label=pd.Series([None] * n, dtype="string"))
    return frame[list(RAW_COLUMNS)]


def validate(frame: pd.DataFrame, **cfg: object):
    config = ValidationConfig(**cfg)  # type: ignore[arg-type]
    return run_suite(validation_view(frame, LabelConfig()), build_suite(config))


def test_clean_data_passes_every_expectation() -> None:
    report = validate(raw_frame())
    assert report.summary()["success"], render_failures(report, "x")
    assert report.summary()["evaluated"] == len(build_suite(ValidationConfig()))


def test_out_of_range_rating_is_an_error_with_the_row() -> None:
    frame = raw_frame()
    frame.loc[7, "rating"] = 9.0
    report = validate(frame)
    assert [o.key for o in report.errors] == ["rating_range"]
    assert report.errors[0].examples[0]["row"] == 7
    assert "rating_range" in render_failures(report, "raw.parquet")


def test_duplicates_are_a_warning_by_default_and_an_error_on_request() -> None:
    frame = raw_frame()
    frame.loc[:20, "text"] = "same text"
    frame.loc[:20, "id"] = [f"dup{i}" for i in range(21)]
    assert [o.key for o in validate(frame).warnings] == ["duplicate_fraction"]
    assert not validate(frame).errors
    assert [o.key for o in validate(frame, severity={"duplicate_fraction": "error"}).errors] == ["duplicate_fraction"]


def test_single_class_breaks_the_class_floor() -> None:
    frame = raw_frame().assign(rating=2.0)
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
        build_suite(ValidationConfig(severity={"nope": "warning"}))


def test_the_gx_fingerprint_switch_we_turn_off_still_exists() -> None:
    """run_suite sets GX's HASH_THRESHOLD to skip hashing the frame; a GX that renames it would hash again."""
    from great_expectations.execution_engine import pandas_execution_engine

    assert isinstance(pandas_execution_engine.HASH_THRESHOLD, int | float)
    source = Path(pandas_execution_engine.__file__).read_text()
    assert "< HASH_THRESHOLD:" in source and "pandas_data_fingerprint" in source
