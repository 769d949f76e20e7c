"""Behavioural checks in the spirit of CheckList (Ribeiro et al., ACL 2020), reported as pass rates.

- ``negation``: negating a clearly polar sentence must change the prediction ("was good" -> "was not good");
  only for a task that declares a polarity pair (``task.behaviour.polarity``).
- ``name_swap``: replacing a person's name must not change it (``task.behaviour.invariance``).
- ``number_swap``: replacing a number must not change it (``task.behaviour.invariance``).

For a regression task, "does not change" means within ``tolerance`` of the first answer.

Cases come from fixed templates and a seeded generator, so every variant sees the same ones; name swaps are
also drawn from the test set's own sentences that mention a listed first name.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

POSITIVE = ["good", "great", "excellent", "wonderful", "enjoyable", "lovely", "fantastic", "brilliant"]
NEGATIVE = ["bad", "terrible", "awful", "boring", "disappointing", "horrible", "dreadful", "poor"]
NOUNS = ["movie", "book", "phone", "meal", "service", "hotel", "album", "camera", "show", "restaurant"]
LIKE = ["love", "like", "enjoy", "recommend", "admire"]
DISLIKE = ["hate", "dislike", "regret buying", "despise", "resent"]
NAMES = [
    "John", "Mary", "James", "Linda", "Michael", "Sarah", "David", "Maria", "Ahmed", "Aisha",
    "Wei", "Mei", "Carlos", "Sofia", "Raj", "Priya", "Kofi", "Amara", "Ivan", "Olga",
]  # fmt: skip
NUMBERS = ["2", "3", "5", "7", "10", "12", "20", "45", "100", "250"]
_NAME_RE = re.compile(r"\b(" + "|".join(NAMES) + r")\b")


@dataclass(frozen=True)
class Case:
    check: str
    original: str
    changed: str
    expect_same: bool  # invariance (name/number swap) or directional change (negation)


def negation_cases(rng: random.Random, n: int) -> list[Case]:
    templates: list[tuple[str, str]] = [
        ("The {noun} was {adj}.", "The {noun} was not {adj}."),
        ("This {noun} is {adj}.", "This {noun} is not {adj}."),
        ("I found the {noun} {adj}.", "I did not find the {noun} {adj}."),
    ]
    cases = []
    for i in range(n):
        noun = rng.choice(NOUNS)
        if i % 4 == 3:  # verb form: "I love this phone" -> "I don't love this phone"
            verb = rng.choice(LIKE if i % 8 == 3 else DISLIKE)
            cases.append(Case("negation", f"I {verb} this {noun}.", f"I don't {verb} this {noun}.", False))
            continue
        adj = rng.choice(POSITIVE if i % 2 == 0 else NEGATIVE)
        before, after = rng.choice(templates)
        cases.append(Case("negation", before.format(noun=noun, adj=adj), after.format(noun=noun, adj=adj), False))
    return cases


def _swap_cases(rng: random.Random, n: int, check: str, templates: list[str], values: list[str]) -> list[Case]:
    """Template sentences whose ``{slot}`` takes two different ``values``: the prediction must not change."""
    cases = []
    for i in range(n):
        first, second = rng.sample(values, 2)
        adj = rng.choice((POSITIVE, NEGATIVE)[i % 2])
        text = rng.choice(templates).format(slot="{slot}", noun=rng.choice(NOUNS), adj=adj)
        cases.append(Case(check, text.format(slot=first), text.format(slot=second), True))
    return cases


def name_cases(rng: random.Random, n: int, test_texts: Sequence[str] = ()) -> list[Case]:
    templates = [
        "{slot} said the {noun} was {adj}.",
        "I went with {slot} and the {noun} was {adj}.",
        "{slot} thinks this {noun} is {adj}.",
    ]
    cases = _swap_cases(rng, n, "name_swap", templates, NAMES)
    mentioned = [t for t in test_texts if _NAME_RE.search(t)]
    for text in mentioned[:n]:
        found = _NAME_RE.search(text)
        assert found is not None
        other = rng.choice([name for name in NAMES if name != found.group(1)])
        cases.append(Case("name_swap", text, _NAME_RE.sub(other, text), True))
    return cases


def number_cases(rng: random.Random, n: int) -> list[Case]:
    templates = [
        "I waited {slot} minutes and the {noun} was {adj}.",
        "After {slot} days the {noun} is still {adj}.",
        "We bought {slot} tickets and the {noun} was {adj}.",
    ]
    return _swap_cases(rng, n, "number_swap", templates, NUMBERS)


def build_cases(
    seed: int, per_check: int = 60, test_texts: Sequence[str] = (), *, negation: bool = True, invariance: bool = True
) -> list[Case]:
    """The cases of the checks a task asks for; the seeded generator draws them in the same order either way."""
    rng = random.Random(seed)
    negated = negation_cases(rng, per_check)
    swapped = [*name_cases(rng, per_check, test_texts), *number_cases(rng, per_check)]
    return [*(negated if negation else []), *(swapped if invariance else [])]


def run_checks(
    predict: Callable[[list[str]], Sequence[Any]], cases: Sequence[Case], *, tolerance: float | None = None
) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Pass rate of each check, and a frame of every case with both predictions and whether it passed.

    ``tolerance``: numeric answers (regression) count as the same when they differ by at most this much.
    """
    if not cases:
        return {}, pd.DataFrame(columns=["check", "original", "changed", "passed"])
    texts = [c.original for c in cases] + [c.changed for c in cases]
    answers = list(predict(texts))
    predicted = [str(p) for p in answers]
    before, after = predicted[: len(cases)], predicted[len(cases) :]
    frame = pd.DataFrame(
        {
            "check": [c.check for c in cases],
            "original": [c.original for c in cases],
            "changed": [c.changed for c in cases],
            "predicted_original": before,
            "predicted_changed": after,
        }
    )
    if tolerance is None:
        same = frame["predicted_original"] == frame["predicted_changed"]
    else:
        numbers = pd.Series(answers, dtype="float64").to_numpy()
        same = pd.Series(abs(numbers[: len(cases)] - numbers[len(cases) :]) <= tolerance, index=frame.index)
    expect_same = pd.Series([c.expect_same for c in cases], index=frame.index)
    frame["passed"] = same == expect_same
    summary = {
        check: {"n": len(group), "pass_rate": round(float(group["passed"].mean()), 4)}
        for check, group in frame.groupby("check", sort=True)
    }
    return summary, frame
