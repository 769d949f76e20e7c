"""Calibration, behavioural checks, the Pareto front, the alias-history replay and model URIs."""

from __future__ import annotations

import numpy as np
import pytest

from variantlab.commands.verify import parse_uri
from variantlab.core.behaviour import build_cases, run_checks
from variantlab.core.metrics import calibration
from variantlab.errors import VariantlabError
from variantlab.io.plots import pareto_front
from variantlab.io.registry import AliasMove, champion_stack


def test_calibration_error_by_hand() -> None:
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False])
    ece, table = calibration(confidence, correct, n_bins=10)
    # bin 9: conf 0.95, acc 1.0 (gap 0.05); bin 5: conf 0.55, acc 0.5 (gap 0.05)
    assert ece == pytest.approx(0.05)
    assert table["n"].tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    perfect, _ = calibration(np.full(100, 0.8), np.arange(100) < 80)
    assert perfect == pytest.approx(0.0)
    overconfident, _ = calibration(np.full(100, 0.99), np.arange(100) < 50)
    assert overconfident == pytest.approx(0.49)


def test_behaviour_checks_score_a_model_that_ignores_negation_and_one_that_reads_it() -> None:
    cases = build_cases(seed=1, per_check=20, test_texts=["Mary loved the film", "no names here"])
    assert {c.check for c in cases} == {"negation", "name_swap", "number_swap"}
    assert sum(c.check == "name_swap" for c in cases) == 21  # 20 templates + the one test sentence with a name
    assert build_cases(seed=1, per_check=20) == build_cases(seed=1, per_check=20)  # the same cases every time

    def keyword(texts: list[str]) -> list[str]:  # ignores "not": fails negation, passes the invariances
        negative = ("bad", "terrible", "awful", "boring", "disappointing", "horrible", "dreadful", "poor", "hate")
        return ["negative" if any(w in t for w in negative) else "positive" for t in texts]

    summary, frame = run_checks(keyword, cases)
    assert summary["negation"]["pass_rate"] == 0.0 and summary["negation"]["n"] == 20
    assert summary["name_swap"]["pass_rate"] == 1.0 and summary["number_swap"]["pass_rate"] == 1.0

    def negation_aware(texts: list[str]) -> list[str]:
        flipped = {"positive": "negative", "negative": "positive"}
        out = keyword(texts)
        return [flipped[o] if (" not " in t or "don't" in t) else o for o, t in zip(out, texts, strict=True)]

    summary, frame = run_checks(negation_aware, cases)
    assert summary["negation"]["pass_rate"] == 1.0
    assert frame["passed"].all()


def test_pareto_front() -> None:
    latency = np.array([1.0, 2.0, 3.0, 2.5])
    quality = np.array([0.5, 0.7, 0.9, 0.6])  # the last is slower and worse than the second
    assert pareto_front(latency, quality).tolist() == [True, True, True, False]


def move(seq: int, to: str, action: str = "promote", alias: str = "champion") -> AliasMove:
    return AliasMove(seq, "t", alias, None, to, action, "r", "", "me")


def test_champion_stack_replays_promotions_and_rollbacks() -> None:
    moves = [move(1, "1"), move(2, "1", "challenger", "challenger"), move(3, "2"), move(4, "3")]
    assert champion_stack(moves) == ["1", "2", "3"]
    assert champion_stack([*moves, move(5, "2", "rollback")]) == ["1", "2"]
    assert champion_stack([*moves, move(5, "2", "rollback"), move(6, "1", "rollback")]) == ["1"]


def test_verify_takes_registered_model_uris_only() -> None:
    assert parse_uri("models:/variantlab-sentiment@champion") == ("variantlab-sentiment", "champion", None)
    assert parse_uri("models:/variantlab-sentiment/3") == ("variantlab-sentiment", None, "3")
    with pytest.raises(VariantlabError, match="not a registered model URI"):
        parse_uri("runs:/abc/model")
