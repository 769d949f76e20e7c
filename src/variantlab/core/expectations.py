"""The data contract as plain data: which Great Expectations checks run, on what, and how bad a failure is.

Kept free of GX itself so the suite can be read, tested and overridden from params without importing GX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from variantlab.config import ValidationConfig
from variantlab.core.corpus import RAW_COLUMNS
from variantlab.core.task import Task
from variantlab.errors import ConfigError


@dataclass(frozen=True)
class ExpectationSpec:
    key: str  # stable name used in params (validation.severity) and reports
    gx_type: str  # Great Expectations 1.x expectation class name
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = "error"
    description: str = ""


DEFAULT_SEVERITY = {"duplicate_fraction": "warning"}


def indicator(label: str) -> str:
    return f"is_class:{label}"


def validation_view(raw: pd.DataFrame, task: Task) -> pd.DataFrame:
    """The raw frame plus the columns the suite checks: the target (a label or a number), per-class indicators."""
    view = raw.copy()
    for column in ("id", "text", "domain", "label"):
        if column in view:
            view[column] = view[column].astype(object).where(view[column].notna(), None)
    # The numeric column under the user's own name, so a failure names the column of their file.
    if _value_name(task) != "value":
        view = view.rename(columns={"value": _value_name(task)})
    for column, values in task.target_view(raw).items():
        view[column] = values
    return view


def _value_name(task: Task) -> str:
    return task.value_column if task.value_column not in (*RAW_COLUMNS, "target") else "value"


def view_columns(task: Task) -> list[str]:
    raw = [_value_name(task) if c == "value" else c for c in RAW_COLUMNS]
    return [*raw, "target", *(indicator(n) for n in task.labels)]


def _target_specs(cfg: ValidationConfig, task: Task) -> list[ExpectationSpec]:
    specs = []
    if task.value_range is not None:
        low, high = task.value_range
        column = _value_name(task)
        specs.append(
            ExpectationSpec(
                f"{column}_range",
                "ExpectColumnValuesToBeBetween",
                {"column": column, "min_value": low, "max_value": high},
                description=f"{column} within [{low:g}, {high:g}]",
            )
        )
    return [*specs, *task.target_expectations(cfg)]


def build_suite(cfg: ValidationConfig, task: Task) -> list[ExpectationSpec]:
    specs = [
        ExpectationSpec(
            "schema",
            "ExpectTableColumnsToMatchSet",
            {"column_set": view_columns(task), "exact_match": True},
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
        *(
            ExpectationSpec(
                f"{c}_not_null", "ExpectColumnValuesToNotBeNull", {"column": c}, description=f"{c} is present"
            )
            for c in ("id", "text", "domain", "target")
        ),
        ExpectationSpec("id_unique", "ExpectColumnValuesToBeUnique", {"column": "id"}, description="ids are unique"),
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
            "duplicate_fraction",
            "ExpectColumnProportionOfUniqueValuesToBeBetween",
            {"column": "text", "min_value": 1.0 - cfg.max_duplicate_fraction},
            description=f"at most {cfg.max_duplicate_fraction:.0%} duplicate texts",
        ),
        *_target_specs(cfg, task),
    ]
    if cfg.domains is not None:
        specs.append(
            ExpectationSpec(
                "domain_set",
                "ExpectColumnValuesToBeInSet",
                {"column": "domain", "value_set": list(cfg.domains)},
                description=f"domain in {{{', '.join(cfg.domains)}}}",
            )
        )
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
