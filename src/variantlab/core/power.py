"""What a paired comparison could have detected: the minimum detectable effect at the realised test size, and the
test rows needed to detect the effect that matters (``promotion.min_effect``).

Two figures, both at two-sided level ``alpha`` (the gate's) and power ``power``:

* from the bootstrap's standard error of the difference, for any metric: the difference is about normal with
  standard error ``se``, which shrinks as 1/sqrt(n), so ``mde = (z[1-alpha/2] + z[power]) * se`` and
  ``n_needed = n * (mde / min_effect)^2``;
* for McNemar's test, from n and the discordance rate psi (the share of examples exactly one model gets right),
  Connor (1987): ``n = (z[1-alpha/2] sqrt(psi) + z[power] sqrt(psi - delta^2))^2 / delta^2`` for an accuracy
  gain delta, solved for delta at the realised n.

This is not "observed power" (a transform of the p-value): it says what this test set can tell apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy.stats import norm


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))


def bootstrap_mde(se: float, alpha: float, power: float) -> float:
    z_alpha, z_power = _z(alpha, power)
    return (z_alpha + z_power) * se


def bootstrap_rows_needed(n: int, se: float, effect: float, alpha: float, power: float) -> int | None:
    """Rows at which the standard error (shrinking as 1/sqrt(n)) makes ``effect`` detectable."""
    if effect <= 0 or se <= 0 or n <= 0:
        return None
    return max(1, math.ceil(n * (bootstrap_mde(se, alpha, power) / effect) ** 2))


def mcnemar_rows_needed(effect: float, discordance: float, alpha: float, power: float) -> int | None:
    """Connor (1987): paired examples needed to detect an accuracy gain ``effect`` with discordance ``psi``.
    The discordance is at least the effect (a gain of delta needs at least delta discordant examples)."""
    if effect <= 0:
        return None
    psi = min(1.0, max(discordance, effect))
    z_alpha, z_power = _z(alpha, power)
    root = math.sqrt(max(psi - effect**2, 0.0))
    return max(1, math.ceil((z_alpha * math.sqrt(psi) + z_power * root) ** 2 / effect**2))


def mcnemar_mde(n: int, discordance: float, alpha: float, power: float) -> float | None:
    """The smallest accuracy gain McNemar's test detects with ``power`` on n examples at this discordance
    (None without discordant examples: nothing can be told apart)."""
    if n <= 0 or discordance <= 0:
        return None
    z_alpha, z_power = _z(alpha, power)

    def needed(delta: float) -> float:
        return (z_alpha * math.sqrt(discordance) + z_power * math.sqrt(max(discordance - delta**2, 0.0))) ** 2 / (
            delta**2
        )

    low, high = 1e-9, discordance
    if needed(high) > n:
        return discordance  # even the largest gain this discordance allows is not detectable at this n
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if needed(middle) > n else (low, middle)
    return high


@dataclass(frozen=True)
class PowerStatement:
    """What one paired comparison could detect, and what settling ``min_effect`` would take."""

    n: int
    alpha: float
    power: float
    min_effect: float
    min_effect_source: str  # promotion.min_effect, promotion.min_improvement, or the task's default
    mde: float  # of the gated metric, from the bootstrap's standard error
    rows_needed: int | None  # test rows to detect min_effect (the larger of the two methods where both apply)
    mcnemar_mde: float | None = None  # accuracy points, Connor (1987); classification only
    mcnemar_rows_needed: int | None = None
    discordance: float | None = None
    method: str = ""

    @property
    def detectable(self) -> bool:
        """Could this test set detect ``min_effect`` with the stated power?"""
        return self.rows_needed is not None and self.rows_needed <= self.n

    @property
    def more_rows(self) -> int:
        return max(0, (self.rows_needed or 0) - self.n)

    def sentence(self, metric: str) -> str:
        text = (
            f"with {self.n} test rows the smallest {metric} gain detectable at {self.power:.0%} power "
            f"(alpha {self.alpha:.2g}) is {self.mde:.4f}"
        )
        if self.mcnemar_mde is not None:
            text += f" ({self.mcnemar_mde:.4f} accuracy by McNemar)"
        if self.rows_needed is not None:
            text += f"; detecting {self.min_effect:g} needs {self.rows_needed} rows"
        return text


def statement(comparison: Any, *, min_effect: float, source: str, power: float) -> PowerStatement:
    """The power statement of a ``statistics.PairedComparison`` at the gate's confidence."""
    alpha = 1 - comparison.confidence
    n = int(comparison.n)
    mde = bootstrap_mde(comparison.se, alpha, power)
    rows = bootstrap_rows_needed(n, comparison.se, min_effect, alpha, power)
    method = "bootstrap standard error of the difference: mde = (z[1-alpha/2] + z[power]) * se; rows ~ 1/se^2"
    mc_mde = mc_rows = None
    discordance = comparison.discordance if n else None
    if comparison.test == "mcnemar":
        mc_mde = mcnemar_mde(n, comparison.discordance, alpha, power)
        mc_rows = mcnemar_rows_needed(min_effect, comparison.discordance, alpha, power)
        if mc_rows is not None:
            rows = mc_rows if rows is None else max(rows, mc_rows)
        method += "; McNemar: Connor (1987) from n and the discordance rate (min_effect read as accuracy points)"
    if rows is None and comparison.se <= 0:
        # the resamples never differ: no discordant example; the bootstrap cannot say, McNemar says all of psi
        rows = mc_rows
    return PowerStatement(n, alpha, power, min_effect, source, mde, rows, mc_mde, mc_rows, discordance, method)
