"""Per-example scores of written answers: exact match (after a declared normalisation), chrF and ROUGE-L.

chrF is sacrebleu's sentence chrF (character 6-grams, beta 2) and ROUGE-L is rouge-score's F-measure of the
longest common subsequence of words: the field's implementations, scored example by example, so the gate's paired
bootstrap and signed-rank test run on the same numbers the leaderboard averages. Everything is scored on what a
model generated, never with teacher forcing.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

# What exact match ignores, in the order applied (params.yaml's task.normalise).
NORMALISATIONS = ("unicode", "strip", "whitespace", "lower", "punctuation")
SCORES = ("exact_match", "chrf", "rouge_l")
_SPACES = re.compile(r"\s+")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str, steps: Sequence[str]) -> str:
    """``text`` with each of ``steps`` applied: NFKC, strip the ends, collapse whitespace, case-fold, drop
    ASCII punctuation."""
    for step in NORMALISATIONS:
        if step not in steps:
            continue
        if step == "unicode":
            text = unicodedata.normalize("NFKC", text)
        elif step == "strip":
            text = text.strip()
        elif step == "whitespace":
            text = _SPACES.sub(" ", text).strip()
        elif step == "lower":
            text = text.casefold()
        else:
            text = text.translate(_PUNCTUATION)
    return text


@cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def example_scores(targets: Sequence[str], outputs: Sequence[str], steps: Sequence[str]) -> pd.DataFrame:
    """One row per example: ``exact_match`` (0/1), ``chrf`` (0-100), ``rouge_l`` (0-1), and the lengths in
    characters of the target and the output."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    rouge = _rouge()
    rows = []
    for target, output in zip(targets, outputs, strict=True):
        target, output = str(target), str(output)
        rows.append(
            (
                float(normalise(target, steps) == normalise(output, steps)),
                float(chrf.sentence_score(output, [target]).score),
                float(rouge.score(target, output)["rougeL"].fmeasure),
                len(target),
                len(output),
            )
        )
    return pd.DataFrame(rows, columns=[*SCORES, "target_chars", "output_chars"])


def _summary(scores: pd.DataFrame) -> dict[str, float]:
    target = float(scores["target_chars"].sum())
    return {
        "exact_match": round(float(scores["exact_match"].mean()), 6),
        "chrf": round(float(scores["chrf"].mean()), 4),
        "rouge_l": round(float(scores["rouge_l"].mean()), 6),
        # characters written per character of the targets: < 1 cut short, > 1 rambling
        "length_ratio": round(float(scores["output_chars"].sum()) / target, 4) if target else float("nan"),
        "empty_outputs": int((scores["output_chars"] == 0).sum()),
        "n": len(scores),
    }


def generation_metrics(
    targets: pd.Series,
    outputs: pd.Series,
    domain: pd.Series,
    steps: Sequence[str],
    scores: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Means over the whole test set and per domain, and corpus chrF (sacrebleu's, over all examples at once).
    ``scores``: ``example_scores`` of these pairs, when the caller has them already."""
    from sacrebleu.metrics import CHRF

    if scores is None:
        scores = example_scores(targets.astype(str).tolist(), outputs.astype(str).tolist(), steps)
    domains = domain.astype(str).to_numpy()
    per_domain = {str(name): _summary(scores[domains == name]) for name in sorted(set(domains))}
    corpus = CHRF().corpus_score(outputs.astype(str).tolist(), [targets.astype(str).tolist()]).score
    overall = _summary(scores)
    n = overall.pop("n")
    return {**overall, "corpus_chrf": round(float(corpus), 4), "n_test": n, "per_domain": per_domain}


def per_example(metric: str, targets: Sequence[str], outputs: Sequence[str], steps: Sequence[str]) -> np.ndarray:
    """The gate's per-example scores of one metric (higher is better)."""
    if metric not in SCORES:
        raise ValueError(f"unknown text metric '{metric}' (known: {', '.join(SCORES)})")
    return example_scores(targets, outputs, steps)[metric].to_numpy(dtype=np.float64)
