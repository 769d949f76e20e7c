"""Runs the data contract (core.expectations) with Great Expectations 1.x on an in-memory frame."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from variantlab.core.expectations import ExpectationSpec


@dataclass
class ExpectationOutcome:
    key: str
    description: str
    severity: str
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    exception: str | None = None


@dataclass
class ValidationReport:
    rows: int
    outcomes: list[ExpectationOutcome]
    gx_result: dict[str, Any]

    @property
    def errors(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "error"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "warning"]

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "evaluated": len(self.outcomes),
            "passed": sum(o.success for o in self.outcomes),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "success": not self.errors,
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "expectations": [asdict(o) for o in self.outcomes]}


def _gx_expectation(spec: ExpectationSpec) -> Any:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    cls = getattr(gxe, spec.gx_type)
    severity = FailureSeverity.CRITICAL if spec.severity == "error" else FailureSeverity.WARNING
    return cls(**spec.kwargs, severity=severity, meta={"key": spec.key}, description=spec.description)


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so reports serialise as JSON."""
    return value.item() if hasattr(value, "item") else value


def _examples(result: dict[str, Any], view: pd.DataFrame, column: str | None) -> list[dict[str, Any]]:
    indices = result.get("partial_unexpected_index_list") or []
    rows = []
    for index in indices[:5]:
        idx = index if isinstance(index, int) else index.get("index", index)
        if isinstance(idx, int) and idx in view.index:
            record = view.loc[idx]
            value = _short(_plain(record.get(column))) if column else None
            rows.append({"row": int(idx), "id": record.get("id"), column or "value": value})
    if not rows:
        rows = [{"value": _short(v)} for v in (result.get("partial_unexpected_list") or [])[:5]]
    return rows


def _short(value: Any, limit: int = 60) -> Any:
    """A long text shown as its start and its length: a 1 MB cell must not become a 1 MB error line."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value):,} chars)"
    return value


def run_suite(view: pd.DataFrame, specs: list[ExpectationSpec]) -> ValidationReport:
    """Validate ``view`` against ``specs`` with an ephemeral GX context (nothing written to disk)."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX md5-hashes the whole frame, twice per validation, for a batch fingerprint nothing here reads (DVC digests
    # the file already): half the suite's time on 1M rows. Frames above the threshold are never hashed.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    # GX draws one bar per metric batch, even off a terminal; our stage reports progress itself.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("variantlab")
    batch_def = source.add_dataframe_asset("sentences").add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name="variantlab-raw"))
    for spec in specs:
        suite.add_expectation(_gx_expectation(spec))
    batch = batch_def.get_batch(batch_parameters={"dataframe": view})
    result = batch.validate(
        suite,
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5, "include_unexpected_rows": False},
    )
    by_key = {spec.key: spec for spec in specs}
    outcomes = []
    for item in result.results:
        meta = item.expectation_config.meta if item.expectation_config else None
        spec = by_key[(meta or {})["key"]]
        res = dict(item.result or {})
        exc = item.exception_info or {}
        outcomes.append(
            ExpectationOutcome(
                key=spec.key,
                description=spec.description,
                severity=spec.severity,
                success=bool(item.success),
                observed=res.get("observed_value"),
                unexpected_count=res.get("unexpected_count"),
                unexpected_percent=res.get("unexpected_percent"),
                examples=[] if item.success else _examples(res, view, spec.kwargs.get("column")),
                exception=exc.get("exception_message") if exc.get("raised_exception") else None,
            )
        )
    order = {spec.key: i for i, spec in enumerate(specs)}
    outcomes.sort(key=lambda o: order[o.key])
    return ValidationReport(rows=len(view), outcomes=outcomes, gx_result=result.to_json_dict())


def render_failures(report: ValidationReport, file: str) -> str:
    """A one-screen text report: each failed expectation with a few example rows."""
    lines = [
        f"validation of {file}: {len(report.errors)} error(s), {len(report.warnings)} warning(s) "
        f"in {len(report.outcomes)} expectations over {report.rows} rows"
    ]
    for outcome in report.errors + report.warnings:
        count = (
            f", {outcome.unexpected_count} rows ({outcome.unexpected_percent:.2f}%)" if outcome.unexpected_count else ""
        )
        observed = f", observed {_shown(outcome.observed)}" if outcome.observed is not None else ""
        lines.append(f"  [{outcome.severity}] {outcome.key}: expected {outcome.description}{observed}{count}")
        if outcome.exception:
            lines.append(f"      could not evaluate: {outcome.exception}")
        for example in outcome.examples[:3]:
            lines.append(f"      e.g. {example}")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """NumPy scalars as plain numbers (``0.0``, not ``np.float64(0.0)``)."""
    if hasattr(value, "item") and callable(value.item):
        with contextlib.suppress(ValueError, TypeError):
            value = value.item()
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def first_failure(outcome: ExpectationOutcome) -> str:
    """One line for the error: which check, and where (the first rows it found)."""
    where = ""
    if outcome.examples:
        shown = "; ".join(", ".join(f"{k} {v!r}" for k, v in e.items()) for e in outcome.examples[:2])
        more = (outcome.unexpected_count or 0) - min(2, len(outcome.examples))
        where = f" ({shown}{f'; +{more} more' if more > 0 else ''})"
    elif outcome.observed is not None:
        where = f" (observed {_shown(outcome.observed)})"
    return f"{outcome.key}: expected {outcome.description}{where}"
