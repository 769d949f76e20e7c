"""The data contract as plain data: which Great Expectations checks run, on what, and how bad a failure is.

Kept free of GX itself so the suite can be read, tested and overridden from params without importing GX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from variantlab.config import LABELS, LabelConfig, ValidationConfig
from variantlab.core.corpus import RAW_COLUMNS
from variantlab.core.preprocessing import label_from_rating
from variantlab.errors import ConfigError


@dataclass(frozen=True)
class ExpectationSpec:
    key: str  # stable name used in params (validation.severity) and reports
    gx_type: str  # Great Expectations 1.x expectation class name
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = "error"
    description: str = ""


VIEW_COLUMNS = (*RAW_COLUMNS, "target", *(f"is_{name}" for name in LABELS))
DEFAULT_SEVERITY = {"duplicate_fraction": "warning"}


def validation_view(raw: pd.DataFrame, labels: LabelConfig) -> pd.DataFrame:
    """The raw frame plus derived columns the suite checks (effective label, per-class indicators)."""
    view = raw.copy()
    for column in ("id", "text", "domain", "label"):
        if column in view:
            view[column] = view[column].astype(object).where(view[column].notna(), None)
    if {"label", "rating"} <= set(view.columns):
        derived = label_from_rating(view["rating"], labels.negative_max, labels.positive_min)
        effective = pd.Series(view["label"], dtype="string").fillna(derived)
        view["target"] = effective.astype(object).where(effective.notna(), None)
        for name in LABELS:
            view[f"is_{name}"] = (effective == name).astype("float64")
    return view


def build_suite(cfg: ValidationConfig) -> list[ExpectationSpec]:
    specs = [
        ExpectationSpec(
            "schema",
            "ExpectTableColumnsToMatchSet",
            {"column_set": list(VIEW_COLUMNS), "exact_match": True},
            description="columns are exactly the raw schema",
        ),
        ExpectationSpec(
            "non_empty", "ExpectTableRowCountToBeBetween", {"min_value": 1}, description="at least one row"
        ),
        ExpectationSpec(
            "text_type",
            "ExpectColumnValuesToBeInTypeList",
            {"column": "text", "type_list": ["str"]},
            description="text is a string",
        ),
        ExpectationSpec(
            "rating_type",
            "ExpectColumnValuesToBeInTypeList",
            {"column": "rating", "type_list": ["float", "float64", "float32"]},
            description="rating is a float",
        ),
        *(
            ExpectationSpec(
                f"{c}_not_null", "ExpectColumnValuesToNotBeNull", {"column": c}, description=f"{c} is present"
            )
            for c in ("id", "text", "domain", "target")
        ),
        ExpectationSpec("id_unique", "ExpectColumnValuesToBeUnique", {"column": "id"}, description="ids are unique"),
        ExpectationSpec(
            "rating_range",
            "ExpectColumnValuesToBeBetween",
            {"column": "rating", "min_value": cfg.rating_min, "max_value": cfg.rating_max},
            description=f"rating within [{cfg.rating_min:g}, {cfg.rating_max:g}]",
        ),
        ExpectationSpec(
            "text_length_min",
            "ExpectColumnValueLengthsToBeBetween",
            {"column": "text", "min_value": cfg.text_min_chars},
            description=f"text has >= {cfg.text_min_chars} chars",
        ),
        ExpectationSpec(
            "text_length_max",
            "ExpectColumnValueLengthsToBeBetween",
            {"column": "text", "max_value": cfg.text_max_chars},
            description=f"text has <= {cfg.text_max_chars} chars",
        ),
        ExpectationSpec(
            "domain_set",
            "ExpectColumnValuesToBeInSet",
            {"column": "domain", "value_set": list(cfg.domains)},
            description=f"domain in {{{', '.join(cfg.domains)}}}",
        ),
        ExpectationSpec(
            "label_set",
            "ExpectColumnValuesToBeInSet",
            {"column": "target", "value_set": list(LABELS)},
            description=f"label in {{{', '.join(LABELS)}}}",
        ),
        ExpectationSpec(
            "duplicate_fraction",
            "ExpectColumnProportionOfUniqueValuesToBeBetween",
            {"column": "text", "min_value": 1.0 - cfg.max_duplicate_fraction},
            description=f"at most {cfg.max_duplicate_fraction:.0%} duplicate texts",
        ),
        *(
            ExpectationSpec(
                f"class_floor_{name}",
                "ExpectColumnMeanToBeBetween",
                {"column": f"is_{name}", "min_value": cfg.min_class_fraction},
                description=f"at least {cfg.min_class_fraction:.0%} {name}",
            )
            for name in LABELS
        ),
    ]
    unknown = set(cfg.severity) - {s.key for s in specs}
    if unknown:
        raise ConfigError(
            f"unknown expectation(s) in validation.severity: {sorted(unknown)} "
            f"(known: {', '.join(s.key for s in specs)})",
            file="params.yaml",
        )
    return [
        ExpectationSpec(
            s.key, s.gx_type, s.kwargs, cfg.severity.get(s.key, DEFAULT_SEVERITY.get(s.key, "error")), s.description
        )
        for s in specs
    ]
