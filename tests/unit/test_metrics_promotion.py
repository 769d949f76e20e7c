import numpy as np
import pandas as pd
import pytest

from variantlab.core.leaderboard import build_leaderboard, to_markdown
from variantlab.core.metrics import classification_metrics, confusion_array, confusion_frame
from variantlab.core.promotion import Scored, decide


def test_metrics_by_hand() -> None:
    truth = pd.Series(["positive", "positive", "negative", "neutral"])
    pred = pd.Series(["positive", "negative", "negative", "neutral"])
    m = classification_metrics(truth, pred, pd.Series(["a", "a", "b", "b"]))
    assert m["accuracy"] == 0.75
    assert m["per_class"]["negative"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["per_domain"]["b"]["accuracy"] == 1.0
    cm = confusion_array(confusion_frame(truth, pred))
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def scored(score: float, run: str = "r1", sha: str = "t") -> Scored:
    return Scored("v", score, run, sha)


def test_first_champion_needs_the_floor() -> None:
    assert decide(scored(0.6), None, metric="macro_f1", floor=0.5, min_improvement=0).promote
    refused = decide(scored(0.4), None, metric="macro_f1", floor=0.5, min_improvement=0)
    assert not refused.promote and "< floor" in refused.reason


def test_challenger_must_beat_the_champion_by_the_margin() -> None:
    champ = scored(0.60, run="old")
    assert decide(scored(0.62), champ, metric="macro_f1", floor=0.5, min_improvement=0.01).promote
    assert not decide(scored(0.605), champ, metric="macro_f1", floor=0.5, min_improvement=0.01).promote
    assert not decide(scored(0.60), champ, metric="macro_f1", floor=0.5, min_improvement=0).promote


def test_same_run_is_already_champion_and_test_sets_must_match() -> None:
    assert (
        "already the champion"
        in decide(scored(0.9, "r"), scored(0.9, "r"), metric="m", floor=0, min_improvement=0).reason
    )
    with pytest.raises(ValueError, match="different test sets"):
        decide(scored(0.9, sha="a"), scored(0.5, "o", sha="b"), metric="m", floor=0, min_improvement=0)


def test_leaderboard_ranks_by_metric() -> None:
    ev = {
        "a": {
            "accuracy": 0.5,
            "macro_f1": 0.4,
            "per_class": {"positive": {"f1": 0.4}},
            "per_domain": {"x": {"macro_f1": 0.4}},
        },
        "b": {
            "accuracy": 0.6,
            "macro_f1": 0.7,
            "per_class": {"positive": {"f1": 0.7}},
            "per_domain": {"x": {"macro_f1": 0.7}},
        },
    }
    board = build_leaderboard(ev, {"a": {"kind": "probe"}, "b": {"kind": "tfidf-logreg"}}, "macro_f1")
    assert board["variant"].tolist() == ["b", "a"]
    assert board["rank"].tolist() == [1, 2]
    md = to_markdown(board)
    assert md.splitlines()[2].startswith("| 1 | b | tfidf-logreg | 0.6000 | 0.7000")
    assert np.isclose(board.loc[0, "macro_f1@x"], 0.7)
