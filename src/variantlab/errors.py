"""Typed errors that carry where a problem is (file, column, row) so the CLI can print one clear line."""

from __future__ import annotations

from collections.abc import Sequence


class VariantlabError(Exception):
    """Base class: every error a user can cause and fix. The CLI prints ``str(err)`` and exits non-zero."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: Sequence[int] | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.column = column
        self.rows = list(rows or [])
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.column:
            where.append(f"column '{self.column}'")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" (+{len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
            where.append(f"row{'s' if len(self.rows) > 1 else ''} {shown}{more}")
        return f"{': '.join(where)}: {self.message}" if where else self.message


class ConfigError(VariantlabError):
    """params.yaml is missing, malformed, or has unknown or ill-typed keys."""


class DataError(VariantlabError):
    """An input data file cannot be read or does not have the required shape."""


class ValidationFailed(VariantlabError):
    """The data failed one or more expectations of severity ``error``."""


class IntegrityError(VariantlabError):
    """A file's content hash does not match the pinned one (corrupt or tampered)."""


class LeakageError(VariantlabError):
    """The same normalised text ended up in two splits."""


class TrackingError(VariantlabError):
    """The MLflow store does not hold what a stage expects (a run, a model, an alias)."""


class TrainingError(VariantlabError):
    """Training produced no model: every trial of a search failed, say."""
