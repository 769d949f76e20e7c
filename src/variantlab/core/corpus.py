"""Parsing of the VADER ground-truth files and the raw-sentence schema every source is brought to."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from variantlab.errors import DataError

# ``value``: the task's numeric column (a regression target, or what a label rule bins), NaN where there is none.
RAW_COLUMNS = ("id", "text", "value", "label", "domain")
RAW_DTYPES = {"id": "string", "text": "string", "value": "float64", "label": "string", "domain": "string"}
NO_DOMAIN = "all"  # the one slice of data without a domain column

# The four files of hutto_ICWSM_2014, their domain names and encodings. The movie file is UTF-8, and so is
# tweets (4 bytes of a UTF-8 pound sign); the other two are pure ASCII. Decoding is strict either way.
VADER_FILES = {
    "tweets_GroundTruth.txt": ("tweets", "utf-8"),
    "movieReviewSnippets_GroundTruth.txt": ("movie_reviews", "utf-8"),
    "amazonReviewSnippets_GroundTruth.txt": ("amazon_reviews", "ascii"),
    "nytEditorialSnippets_GroundTruth.txt": ("nyt_editorials", "ascii"),
}


def parse_ground_truth(content: bytes, *, file: str) -> pd.DataFrame:
    """Parse one ``id<TAB>mean_rating<TAB>text`` file (CRLF line ends) into the raw schema."""
    domain, encoding = VADER_FILES[file.rsplit("/", 1)[-1]]
    try:
        text = content.decode(encoding)
    except UnicodeDecodeError as exc:
        bad_line = content[: exc.start].count(b"\n") + 1
        raise DataError(f"not valid {encoding} at byte {exc.start}", file=file, rows=[bad_line]) from None
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise DataError("expected id<TAB>rating<TAB>text", file=file, rows=[lineno])
        ident, rating, sentence = parts
        try:
            value = float(rating)
        except ValueError:
            raise DataError(f"rating {rating!r} is not a number", file=file, column="rating", rows=[lineno]) from None
        records.append((f"{domain}-{ident.strip()}", sentence.strip(), value, None, domain))
    return pd.DataFrame.from_records(records, columns=list(RAW_COLUMNS)).astype(RAW_DTYPES)


def _bad_rows(mask: pd.Series) -> list[int]:
    # Row numbers as a user sees them in a spreadsheet: the header is line 1.
    return [int(i) + 2 for i in mask[mask].index]  # all of them: the error shows five and counts the rest


@dataclass(frozen=True)
class UserColumns:
    """Which columns of a user file the task reads: its label column and/or its numeric column."""

    label: str | None  # classification
    value: str | None  # regression target, or the label rule's column
    labels: tuple[str, ...] | None  # the declared label set (None: auto, any label)

    def allowed(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for c in ("id", "text", self.label, self.value, "domain") if c))


def conform_user_frame(frame: pd.DataFrame, *, file: str, columns: UserColumns) -> pd.DataFrame:
    """Bring a user file with ``text`` and the task's label or numeric column (optional ``id``, ``domain``) to the
    raw schema."""
    if len(frame.columns) == 0:
        raise DataError("file is empty", file=file)
    frame = frame.rename(columns=lambda c: str(c).strip())
    if "text" not in frame.columns:
        raise DataError(
            f"missing required column (found: {', '.join(map(str, frame.columns))})", file=file, column="text"
        )
    wanted = [c for c in (columns.label, columns.value) if c]
    if not any(c in frame.columns for c in wanted):
        raise DataError(
            f"needs the task's column {' or '.join(repr(c) for c in wanted)} (found: {', '.join(frame.columns)}); "
            "name it in params.yaml's task",
            file=file,
            column=wanted[0],
        )
    extra = [str(c) for c in frame.columns if c not in columns.allowed()]
    if extra:
        raise DataError(
            f"unexpected column{'s' if len(extra) > 1 else ''} {extra} (allowed: {', '.join(columns.allowed())}); "
            "drop or rename it",
            file=file,
            column=extra[0],
        )
    if frame.empty:
        raise DataError("has a header but no data rows", file=file)
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    out["id"] = (
        frame["id"].astype("string")
        if "id" in frame
        else pd.Series([f"row-{i + 2}" for i in range(len(frame))], dtype="string")  # the line in the file
    )
    out["text"] = frame["text"].astype("string")
    has_value = columns.value is not None and columns.value in frame
    out["value"] = _numeric_column(frame, str(columns.value), file) if has_value else math.nan
    has_label = columns.label is not None and columns.label in frame
    out["label"] = _label_column(frame, str(columns.label), columns.labels, file) if has_label else pd.NA
    out["domain"] = frame["domain"].astype("string").str.strip() if "domain" in frame else NO_DOMAIN
    return out[list(RAW_COLUMNS)].astype(RAW_DTYPES)


def _numeric_column(frame: pd.DataFrame, column: str, file: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        raise DataError("values are not numbers", file=file, column=column, rows=_bad_rows(bad))
    return values.astype("float64")


def _label_column(frame: pd.DataFrame, column: str, labels: tuple[str, ...] | None, file: str) -> pd.Series:
    values = frame[column].astype("string").str.strip()
    values = values.mask(values == "")
    if labels is None:
        return values
    spelled = {label.casefold(): label for label in labels}  # "Positive" in a file is the declared "positive"
    matched = values.str.casefold().map(spelled).astype("string")
    bad = values.notna() & matched.isna()
    if bad.any():
        found = sorted(set(values[bad].dropna()))[:5]
        raise DataError(
            f"unknown labels {found} (allowed: {', '.join(labels)}; list them in task.labels or set task.labels: auto)",
            file=file,
            column=column,
            rows=_bad_rows(bad),
        )
    return matched
