"""Cleaning, de-duplication, labelling and the frozen, leakage-free split. Pure functions of data frames."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from variantlab.errors import LeakageError

_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """What the models see: HTML entities decoded, Unicode in NFKC form, whitespace collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", html.unescape(text))).strip()


def normalise_text(text: str) -> str:
    """The de-duplication and leakage key: cleaned, case-folded, punctuation-insensitive."""
    folded = clean_text(text).casefold()
    return _SPACES.sub(" ", re.sub(r"[^\w\s]", " ", folded)).strip()


@dataclass(frozen=True)
class Deduplicated:
    frame: pd.DataFrame
    exact_duplicates: int
    normalised_duplicates: int
    without_words: int = 0  # texts with nothing left after normalisation ("!!!", "&amp;")


def deduplicate(raw: pd.DataFrame) -> Deduplicated:
    """Drop exact duplicates of the text, then texts equal after normalisation (the first occurrence stays),
    and texts with no word left after normalisation; each is counted on its own."""
    frame = raw.assign(text=raw["text"].map(clean_text))
    exact = frame.duplicated("text", keep="first")
    frame = frame[~exact]
    frame = frame.assign(norm=frame["text"].map(normalise_text))
    empty = frame["norm"] == ""
    normalised = frame.duplicated("norm", keep="first") & ~empty
    kept = frame[~normalised & ~empty].reset_index(drop=True)
    return Deduplicated(kept, int(exact.sum()), int(normalised.sum()), int(empty.sum()))


def split_unit(norm: pd.Series, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per normalised text: the same text always lands in the same split."""
    digests = [hashlib.sha256(f"{salt}\x00{text}".encode()).digest()[:8] for text in norm]
    return np.array([int.from_bytes(d, "big") for d in digests], dtype=np.float64) / 2.0**64


def assign_splits(frame: pd.DataFrame, test_fraction: float, val_fraction: float, salt: str) -> pd.Series:
    """Hash-based split: the test set of a text never changes when other rows are added or removed.

    The hash is independent of label and domain, so every label x domain stratum is split in the same
    proportions in expectation; ``split_report`` records the realised per-stratum fractions.
    """
    unit = split_unit(frame["norm"], salt)
    split = np.where(unit < test_fraction, "test", np.where(unit < test_fraction + val_fraction, "val", "train"))
    return pd.Series(split, index=frame.index, dtype="string")


def check_leakage(splits: dict[str, pd.DataFrame]) -> None:
    seen: dict[str, str] = {}
    for name, part in splits.items():
        for text in part["norm"]:
            if text in seen and seen[text] != name:
                raise LeakageError(f"normalised text {text[:60]!r} is in both {seen[text]} and {name}")
            seen[text] = name


def stratified_subsample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, in proportion to each stratum (label, or target bin) x domain."""
    if n is None or n >= len(frame):
        return frame
    fraction = n / len(frame)
    picked = frame.groupby(["stratum", "domain"], group_keys=False, observed=True).sample(
        frac=fraction, random_state=seed
    )
    return picked.sort_values("id").reset_index(drop=True)


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 of a split's content (id, text, label or target), independent of row order and file format."""
    target = frame["label"]
    if "value" in frame:  # regression: the target is the number
        target = target.where(target.notna(), frame["value"].astype(str))
    rows = sorted(zip(frame["id"], frame["text"], target, strict=True))
    digest = hashlib.sha256()
    for row in rows:
        digest.update("\t".join(map(str, row)).encode() + b"\n")
    return digest.hexdigest()


def split_report(frame: pd.DataFrame, split: pd.Series) -> dict[str, dict[str, float]]:
    """Realised fraction of each stratum that went to test, keyed ``stratum/domain``."""
    table = pd.crosstab([frame["stratum"], frame["domain"]], split, normalize="index")
    return {f"{lab}/{dom}": {k: round(float(v), 4) for k, v in row.items()} for (lab, dom), row in table.iterrows()}
