"""Drift of a new batch of data against the data the current champion was trained on.

Four views, each a number in [0, 1] with a threshold in ``params.yaml`` (``feedback``):
label distribution and domain mix (total variation distance), or for regression the target's distribution
(two-sample Kolmogorov-Smirnov statistic), text length (two-sample Kolmogorov-Smirnov
statistic), and the open model's embedding centroids (cosine distance between the mean sentence embeddings).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp


@dataclass(frozen=True)
class DriftCheck:
    name: str
    value: float
    threshold: float
    detail: dict[str, Any]

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold


def total_variation(reference: pd.Series, current: pd.Series) -> tuple[float, dict[str, Any]]:
    p = reference.astype(str).value_counts(normalize=True)
    q = current.astype(str).value_counts(normalize=True)
    keys = sorted(set(p.index) | set(q.index))
    p, q = p.reindex(keys, fill_value=0.0), q.reindex(keys, fill_value=0.0)
    detail = {
        "reference": {k: round(float(p[k]), 4) for k in keys},
        "current": {k: round(float(q[k]), 4) for k in keys},
    }
    return float(0.5 * np.abs(p - q).sum()), detail


def target_shift(reference: pd.Series, current: pd.Series) -> tuple[float, dict[str, Any]]:
    """Regression: the two-sample Kolmogorov-Smirnov statistic of the targets."""
    a, b = reference.dropna().to_numpy(dtype=float), current.dropna().to_numpy(dtype=float)
    result = ks_2samp(a, b)
    detail = {
        "reference_mean": float(np.mean(a)),
        "current_mean": float(np.mean(b)),
        "reference_std": float(np.std(a)),
        "current_std": float(np.std(b)),
        "p_value": float(result.pvalue),
    }
    return float(result.statistic), detail


def length_shift(reference: pd.Series, current: pd.Series) -> tuple[float, dict[str, Any]]:
    a, b = reference.astype(str).str.len().to_numpy(), current.astype(str).str.len().to_numpy()
    result = ks_2samp(a, b)
    detail = {
        "reference_median_chars": float(np.median(a)),
        "current_median_chars": float(np.median(b)),
        "p_value": float(result.pvalue),
    }
    return float(result.statistic), detail


def centroid_distance(reference: np.ndarray, current: np.ndarray) -> tuple[float, dict[str, Any]]:
    """Cosine distance between the two mean embeddings (0: same direction)."""
    a, b = reference.mean(axis=0), current.mean(axis=0)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return 1.0 - cosine, {"reference_n": len(reference), "current_n": len(current)}


@dataclass(frozen=True)
class DriftReport:
    checks: list[DriftCheck]
    reference_rows: int
    current_rows: int

    @property
    def drifted(self) -> list[str]:
        return [c.name for c in self.checks if c.drifted]

    def to_json(self) -> dict[str, Any]:
        return {
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted": self.drifted,
            "checks": [{**asdict(c), "drifted": c.drifted} for c in self.checks],
        }

    def to_markdown(self) -> str:
        lines = [
            f"# Drift: {self.current_rows} new rows against {self.reference_rows} training rows",
            "",
            "| check | value | threshold | drifted |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {c.name} | {c.value:.4f} | {c.threshold:g} | {'yes' if c.drifted else 'no'} |" for c in self.checks
        ]
        return "\n".join(lines) + "\n"
