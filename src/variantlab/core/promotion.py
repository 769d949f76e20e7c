"""The promotion decision: a pure function of the challenger's and the champion's scores and the policy."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Scored:
    variant: str
    score: float
    run_id: str | None
    test_sha256: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: Scored
    champion: Scored | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    challenger: Scored, champion: Scored | None, *, metric: str, floor: float, min_improvement: float
) -> Decision:
    """Promote when there is no champion and the floor is met, or when the challenger beats the champion.

    Both scores must come from the same frozen test set (the caller re-scores the champion otherwise).
    """

    def verdict(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, metric, challenger, champion)

    if champion is None:
        if challenger.score >= floor:
            return verdict(True, f"no champion yet and {metric} {challenger.score:.4f} >= floor {floor:.4f}")
        return verdict(False, f"no champion yet but {metric} {challenger.score:.4f} < floor {floor:.4f}")
    if champion.test_sha256 != challenger.test_sha256:
        raise ValueError("champion and challenger were scored on different test sets")
    if champion.run_id is not None and champion.run_id == challenger.run_id:
        return verdict(False, f"'{challenger.variant}' is already the champion")
    gain = challenger.score - champion.score
    if gain > min_improvement:
        return verdict(
            True,
            f"{metric} {challenger.score:.4f} beats champion {champion.score:.4f} "
            f"by {gain:+.4f} (> {min_improvement:.4f})",
        )
    return verdict(
        False,
        f"{metric} {challenger.score:.4f} does not beat champion {champion.score:.4f} "
        f"by more than {min_improvement:.4f} (gain {gain:+.4f})",
    )
